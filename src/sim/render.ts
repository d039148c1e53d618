// vLLM's render and derender endpoints (served with --enable-scale-out): render turns an OpenAI chat,
// completion, Anthropic message or Responses request into the GenerateRequest that
// `/inference/v1/generate` takes (the prompt's token ids and the sampling parameters), without running
// the model; derender turns a GenerateResponse's token ids back into the API's answer. A gateway that
// tokenises elsewhere and routes on token ids uses the pair around the token-in/token-out engine.
import { z } from "zod";
import { contextLengthError } from "../http/context-length.js";
import { HttpError } from "../http/errors.js";
import { assistantMessage } from "../http/vllm-answers.js";
import { resolveRequestModel, type SimContext } from "./context.js";
import { newRequestHex } from "./generate.js";
import { checkSampling, stopStrings } from "./generation.js";
import { anthropicToChat, messagesPromptIds, messagesSchema } from "./messages.js";
import { chatPrompt, completionPrompts } from "./prompts.js";
import { prepareResponse, responsesSchema } from "./responses.js";
import { chatSchema, completionSchema, validate } from "./schemas.js";

/** What a render knows of the request's sampling, in vLLM's SamplingParams terms. */
export interface Sampling {
  n?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stop_token_ids?: number[] | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  ignore_eos?: boolean | null;
  min_tokens?: number | null;
  logprobs?: number | boolean | null;
}

/** vLLM's SamplingParams as a render dumps it: every field the engine reads, defaults filled in. */
export function samplingParams(s: Sampling, maxTokens: number): Record<string, unknown> {
  // vLLM builds the SamplingParams to render them, so its refusals are render's too
  checkSampling(s);
  return {
    n: s.n ?? 1,
    presence_penalty: s.presence_penalty ?? 0.0,
    frequency_penalty: s.frequency_penalty ?? 0.0,
    repetition_penalty: s.repetition_penalty ?? 1.0,
    temperature: s.temperature ?? 1.0,
    top_p: s.top_p ?? 1.0,
    top_k: s.top_k ?? 0,
    min_p: s.min_p ?? 0.0,
    seed: s.seed ?? null,
    stop: stopStrings(s.stop),
    stop_token_ids: s.stop_token_ids ?? [],
    ignore_eos: s.ignore_eos ?? false,
    max_tokens: maxTokens,
    min_tokens: s.min_tokens ?? 0,
    logprobs: typeof s.logprobs === "number" ? s.logprobs : null,
    prompt_logprobs: null,
    skip_special_tokens: true,
    spaces_between_special_tokens: true,
    include_stop_str_in_output: false,
  };
}

/** vLLM's get_max_tokens: what the request asked, never more than the context leaves. */
function maxTokensFor(ctx: SimContext, promptTokens: number, asked: number | null): number {
  const err = contextLengthError(ctx.engineConfig.maxModelLen, promptTokens, asked);
  if (err) throw err;
  const room = ctx.engineConfig.maxModelLen - promptTokens;
  return asked === null ? room : Math.min(asked, room);
}

/** The request's own fields a GenerateRequest carries over as they came (chat and completions have them all). */
interface Carried {
  model?: string | null;
  stream?: boolean | null;
  stream_options?: unknown;
  cache_salt?: string | null;
  priority?: number | null;
}

/** vLLM's GenerateRequest, fields in its order. */
function generateRequest(
  requestId: string,
  tokenIds: number[],
  sampling: Record<string, unknown>,
  r: Carried,
): Record<string, unknown> {
  return {
    request_id: requestId,
    token_ids: tokenIds,
    assistant_tokens_mask: null,
    token_offsets: null,
    features: null,
    sampling_params: sampling,
    model: r.model ?? null,
    stream: r.stream === true,
    stream_options: r.stream === true ? (r.stream_options ?? null) : null,
    cache_salt: r.cache_salt ?? null,
    priority: r.priority ?? 0,
    kv_transfer_params: null,
  };
}

export async function renderChat(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(chatSchema, raw);
  resolveRequestModel(ctx, body.model);
  const { tokenIds } = await chatPrompt(ctx, body);
  const max = maxTokensFor(ctx, tokenIds.length, body.max_completion_tokens ?? body.max_tokens ?? null);
  return generateRequest(
    `chatcmpl-${newRequestHex()}`,
    tokenIds,
    samplingParams(body as Sampling, max),
    body,
  );
}

export async function renderCompletions(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(completionSchema, raw);
  resolveRequestModel(ctx, body.model);
  const prompts = await completionPrompts(ctx, body);
  return prompts.map((p) => {
    if (p.tokenIds.length === 0) throw new HttpError(400, "The prompt cannot be empty.", "prompt");
    const max = maxTokensFor(ctx, p.tokenIds.length, body.max_tokens ?? 16);
    return generateRequest(
      `cmpl-${newRequestHex()}`,
      p.tokenIds,
      samplingParams(body as Sampling, max),
      body,
    );
  });
}

export async function renderMessages(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(messagesSchema, raw);
  resolveRequestModel(ctx, body.model);
  const tokenIds = await messagesPromptIds(ctx, anthropicToChat(body));
  const sampling = samplingParams(
    { temperature: body.temperature, top_p: body.top_p, top_k: body.top_k, stop: body.stop_sequences },
    maxTokensFor(ctx, tokenIds.length, body.max_tokens),
  );
  // an Anthropic request has no stream_options, cache_salt or priority of its own
  return generateRequest(`chatcmpl-${newRequestHex()}`, tokenIds, sampling, {
    model: body.model,
    stream: body.stream,
  });
}

