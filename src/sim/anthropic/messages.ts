// Anthropic's Messages API as vLLM 0.32 serves it (`POST /v1/messages`, `/v1/messages/count_tokens`):
// the request becomes a chat (system text first, text blocks joined as vLLM joins them), runs as the
// same engine request a chat would (engine-request.ts), and the answer is dressed as an Anthropic message,
// whole or as Anthropic's SSE event sequence. Errors raised while serving are Anthropic-shaped
// (`{"type":"error","error":{"type","message"}}` with vLLM's type names); a body that does not
// validate gets vLLM's global 400 in the OpenAI shape, as FastAPI's validation runs before the handler.
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import type { FinishReason } from "../../engine/types.js";
import { HttpError } from "../../http/errors.js";
import type { ChatMessage } from "../../protocol/chat-messages.js";
import { resolveRequestModel, type ModelChoice, type SimContext } from "../serving/context.js";
import { newRequestHex } from "../openai/completions.js";
import { checkAdmission, Generation, trackLoad, type GenerationResult } from "../serving/engine-request.js";
import { chatPrompt } from "../serving/prompts.js";
import type { ChatBody } from "../protocol/schemas.js";
import { SSE_HEADERS } from "../../protocol/sse.js";
import { toolParserRefusal, type ToolMode } from "../outputs/tools.js";

const block = z.looseObject({
  type: z.string(),
  text: z.string().nullish(),
  content: z.unknown().optional(),
  tool_use_id: z.string().nullish(),
});
// Claude Code's non-standard roles, which vLLM maps to user
const role = z.preprocess(
  (v) => (v === "ctx" || v === "msg" ? "user" : v),
  z.enum(["user", "assistant", "system"]),
);
const message = z.looseObject({ role, content: z.union([z.string(), z.array(block)]) });
const system = z.union([z.string(), z.array(block)]).nullish();

export const messagesSchema = z.looseObject({
  model: z.string().min(1, "Model is required"),
  messages: z.array(message),
  max_tokens: z
    .number()
    .int()
    .refine((v) => v > 0, "max_tokens must be positive"),
  system,
  stop_sequences: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_k: z.number().int().nullish(),
  metadata: z.record(z.string(), z.unknown()).nullish(),
  kv_transfer_params: z.record(z.string(), z.unknown()).nullish(),
  // vLLM's own field on its Anthropic route: mixed into the first KV block's hash, so requests with
  // different salts never share a prefix-cache hit (the router's per-tenant isolation rides on it)
  cache_salt: z.string().nullish(),
});
export type MessagesBody = z.infer<typeof messagesSchema>;

export const countTokensSchema = z.looseObject({
  model: z.string().min(1, "Model is required"),
  messages: z.array(message),
  system,
});

type Block = z.infer<typeof block>;

/** Claude Code puts a per-request hash here; vLLM drops the block so it does not defeat prefix caching */
const BILLING_HEADER = "x-anthropic-billing-header";

function systemText(blocks: string | Block[] | null | undefined, out: string[]): void {
  if (!blocks) return;
  if (typeof blocks === "string") {
    out.push(blocks);
    return;
  }
  for (const b of blocks)
    if (b.type === "text" && b.text && !b.text.startsWith(BILLING_HEADER)) out.push(b.text);
}

function toolResultText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  const parts: string[] = [];
  for (const item of content as Array<Record<string, unknown>>)
    if (item && item.type === "text" && typeof item.text === "string") parts.push(item.text);
  return parts.join("\n");
}

/**
 * The chat vLLM's Anthropic endpoint builds: one system message (the top-level `system` and every
 * system-role message, joined with nothing between), then each user and assistant message with its
 * text blocks (one text block becomes a string), a user's tool results as tool messages. Images,
 * thinking and tool-use blocks carry nothing the sim's templates render and are dropped.
 */
