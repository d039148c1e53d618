// vLLM's token-in/token-out endpoint, `POST /inference/v1/generate` (served with --enable-scale-out):
// prompt token ids and SamplingParams in, output token ids out, whole or streamed, and
// `POST /inference/v1/abort_requests` to stop them by the id the server answered with. It skips the
// chat template and the detokenizer, so a gateway that renders prompts itself drives the engine model
// exactly as it would drive vLLM's; the ids are the same greedy chain a chat of that prompt gets.
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { FinishReason } from "../../engine/types.js";
import { HttpError, type ErrorType } from "../../http/errors.js";
import { AbortRegistry } from "../serving/abort-registry.js";
import { resolveRequestModel, type SimContext } from "../serving/context.js";
import {
  checkAdmission,
  checkTokenIds,
  Generation,
  samplingSpec,
  trackLoad,
  type GenerationResult,
} from "../serving/engine-request.js";
import { validate } from "../protocol/schemas.js";
import { DONE_EVENT, SSE_HEADERS } from "../../protocol/sse.js";

/**
 * vLLM 0.32's engine-side check, the only one this route meets: a prompt past the context, or one that
 * leaves no room for a token, is refused in its input processor's words (param null); otherwise
 * max_tokens is what was asked, never more than the room left.
 */
function engineFit(maxModelLen: number, promptTokens: number, asked: number | null): number | null {
  if (promptTokens > maxModelLen)
    throw new HttpError(
      400,
      `The decoder prompt (length ${promptTokens}) is longer than the maximum model length of ${maxModelLen}. ` +
        "Make sure that `max_model_len` is no smaller than the number of text tokens.",
    );
  if (promptTokens === maxModelLen)
    throw new HttpError(
      400,
      `The decoder prompt (length ${promptTokens}) plus the number of requested output tokens (at least 1) ` +
        `is longer than the maximum model length of ${maxModelLen}. Make sure that \`max_model_len\` is no ` +
        "smaller than the number of text tokens (prompt + requested output tokens).",
    );
  return asked === null ? null : Math.min(asked, maxModelLen - promptTokens);
}

const nonNegIds = z.array(z.number().int().min(0, "token_ids must not contain negative values"));

const sampling = z.looseObject({
  n: z.number().int().min(1).nullish(),
  max_tokens: z.number().int().nullish(),
  min_tokens: z.number().int().min(0).nullish(),
  temperature: z.number().nullish(),
  ignore_eos: z.boolean().nullish(),
  stop: z.union([z.string(), z.array(z.string())]).nullish(),
  detokenize: z.boolean().nullish(),
});

export const generateSchema = z.looseObject({
  request_id: z.string().nullish(),
  token_ids: nonNegIds.min(1),
  sampling_params: sampling,
  model: z.string().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z
    .looseObject({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() })
    .nullish(),
  cache_salt: z.string().nullish(),
  priority: z.number().int().nullish(),
  output_mode: z.string().nullish(),
});

function registry(ctx: SimContext): AbortRegistry {
  return (ctx.tokenRequests ??= new AbortRegistry());
}

/** FastAPI's HTTPException as vLLM's handler answers it: the status's phrase as the type. */
function httpException(status: number, phrase: string, message: string): HttpError {
  return new HttpError(status, message, null, {}, phrase as ErrorType);
}

interface Choice {
  index: number;
  gen: Generation;
  result: GenerationResult | null;
  sent: number;
  finishSent: FinishReason | null;
}

