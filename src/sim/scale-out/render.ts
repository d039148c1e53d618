// vLLM's render and derender endpoints (served with --enable-scale-out): render turns an OpenAI chat,
// completion, Anthropic message or Responses request into the GenerateRequest that
// `/inference/v1/generate` takes (the prompt's token ids and the sampling parameters), without running
// the model; derender turns a GenerateResponse's token ids back into the API's answer. A gateway that
// tokenises elsewhere and routes on token ids uses the pair around the token-in/token-out engine.
import { z } from "zod";
import { contextLengthError } from "../../http/context-length.js";
import { HttpError, type ErrorType } from "../../http/errors.js";
import { assistantMessage } from "../../http/vllm-answers.js";
import { resolveRequestModel, type SimContext } from "../serving/context.js";
import { newRequestHex } from "../openai/completions.js";
import { anthropicToChat, messagesPromptIds, messagesSchema } from "../anthropic/messages.js";
import { chatPrompt, completionPrompts } from "../serving/prompts.js";
import { prepareResponse, responsesSchema } from "../openai/responses.js";
import { extraSampling, samplingParams, type Sampling } from "../serving/sampling-params.js";
import { chatSchema, completionSchema, validate } from "../protocol/schemas.js";

/** vLLM's get_max_tokens: what the request asked, never more than the context leaves. */
function maxTokensFor(ctx: SimContext, promptTokens: number, asked: number | null): number {
  const err = contextLengthError({
    maxModelLen: ctx.engineConfig.maxModelLen,
    promptTokens,
    maxTokens: asked,
    // a count from text; "clamp" rules are the only ones of a release that has render
    text: true,
  });
  if (err) throw err;
  const room = ctx.engineConfig.maxModelLen - promptTokens;
  return asked === null ? room : Math.min(asked, room);
}

/** The request's own fields a GenerateRequest carries over as they came (chat and completions have them all). */
interface Carried {
  model?: string | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null; continuous_usage_stats?: boolean | null } | null;
  cache_salt?: string | null;
  priority?: number | null;
}

/** vLLM's StreamOptions as it dumps them: both fields, an absent one at its default (false). */
function streamOptions(o: Carried["stream_options"]): Record<string, unknown> | null {
  if (!o) return null;
  return {
    include_usage: o.include_usage === undefined ? false : o.include_usage,
    continuous_usage_stats: o.continuous_usage_stats === undefined ? false : o.continuous_usage_stats,
  };
}

/** vLLM 0.32's GenerateRequest, fields in its order. */
function generateRequest(
  requestId: string,
  tokenIds: number[],
  sampling: Record<string, unknown>,
  r: Carried,
  kvTransferParams: Record<string, unknown> | null = null,
): Record<string, unknown> {
  return {
    request_id: requestId,
    token_ids: tokenIds,
    token_offsets: null,
    features: null,
    content_parts: null,
    sampling_params: sampling,
    model: r.model ?? null,
    reasoning_ended: null,
    reasoning_parser_kwargs: null,
    return_token_ids: null,
    output_mode: "tokens",
    stream: r.stream === true,
    stream_options: r.stream === true ? streamOptions(r.stream_options) : null,
    cache_salt: r.cache_salt ?? null,
    priority: r.priority ?? 0,
    kv_transfer_params: kvTransferParams,
    ec_transfer_params: null,
  };
}

/** A chat or completion's request_id as vLLM renders it: its prefix and the request's own id, or a random one. */
function renderedId(prefix: string, own: string | null | undefined): string {
  return `${prefix}-${own ?? newRequestHex()}`;
}

/** A chat or completion request's kv_transfer_params ride in SamplingParams.extra_args, not the GenerateRequest. */
function extraArgsOf(kv: Record<string, unknown> | null | undefined): Record<string, unknown> | null {
  return kv ? { kv_transfer_params: kv } : null;
}