export function anthropicToChat(body: {
  system?: string | Block[] | null;
  messages: Array<{ role: string; content: string | Block[] }>;
}): ChatMessage[] {
  const out: ChatMessage[] = [];
  const sys: string[] = [];
  systemText(body.system, sys);
  for (const m of body.messages) if (m.role === "system") systemText(m.content, sys);
  if (sys.length > 0) out.push({ role: "system", content: sys.join("") });
  for (const m of body.messages) {
    if (m.role === "system") continue;
    if (typeof m.content === "string") {
      out.push({ role: m.role, content: m.content });
      continue;
    }
    const parts: Array<{ type: string; text: string }> = [];
    for (const b of m.content) {
      if (b.type === "text" && b.text) parts.push({ type: "text", text: b.text });
      else if (b.type === "tool_result") {
        if (m.role === "user") out.push({ role: "tool", content: toolResultText(b.content) });
        else parts.push({ type: "text", text: `Tool result: ${toolResultText(b.content)}` });
      }
    }
    if (parts.length === 1) out.push({ role: m.role, content: parts[0]!.text });
    else if (parts.length > 1) out.push({ role: m.role, content: parts });
    // a user message with no content left is dropped, as vLLM drops it; an assistant's stays
    else if (m.role !== "user") out.push({ role: m.role, content: "" });
  }
  return out;
}

/** The prompt's token ids: the converted chat through the model's template, generation prompt on. */
export async function messagesPromptIds(ctx: SimContext, messages: ChatMessage[]): Promise<number[]> {
  const p = await chatPrompt(ctx, { messages } as unknown as ChatBody);
  return p.tokenIds;
}

/** vLLM's Anthropic error body: the OpenAI error's type and message, Anthropic's envelope. */
export function sendAnthropicError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ type: "error", error: { type: err.type, message: err.message } });
  res.writeHead(err.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** Runs `fn`; an HttpError it throws (not a validation error before it) is answered Anthropic-shaped. */
/**
 * The chat tool_choice vLLM converts an Anthropic request's into: any → required, tool → that
 * function, absent with tools → auto (vLLM's default there).
 */
function anthropicToolMode(body: Record<string, unknown>): ToolMode {
  const tc = body.tool_choice as { type?: unknown; name?: unknown } | null | undefined;
  const hasTools = Array.isArray(body.tools) && body.tools.length > 0;
  if (tc === null || tc === undefined) return { kind: hasTools ? "auto" : "none" };
  if (tc.type === "any") return { kind: "required" };
  if (tc.type === "tool") return { kind: "named", name: String(tc.name) };
  if (tc.type === "auto") return { kind: "auto" };
  return { kind: "none" };
}

/** vLLM's refusal of a tool_choice it has no parser for, as its chat path answers it. */
function checkToolParser(ctx: SimContext, body: Record<string, unknown>): void {
  const refusal = toolParserRefusal(anthropicToolMode(body), ctx.options);
  if (refusal !== null) throw new HttpError(400, refusal);
}

async function anthropicErrors(res: ServerResponse, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof HttpError) sendAnthropicError(res, err);
    else throw err;
  }
}

const STOP_REASON: Partial<Record<FinishReason, string>> = { stop: "end_turn", length: "max_tokens" };

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export async function handleMessages(
  ctx: SimContext,
  req: IncomingMessage,
  res: ServerResponse,
  body: MessagesBody,
): Promise<void> {
  await anthropicErrors(res, async () => {
    const model = resolveRequestModel(ctx, body.model);
    checkToolParser(ctx, body);
    const promptIds = await messagesPromptIds(ctx, anthropicToChat(body));
    if (res.destroyed || res.writableEnded) return;
    // vLLM hands an Anthropic max_tokens on as the chat's max_completion_tokens, and names that
    checkAdmission(ctx, [promptIds], body.max_tokens, 0, 1, { param: "max_completion_tokens", text: true });
    const headerId = req.headers["x-request-id"];
    const id = `chatcmpl-${typeof headerId === "string" && headerId ? headerId : newRequestHex()}`;
    const call: MessageCall = { ctx, res, id, model, promptIds, body };
    if (body.stream === true) streamMessage(call);
    else wholeMessage(call);
  });
}

