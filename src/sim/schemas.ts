// Request bodies of vLLM's OpenAI-compatible API, validated with zod at the boundary. Unknown fields
// pass through silently (vLLM ignores most OpenAI extras); wrong types are a 400 naming the field.
import { z } from "zod";
import { HttpError } from "../http/errors.js";

const int = z.number().int();
const nonNegInt = int.min(0);
const tokenIds = z.array(int).min(1);

const streamOptions = z
  .object({
    include_usage: z.boolean().nullish(),
    continuous_usage_stats: z.boolean().nullish(),
  })
  .nullish();

const stop = z.union([z.string(), z.array(z.string())]).nullish();

/** Fields shared by completions and chat (sampling parameters the sim accepts and mostly ignores). */
const sampling = {
  model: z.string().nullish(),
  max_tokens: nonNegInt.nullish(),
  n: int.min(1).max(128).nullish(),
  stream: z.boolean().nullish(),
  stream_options: streamOptions,
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_k: int.nullish(),
  min_p: z.number().nullish(),
  seed: int.nullish(),
  stop,
  stop_token_ids: z.array(int).nullish(),
  presence_penalty: z.number().nullish(),
  frequency_penalty: z.number().nullish(),
  repetition_penalty: z.number().nullish(),
  ignore_eos: z.boolean().nullish(),
  min_tokens: nonNegInt.nullish(),
  priority: int.nullish(),
  cache_salt: z.string().nullish(),
  request_id: z.string().nullish(),
  kv_transfer_params: z.record(z.string(), z.unknown()).nullish(),
  user: z.string().nullish(),
  logprobs: z.union([z.boolean(), int]).nullish(),
  prompt_logprobs: int.nullish(),
  /** vLLM 0.10.2+: prompt and output token ids in the answer */
  return_token_ids: z.boolean().nullish(),
  // structured outputs: checked with vLLM's messages in structured.ts, not here
  response_format: z.unknown().optional(),
  structured_outputs: z.unknown().optional(),
  guided_json: z.unknown().optional(),
  guided_regex: z.unknown().optional(),
  guided_choice: z.unknown().optional(),
  guided_grammar: z.unknown().optional(),
};

export const completionSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
  echo: z.boolean().nullish(),
  suffix: z.string().nullish(),
  add_special_tokens: z.boolean().nullish(),
});
export type CompletionBody = z.infer<typeof completionSchema>;

const contentPart = z.looseObject({ type: z.string(), text: z.string().nullish() });
export const chatMessageSchema = z.looseObject({
  role: z.string(),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().nullish(),
});

export const chatSchema = z.object({
  ...sampling,
  messages: z.array(chatMessageSchema).min(1),
  max_completion_tokens: nonNegInt.nullish(),
  add_generation_prompt: z.boolean().nullish(),
  continue_final_message: z.boolean().nullish(),
  add_special_tokens: z.boolean().nullish(),
  top_logprobs: int.nullish(),
  // tools: checked with vLLM's messages in tools.ts, not here
  tools: z.unknown().optional(),
  tool_choice: z.unknown().optional(),
  parallel_tool_calls: z.boolean().nullish(),
});
export type ChatBody = z.infer<typeof chatSchema>;

export const tokenizeSchema = z.union([
  z.object({
    model: z.string().nullish(),
    prompt: z.string(),
    add_special_tokens: z.boolean().nullish(),
    return_token_strs: z.boolean().nullish(),
  }),
  z.object({
    model: z.string().nullish(),
    messages: z.array(chatMessageSchema).min(1),
    add_special_tokens: z.boolean().nullish(),
    add_generation_prompt: z.boolean().nullish(),
    return_token_strs: z.boolean().nullish(),
  }),
]);

export const detokenizeSchema = z.object({ model: z.string().nullish(), tokens: z.array(int) });

export const embeddingsSchema = z.object({
  model: z.string().nullish(),
  input: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  dimensions: int.min(1).max(65536).nullish(),
  user: z.string().nullish(),
});

const textOrList = z.union([z.string(), z.array(z.string()).min(1)]);
export const scoreSchema = z.object({
  model: z.string().nullish(),
  text_1: textOrList.optional(),
  text_2: textOrList.optional(),
  queries: textOrList.optional(),
  documents: textOrList.optional(),
  items: textOrList.optional(),
});

export const rerankSchema = z.object({
  model: z.string().nullish(),
  query: z.string(),
  documents: z.array(z.union([z.string(), z.looseObject({ text: z.string() })])).min(1),
  top_n: int.min(0).nullish(),
  return_documents: z.boolean().nullish(),
});

export const loadLoraSchema = z.object({ lora_name: z.string().min(1), lora_path: z.string().min(1) });
export const unloadLoraSchema = z.object({ lora_name: z.string().min(1), lora_int_id: int.nullish() });

/** Parses with a schema; the first issue becomes vLLM's 400 with the field named. */
export function validate<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.map(String).join(".");
  throw new HttpError(400, path ? `${path}: ${issue.message}` : issue.message, path || null);
}