export async function renderChat(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(chatSchema, raw);
  resolveRequestModel(ctx, body.model);
  const { tokenIds } = await chatPrompt(ctx, body);
  const max = maxTokensFor(ctx, tokenIds.length, body.max_completion_tokens ?? body.max_tokens ?? null);
  const sampling: Sampling = {
    ...body,
    ...extraSampling(raw),
    // chat's logprobs is a switch; SamplingParams takes the number of top logprobs
    logprobs: body.logprobs ? (body.top_logprobs ?? 0) : null,
  };
  return generateRequest(
    renderedId("chatcmpl", body.request_id),
    tokenIds,
    samplingParams(sampling, max, {
      stream: body.stream === true,
      extraArgs: extraArgsOf(body.kv_transfer_params),
    }),
    body,
  );
}

export async function renderCompletions(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(completionSchema, raw);
  resolveRequestModel(ctx, body.model);
  const prompts = await completionPrompts(ctx, body);
  const logprobs = typeof body.logprobs === "number" ? body.logprobs : null;
  const sampling: Sampling = {
    ...body,
    ...extraSampling(raw),
    logprobs,
    // an echoed prompt comes with the logprobs asked of the output
    prompt_logprobs: body.prompt_logprobs ?? (body.echo && logprobs ? logprobs : null),
  };
  // a batch's GenerateRequests are told apart by their index
  const base = renderedId("cmpl", body.request_id);
  return prompts.map((p, i) => {
    if (p.tokenIds.length === 0) throw new HttpError(400, "The prompt cannot be empty.", "prompt");
    const max = maxTokensFor(ctx, p.tokenIds.length, body.max_tokens ?? 16);
    return generateRequest(
      prompts.length > 1 ? `${base}-${i}` : base,
      p.tokenIds,
      samplingParams(sampling, max, {
        stream: body.stream === true,
        extraArgs: extraArgsOf(body.kv_transfer_params),
      }),
      body,
    );
  });
}

export async function renderMessages(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(messagesSchema, raw);
  resolveRequestModel(ctx, body.model);
  const tokenIds = await messagesPromptIds(ctx, anthropicToChat(body));
  const stream = body.stream === true;
  const sampling = samplingParams(
    { temperature: body.temperature, top_p: body.top_p, top_k: body.top_k, stop: body.stop_sequences },
    maxTokensFor(ctx, tokenIds.length, body.max_tokens),
    { stream },
  );
  // an Anthropic request has no stream_options or priority of its own; a stream's usage is reported
  // as it goes, so vLLM asks the chat path for it
  return generateRequest(`chatcmpl-${newRequestHex()}`, tokenIds, sampling, {
    model: body.model,
    stream,
    cache_salt: body.cache_salt,
    stream_options: stream ? { include_usage: true, continuous_usage_stats: true } : null,
  });
}

export async function renderResponses(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(responsesSchema, raw);
  // render keeps no state, so it cannot read the store a continued response needs
  if (body.previous_response_id)
    throw new HttpError(
      400,
      "previous_response_id is not supported by the stateless render endpoint.",
      "previous_response_id",
      {},
      "invalid_request_error" as ErrorType,
    );
  const p = await prepareResponse(ctx, body);
  const kv = body.kv_transfer_params ?? null;
  const sampling = samplingParams(
    {
      temperature: body.temperature,
      top_p: body.top_p,
      presence_penalty: body.presence_penalty,
      frequency_penalty: body.frequency_penalty,
    },
    maxTokensFor(ctx, p.promptIds.length, body.max_output_tokens ?? null),
    // a Responses request always carries extra_args, its kv_transfer_params in them too
    { stream: body.stream === true, extraArgs: kv ? { kv_transfer_params: kv } : {} },
  );
  return generateRequest(
    p.id,
    p.promptIds,
    sampling,
    { model: body.model, stream: body.stream, cache_salt: body.cache_salt, priority: body.priority },
    kv,
  );
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
    completion_tokens_details: null,
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
      routed_experts: null,
    })),
    service_tier: null,
    system_fingerprint: null,
    usage: usage(body.prompt_tokens ?? 0, outputTokens(g)),
    prompt_logprobs: null,
    prompt_token_ids: null,
    prompt_text: null,
    kv_transfer_params: g.kv_transfer_params ?? null,
    ec_transfer_params: null,
    metrics: null,
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
        token_ids: null,
        prompt_logprobs: null,
        prompt_token_ids: null,
        routed_experts: null,
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
    ec_transfer_params: null,
    metrics: null,
  };
}