/** One admitted message request: what its answer, whole or streamed, is written from. */
interface MessageCall {
  ctx: SimContext;
  res: ServerResponse;
  id: string;
  model: ModelChoice;
  promptIds: number[];
  body: MessagesBody;
}

function startGeneration(
  { ctx, res, model, promptIds, body }: MessageCall,
  events: ConstructorParameters<typeof Generation>[2],
): void {
  const gen = new Generation(
    ctx,
    {
      promptIds,
      model,
      maxTokens: body.max_tokens,
      temperature: body.temperature ?? null,
      stop: body.stop_sequences ?? [],
      cacheSalt: body.cache_salt ?? null,
    },
    events,
  );
  trackLoad(ctx, res);
  res.once("close", () => gen.abort());
  gen.submit();
}

/** The whole message (vLLM dumps it without its null fields). */
export function anthropicMessage(
  id: string,
  model: string,
  r: GenerationResult,
  promptTokens: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id,
    type: "message",
    role: "assistant",
    content: r.text ? [{ type: "text", text: r.text }] : [],
    model,
  };
  const stop = STOP_REASON[r.reason];
  if (stop) out.stop_reason = stop;
  out.usage = { input_tokens: promptTokens, output_tokens: r.timings.outputTokens };
  return out;
}

function wholeMessage(call: MessageCall): void {
  const { res, id, model, promptIds } = call;
  startGeneration(call, {
    onDone: (r) => {
      if (res.destroyed || res.writableEnded) return;
      const text = JSON.stringify(anthropicMessage(id, model.name, r, promptIds.length));
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    },
  });
}

/**
 * Anthropic's event sequence as vLLM's converter writes it from the chat stream: message_start with
 * the first output (its message dumped with only the fields vLLM sets), one text block opened by the
 * first non-empty text, a text_delta per engine step, then content_block_stop, message_delta with
 * stop_reason and usage, message_stop.
 */
function streamMessage(call: MessageCall): void {
  const { res, id, model, promptIds } = call;
  res.writeHead(200, { ...SSE_HEADERS });
  res.flushHeaders();
  let started = false;
  let blockOpen = false;
  const start = (): string => {
    if (started) return "";
    started = true;
    return sse("message_start", {
      type: "message_start",
      message: {
        id,
        type: "message",
        role: "assistant",
        content: [],
        model: model.name,
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: promptIds.length, output_tokens: 0 },
      },
    });
  };
  startGeneration(call, {
    onOutput: (text) => {
      if (res.destroyed || res.writableEnded) return;
      let out = start();
      if (text) {
        if (!blockOpen) {
          blockOpen = true;
          out += sse("content_block_start", {
            type: "content_block_start",
            index: 0,
            content_block: { type: "text", text: "" },
          });
        }
        out += sse("content_block_delta", {
          type: "content_block_delta",
          index: 0,
          delta: { type: "text_delta", text },
        });
      }
      if (out) res.write(out);
    },
    onDone: (r) => {
      if (res.destroyed || res.writableEnded) return;
      let out = start();
      if (blockOpen) out += sse("content_block_stop", { type: "content_block_stop", index: 0 });
      out += sse("message_delta", {
        type: "message_delta",
        delta: { stop_reason: STOP_REASON[r.reason] ?? null },
        usage: { input_tokens: promptIds.length, output_tokens: r.timings.outputTokens },
      });
      out += sse("message_stop", { type: "message_stop" });
      res.end(out);
    },
  });
}

/** `/v1/messages/count_tokens`: the prompt the message would have, counted with the chat template. */
export async function handleCountTokens(
  ctx: SimContext,
  res: ServerResponse,
  body: z.infer<typeof countTokensSchema>,
): Promise<void> {
  await anthropicErrors(res, async () => {
    resolveRequestModel(ctx, body.model);
    checkToolParser(ctx, body);
    const n = (await messagesPromptIds(ctx, anthropicToChat(body))).length;
    const text = JSON.stringify({ input_tokens: n, context_management: { original_input_tokens: n } });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  });
}