export async function renderResponses(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(responsesSchema, raw);
  const p = await prepareResponse(ctx, body);
  const sampling = samplingParams(
    { temperature: body.temperature, top_p: body.top_p },
    maxTokensFor(ctx, p.promptIds.length, body.max_output_tokens ?? null),
  );
  return generateRequest(p.id, p.promptIds, sampling, {
    model: body.model,
    stream: body.stream,
    cache_salt: body.cache_salt,
    priority: body.priority,
  });
}

// --- derender -------------------------------------------------------------------------------------

/** At most this many choices or responses in one derender (vLLM bounds them by VLLM_MAX_N_SEQUENCES) */
export const MAX_DERENDER_CHOICES = 1024;

const choice = z.looseObject({
  index: z.number().int(),
  finish_reason: z.string().nullish(),
  stop_reason: z.union([z.string(), z.number()]).nullish(),
  token_ids: z.array(z.number().int().min(0, "token_ids must not contain negative values")).nullish(),
});
const generateResponse = z.looseObject({
  request_id: z.string().default(() => newRequestHex()),
  choices: z.array(choice),
  kv_transfer_params: z.record(z.string(), z.unknown()).nullish(),
});
type GenerateResponse = z.infer<typeof generateResponse>;

const derenderOne = z.looseObject({
  model: z.string(),
  generate_response: generateResponse,
  prompt_tokens: z.number().int().min(0).nullish(),
});
const derenderCompletion = z
  .looseObject({
    model: z.string(),
    generate_responses: z.array(generateResponse),
    prompt_tokens: z.array(z.number().int().min(0)).nullish(),
  })
  .refine((b) => !b.prompt_tokens || b.prompt_tokens.length === b.generate_responses.length, {
    message: "prompt_tokens length must equal generate_responses length",
    path: ["prompt_tokens"],
  });

/** vLLM's bounds, checked before anything is decoded: a caller cannot make the server decode without end. */
function checkBounds(ctx: SimContext, responses: readonly GenerateResponse[]): void {
  if (responses.length > MAX_DERENDER_CHOICES)
    throw new HttpError(
      400,
      `generate_responses count (${responses.length}) exceeds server maximum (${MAX_DERENDER_CHOICES}).`,
    );
  const maxLen = ctx.engineConfig.maxModelLen;
  for (const g of responses) {
    if (g.choices.length > MAX_DERENDER_CHOICES)
      throw new HttpError(
        400,
        `choices count (${g.choices.length}) in response '${g.request_id}' exceeds server maximum (${MAX_DERENDER_CHOICES}).`,
      );
    for (const c of g.choices) {
      const n = c.token_ids?.length ?? 0;
      if (n > maxLen)
        throw new HttpError(
          400,
          `token_ids length (${n}) in choice ${c.index} exceeds max_model_len (${maxLen}).`,
        );
    }
  }
}

function textOf(ctx: SimContext, ids: readonly number[] | null | undefined): string {
  return ids && ids.length > 0 ? ctx.tokenizer.decode(ids, true) : "";
}

function usage(prompt: number, completion: number): Record<string, unknown> {
  return {
    prompt_tokens: prompt,
    total_tokens: prompt + completion,
    completion_tokens: completion,
    prompt_tokens_details: null,
  };
}

const outputTokens = (g: GenerateResponse): number =>
  g.choices.reduce((a, c) => a + (c.token_ids?.length ?? 0), 0);

export function derenderChat(ctx: SimContext, raw: unknown): unknown {
  const body = validate(derenderOne, raw);
  resolveRequestModel(ctx, body.model);
  const g = body.generate_response;
  checkBounds(ctx, [g]);
  return {
    id: g.request_id,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    choices: g.choices.map((c) => ({
      index: c.index,
      message: assistantMessage(textOf(ctx, c.token_ids)),
      logprobs: null,
      finish_reason: c.finish_reason ?? "stop",
      stop_reason: c.stop_reason ?? null,
      token_ids: null,
    })),
    service_tier: null,
    system_fingerprint: null,
    usage: usage(body.prompt_tokens ?? 0, outputTokens(g)),
    prompt_logprobs: null,
    prompt_token_ids: null,
    kv_transfer_params: g.kv_transfer_params ?? null,
  };
}

export function derenderCompletions(ctx: SimContext, raw: unknown): unknown {
  const body = validate(derenderCompletion, raw);
  resolveRequestModel(ctx, body.model);
  const all = body.generate_responses;
  if (all.length === 0) throw new HttpError(400, "generate_responses must not be empty");
  checkBounds(ctx, all);
  let index = 0;
  let completion = 0;
  const choices = all.flatMap((g) =>
    g.choices.map((c) => {
      completion += c.token_ids?.length ?? 0;
      return {
        index: index++,
        text: textOf(ctx, c.token_ids),
        logprobs: null,
        finish_reason: c.finish_reason ?? "stop",
        stop_reason: c.stop_reason ?? null,
        prompt_logprobs: null,
        prompt_token_ids: null,
        token_ids: null,
      };
    }),
  );
  const prompt = (body.prompt_tokens ?? []).reduce((a, n) => a + n, 0);
  const kv = all[0]!.kv_transfer_params ?? null;
  const same = all.every((g) => JSON.stringify(g.kv_transfer_params ?? null) === JSON.stringify(kv));
  return {
    id: all[0]!.request_id,
    object: "text_completion",
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    choices,
    service_tier: null,
    system_fingerprint: null,
    usage: usage(prompt, completion),
    kv_transfer_params: same ? kv : null,
  };
}
