// `POST /v1/chat/completions/batch` and `POST /invocations` as vLLM 0.32 serves them. The batch takes
// N conversations in one request (`messages` is a list of message lists) and answers one
// chat.completion whose choice i answers conversation i; vLLM runs them concurrently, and its batch
// request has no `stream` field, so a streamed batch is answered whole. /invocations is SageMaker's single entry point: vLLM tries the request types it
// serves in order and hands the body to the first one it validates as.
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { HttpError } from "../../http/errors.js";
import { assistantMessage, systemFingerprint } from "../../http/vllm-answers.js";
import { resolveRequestModel, type SimContext } from "../serving/context.js";
import { newRequestHex } from "./completions.js";
import {
  checkAdmission,
  Generation,
  samplingSpec,
  STOP_SEARCH_WORK,
  trackLoad,
  type GenerationResult,
} from "../serving/engine-request.js";
import { chatPrompt } from "../serving/prompts.js";
import { spliceRaw, writeJsonPieces } from "./raw-json.js";
import {
  chatMessageSchema,
  chatSchema,
  completionSchema,
  embeddingsSchema,
  validate,
} from "../protocol/schemas.js";

/** where the choices' JSON goes in the answer's body (raw-json.ts) */
const CHOICES = "\u0000choices\u0000";
const CHOICES_JSON = JSON.stringify(CHOICES);

/** vLLM's BatchChatCompletionRequest.messages: at least one conversation, each of at least one message */
const batchMessagesSchema = z.object({ messages: z.array(z.array(chatMessageSchema).min(1)).min(1) });

/** Conversations in one batch at most: each becomes an engine request held until the last finishes. */
export const MAX_BATCH_CONVERSATIONS = 1024;

