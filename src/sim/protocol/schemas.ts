// Request bodies of vLLM's OpenAI-compatible API, validated with zod at the boundary. Unknown fields
// pass through silently (vLLM ignores most OpenAI extras); wrong types are the 400 vLLM's FastAPI
// answers for a body its pydantic models refuse: type "Bad Request", param the field's location
// ("body.max_tokens"). Checks vLLM makes later (SamplingParams, the chat template, empty prompt lists)
// are not here: they answer BadRequestError with their own param (engine-request.ts, prompts.ts).
import { z } from "zod";
import { HttpError, type ErrorType } from "../../http/errors.js";

const int = z.number().int();
const nonNegInt = int.min(0);
/** vLLM 0.32 types prompt and detokenize ids as non-negative ints; an empty list is its later check */
const tokenIds = z.array(nonNegInt);
/**
 * pydantic's lax bool: vLLM serves `stream: "yes"` as a stream. The strings and numbers it reads as
 * booleans become booleans; anything else stays as sent, so the schema still refuses it.
 */
const LAX_TRUE = new Set(["1", "on", "t", "true", "y", "yes"]);
const LAX_FALSE = new Set(["0", "off", "f", "false", "n", "no"]);
const laxBool = z.preprocess((v) => {
  if (v === 1 || v === 0) return v === 1;
  if (typeof v !== "string") return v;
  const s = v.toLowerCase();
  return LAX_TRUE.has(s) ? true : LAX_FALSE.has(s) ? false : v;
}, z.boolean());

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
  // below 1 is SamplingParams' refusal (completions.ts), with its own param
  max_tokens: int.nullish(),
  // n < 1 is SamplingParams' check (engine-request.ts), with its own param
  n: int.max(128).nullish(),
  stream: laxBool.nullish(),
  stream_options: streamOptions,
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_k: int.nullish(),
  min_p: z.number().nullish(),
  seed: int.nullish(),
  stop,
  stop_token_ids: z.array(int).nullish(),
  // keys Python's int() cannot read, or ids past the vocabulary, are SamplingParams' refusals (engine-request.ts)
  logit_bias: z.record(z.string(), z.number()).nullish(),
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
  // vLLM's order (ids, batches of ids, text, texts): a refusal names the first form's location; an
  // absent prompt is its later check (prompts.ts)
  prompt: z.union([tokenIds, z.array(tokenIds), z.string(), z.array(z.string())]).nullish(),
  echo: z.boolean().nullish(),
  suffix: z.string().nullish(),
  add_special_tokens: z.boolean().nullish(),
});
export type CompletionBody = z.infer<typeof completionSchema>;

const contentPart = z.looseObject({ type: z.string(), text: z.string().nullish() });
const messageFields = z.looseObject({
  role: z.string(),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().nullish(),
});

/** the first form of vLLM's message union (a TypedDict of content, then role), where pydantic locates a refusal */
const FIRST_MESSAGE_FORM = "ChatCompletionDeveloperMessageParam";

/**
 * A chat message. vLLM types one as a union of TypedDicts (developer, system, user, assistant, tool,
 * ...), so a message none of them takes is refused at its first form's first failing field, checked
 * in that form's order: `body.messages.0.ChatCompletionDeveloperMessageParam.role` for a message
 * without a role, `.content` for content of the wrong type, the form itself for a non-object.
 */
export const chatMessageSchema = z.unknown().transform((v, ctx) => {
  const r = messageFields.safeParse(v);
  if (r.success) return r.data;
  const m = v as { role?: unknown; content?: unknown } | null;
  const refuse = (path: string[], type: string, message: string) => {
    ctx.addIssue({ code: "custom", path: [FIRST_MESSAGE_FORM, ...path], message, params: { type } });
    return z.NEVER;
  };
  if (typeof m !== "object" || m === null || Array.isArray(m))
    return refuse([], "dict_type", "Input should be a valid dictionary");
  if (m.content === undefined) return refuse(["content"], "missing", "Field required");
  if (typeof m.content !== "string" && !Array.isArray(m.content))
    return refuse(["content"], "string_type", "Input should be a valid string");
  if (m.role === undefined) return refuse(["role"], "missing", "Field required");
  return refuse(["role"], "literal_error", "Input should be 'developer'");
});

export const chatSchema = z.object({
  ...sampling,
  // an empty conversation is the chat template's refusal (prompts.ts)
  messages: z.array(chatMessageSchema),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
  max_completion_tokens: nonNegInt.nullish(),
  add_generation_prompt: z.boolean().nullish(),
  continue_final_message: z.boolean().nullish(),
  echo: z.boolean().nullish(),
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
    continue_final_message: z.boolean().nullish(),
    return_token_strs: z.boolean().nullish(),
  }),
]);

export const detokenizeSchema = z.object({ model: z.string().nullish(), tokens: z.array(nonNegInt) });

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

export const loadLoraSchema = z.object({
  lora_name: z.string().min(1),
  lora_path: z.string().min(1),
  load_inplace: z.boolean().nullish(),
});
export const unloadLoraSchema = z.object({ lora_name: z.string().min(1), lora_int_id: int.nullish() });

/** The location of an issue as pydantic writes it; a union names its first form's first refusal. */
function locOf(issue: z.core.$ZodIssue, prefix: PropertyKey[] = []): string {
  const path = [...prefix, ...issue.path];
  if (issue.code === "invalid_union" && issue.errors[0]?.[0]) return locOf(issue.errors[0][0], path);
  return ["body", ...path.map(String)].join(".");
}

/**
 * vLLM's answer to a body its request model refuses (FastAPI's RequestValidationError as vLLM's
 * handler writes it): "N validation errors" with each error's location, param the first location.
 */
export function requestValidationError(loc: string | null, lines: string[]): HttpError {
  const n = lines.length;
  const message = `${n} validation error${n === 1 ? "" : "s"}:\n  ${lines.join("\n  ")}`;
  return new HttpError(400, message, loc, {}, "Bad Request" as ErrorType);
}

/** Parses with a schema; the issues become vLLM's validation 400 naming the first field's location. */
export function validate<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, 8);
  const locs = issues.map((i) => locOf(i));
  // a custom refusal carries the type pydantic would name
  const typeOf = (i: z.core.$ZodIssue) =>
    i.code === "custom" && typeof i.params?.type === "string" ? i.params.type : i.code;
  // Python's repr quotes a message holding a single quote in double quotes
  const msg = (m: string) => (m.includes("'") ? `"${m}"` : `'${m}'`);
  const lines = issues.map(
    (i, k) => `{'type': '${typeOf(i)}', 'loc': '${locs[k]}', 'msg': ${msg(i.message)}}`,
  );
  throw requestValidationError(locs[0] ?? "body", lines);
}