export async function handleGenerate(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  raw: unknown,
): Promise<void> {
  const body = validate(generateSchema, raw);
  const model = resolveRequestModel(ctx, body.model);
  const sp = body.sampling_params;
  const mode = body.output_mode ?? "tokens";
  if (mode !== "tokens" && mode !== "text")
    throw new HttpError(
      400,
      `Unsupported output_mode '${mode}'; expected 'tokens' or 'text'.`,
      "output_mode",
    );
  if (mode === "text" && sp.detokenize === false)
    throw new HttpError(400, "output_mode 'text' needs sampling_params.detokenize.", "output_mode");
  const n = sp.n ?? 1;
  const maxSeqs = ctx.engineConfig.maxNumSeqs;
  if (n > maxSeqs)
    throw new HttpError(
      400,
      `sampling_params.n must be at most the server's max_num_seqs (${maxSeqs}), got ${n}.`,
    );
  checkTokenIds(ctx, body.token_ids);
  // unset max_tokens: the room left in the context, as vLLM defaults it server-side; a larger one is cut
  // to that room (the token-in route has no max_model_len check of its own, only the engine's)
  const maxTokens = engineFit(ctx.engineConfig.maxModelLen, body.token_ids.length, sp.max_tokens ?? null);
  checkAdmission(ctx, [body.token_ids], maxTokens, body.priority ?? 0, n);
  const header = req.headers["x-request-id"];
  const base = typeof header === "string" && header ? header : (body.request_id ?? randomUUID());
  const id = `generate-tokens-${base}`;
  const sampled = samplingSpec(sp);
  const created = Math.floor(Date.now() / 1000);
  const stream = body.stream === true;
  const includeUsage = stream && body.stream_options?.include_usage === true;
  const continuous = includeUsage && body.stream_options?.continuous_usage_stats === true;
  const promptTokens = body.token_ids.length;
  const reg = registry(ctx);
  const choices: Choice[] = [];
  let finished = 0;

  const choiceJson = (
    c: Choice,
    ids: readonly number[],
    finish: FinishReason | null,
    stopReason: string | null,
    text: string | null,
  ) => {
    const out: Record<string, unknown> = {
      index: c.index,
      finish_reason: finish,
      stop_reason: stopReason,
      token_ids: ids,
      routed_experts: null,
      sampling_mask: null,
      // the weights that made the choice's tokens: the one set a sim has, over all of them once done
      weight_versions:
        finish === null ? null : [{ version: "default", start: 0, end: c.result?.ids.length ?? c.sent }],
    };
    if (mode === "text") out.text = text ?? "";
    out.logprobs = null;
    return out;
  };
  const usageOf = (completion: number): Record<string, unknown> => ({
    prompt_tokens: promptTokens,
    total_tokens: promptTokens + completion,
    completion_tokens: completion,
    prompt_tokens_details: null,
    completion_tokens_details: null,
  });
  const totalOut = (): number => choices.reduce((a, c) => a + (c.result?.timings.outputTokens ?? c.sent), 0);
  const chunk = (
    c: Choice,
    ids: readonly number[],
    finish: FinishReason | null,
    stopReason: string | null,
    text: string,
  ) =>
    `data: ${JSON.stringify({
      request_id: id,
      usage: continuous ? usageOf(c.sent) : null,
      output_mode: mode,
      choices: [choiceJson(c, ids, finish, stopReason, text)],
    })}\n\n`;

  const complete = (): void => {
    if (res.destroyed || res.writableEnded) return;
    if (stream) {
      let out = "";
      if (includeUsage) {
        // the closing usage has the counts alone, no details
        const n = totalOut();
        const usage = { prompt_tokens: promptTokens, total_tokens: promptTokens + n, completion_tokens: n };
        out += `data: ${JSON.stringify({ request_id: id, usage, output_mode: mode, choices: [] })}\n\n`;
      }
      res.end(out + DONE_EVENT);
      return;
    }
    const cached = choices[0]?.result?.timings.cachedTokens ?? 0;
    const u = usageOf(totalOut());
    if (ctx.options.enablePromptTokensDetails) u.prompt_tokens_details = { cached_tokens: cached };
    // vLLM 0.32's GenerateResponse, fields in its order
    const text = JSON.stringify({
      request_id: id,
      model: model.name,
      created,
      usage: u,
      prompt_logprobs: null,
      prompt_token_id_logprobs: null,
      prompt_token_ids: null,
      mm_placeholders: null,
      metrics: null,
      kv_transfer_params: null,
      ec_transfer_params: null,
      output_mode: mode,
      choices: choices.map((c) =>
        choiceJson(c, c.result!.ids, c.result!.reason, c.result!.stopString, c.result!.text),
      ),
    });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  for (let k = 0; k < n; k++) {
    const c: Choice = {
      index: k,
      gen: null as unknown as Generation,
      result: null,
      sent: 0,
      finishSent: null,
    };
    c.gen = new Generation(
      ctx,
      {
        promptIds: body.token_ids,
        model,
        maxTokens,
        ...sampled,
        priority: body.priority ?? 0,
        cacheSalt: body.cache_salt ?? null,
        choice: k,
      },
      {
        onOutput: (text, ids, finish) => {
          c.sent += ids.length;
          if (!stream || res.destroyed || res.writableEnded) return;
          c.finishSent = finish;
          res.write(chunk(c, ids, finish, finish === "stop" ? c.gen.stopString : null, text));
        },
        onDone: (r) => {
          c.result = r;
          reg.remove(id, c.gen);
          // the reason on the last token's chunk was a prediction; an abort goes out as one more
          // chunk with no new ids, as vLLM sends a terminal output
          if (stream && !res.destroyed && !res.writableEnded && c.finishSent !== r.reason)
            res.write(chunk(c, [], r.reason, r.stopString, ""));
          if (++finished === n) complete();
        },
      },
    );
    choices.push(c);
  }
  if (stream) {
    res.writeHead(200, { ...SSE_HEADERS });
    res.flushHeaders();
  }
  trackLoad(ctx, res);
  res.once("close", () => {
    for (const c of choices) c.gen.abort();
  });
  for (const c of choices) {
    reg.add(id, c.gen);
    c.gen.submit(c.gen.maxTokens);
  }
}

/** `POST /inference/v1/abort_requests {"request_ids": [...]}`: 200 empty; the aborts happen at once. */
export function handleAbortRequests(
  ctx: SimContext,
  res: ServerResponse,
  body: Record<string, unknown>,
): void {
  const ids = body.request_ids;
  if (ids === undefined || ids === null)
    throw httpException(400, "Bad Request", "Missing 'request_ids' in request body");
  const list = (Array.isArray(ids) ? ids : [ids]).filter((x): x is string => typeof x === "string");
  registry(ctx).abort(list);
  res.writeHead(200, { "content-length": 0 });
  res.end();
}