export async function handleChatBatch(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  body: Record<string, unknown>,
): Promise<void> {
  // vLLM's batch-mode checks come first (a validator run before the fields are read)
  if (body.use_beam_search === true)
    throw new HttpError(
      400,
      "Batch chat completions do not support beam search. Please set `use_beam_search` to False. " +
        "(parameter=use_beam_search)",
      "use_beam_search",
    );
  if (body.n !== undefined && body.n !== null && body.n !== 1)
    throw new HttpError(
      400,
      `Batch chat completions do not support \`n > 1\`. Please set \`n\` to 1. (parameter=n, value=${JSON.stringify(body.n)})`,
      "n",
    );
  // then its request model: a list of non-empty lists of messages, refused at the location
  // (body.messages.1 for a conversation that is not a list, body.messages.0.2.… for a bad message)
  const conversations = validate(batchMessagesSchema, body).messages;
  if (conversations.length > MAX_BATCH_CONVERSATIONS)
    throw new HttpError(
      400,
      `messages: at most ${MAX_BATCH_CONVERSATIONS} conversations per batch`,
      "messages",
    );
  // vLLM 0.32's batch request has no `stream` field: a streamed batch is answered whole, as JSON
  // each conversation is checked and rendered as the chat it would be alone
  const singles = conversations.map((messages) => validate(chatSchema, { ...body, messages }));
  const first = singles[0]!;
  const model = resolveRequestModel(ctx, first.model);
  const prompts: number[][] = [];
  for (const s of singles) prompts.push((await chatPrompt(ctx, s)).tokenIds);
  if (res.destroyed || res.writableEnded) return;
  const maxTokens = first.max_completion_tokens ?? first.max_tokens ?? null;
  checkAdmission(ctx, prompts, maxTokens, first.priority ?? 0, prompts.length, {
    param: first.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens",
    text: true,
  });
  const header = req.headers["x-request-id"];
  const id = `chatcmpl-${typeof header === "string" && header ? header : (first.request_id ?? newRequestHex())}`;
  const created = Math.floor(Date.now() / 1000);
  const sampled = samplingSpec(first);
  const results: Array<GenerationResult | null> = prompts.map(() => null);
  let finished = 0;
  const gens = prompts.map(
    (promptIds, i) =>
      new Generation(
        ctx,
        {
          promptIds,
          model,
          maxTokens,
          ...sampled,
          priority: first.priority ?? 0,
          cacheSalt: first.cache_salt ?? null,
          // every conversation's stop search runs in this one turn of the event loop
          stopSearchWork: STOP_SEARCH_WORK / prompts.length,
        },
        {
          onDone: (r) => {
            results[i] = r;
            if (++finished === prompts.length) answer();
          },
        },
      ),
  );
  const answer = (): void => {
    if (res.destroyed || res.writableEnded) return;
    const promptTokens = prompts.reduce((a, p) => a + p.length, 0);
    const completion = results.reduce((a, r) => a + r!.timings.outputTokens, 0);
    // a choice's JSON is made as it is written: 1,024 long answers in one JSON.stringify held the loop
    // for the better part of a second
    function* choices(): Generator<string> {
      for (let index = 0; index < results.length; index++) {
        const r = results[index]!;
        yield (
          (index === 0 ? "[" : ",") +
          JSON.stringify({
            index,
            message: assistantMessage(r.text),
            logprobs: null,
            finish_reason: r.reason,
            stop_reason: r.stopString,
            token_ids: first.return_token_ids === true ? r.ids : null,
            routed_experts: null,
          })
        );
      }
      yield results.length === 0 ? "[]" : "]";
    }
    const body = JSON.stringify({
      id,
      object: "chat.completion",
      created,
      model: model.name,
      choices: CHOICES,
      service_tier: null,
      system_fingerprint: systemFingerprint(
        ctx.options.vllmVersion,
        ctx.options.tensorParallelSize,
        `${ctx.options.model} ${ctx.options.maxModelLen ?? ""} ${ctx.options.dtype}`,
      ),
      usage: {
        prompt_tokens: promptTokens,
        total_tokens: promptTokens + completion,
        completion_tokens: completion,
        prompt_tokens_details: null,
        completion_tokens_details: null,
      },
      prompt_logprobs: null,
      prompt_token_ids: null,
      prompt_text: null,
      kv_transfer_params: null,
      ec_transfer_params: null,
      metrics: null,
    });
    writeJsonPieces(res, spliceRaw(body, new Map([[CHOICES_JSON, choices()]])));
  };
  trackLoad(ctx, res);
  res.once("close", () => {
    for (const g of gens) g.abort();
  });
  for (const g of gens) g.submit();
}

export type InvocationKind = "chat" | "completion" | "embedding";

const hasPrompt = (v: unknown) =>
  typeof v === "object" && v !== null && (v as Record<string, unknown>).prompt != null;

/**
 * vLLM's order for a model that generates: chat first, then completions. vLLM 0.32's completion
 * request has an optional prompt, so any other object is a completion its handler refuses ("Either
 * prompt or prompt_embeds ..."); the sim also embeds, so an embedding body is tried before that.
 */
const INVOCATION_TYPES: Array<[InvocationKind, string, { safeParse(v: unknown): { success: boolean } }]> = [
  ["chat", "ChatCompletionRequest", chatSchema],
  [
    "completion",
    "CompletionRequest",
    { safeParse: (v) => ({ success: hasPrompt(v) && completionSchema.safeParse(v).success }) },
  ],
  ["embedding", "EmbeddingRequest", embeddingsSchema],
  ["completion", "CompletionRequest", completionSchema],
];

/** The first request type the body validates as, or vLLM's 400 naming the types it tried. */
export function invocationKind(body: unknown): InvocationKind {
  for (const [kind, , schema] of INVOCATION_TYPES) if (schema.safeParse(body).success) return kind;
  const names = [...new Set(INVOCATION_TYPES.map(([, name]) => `'${name}'`))].join(", ");
  throw new HttpError(400, `Cannot find suitable handler for request. Expected one of: [${names}]`);
}
