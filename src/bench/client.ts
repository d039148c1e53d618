// The HTTP side of the bench: one undici Pool per origin with enough connections for the load, a
// streaming request that timestamps every chunk with performance.now(), and the SSE handling that
// turns chunks into TTFT, ITL and token counts. Nothing here knows about workloads or schedules.
import { performance } from "node:perf_hooks";
import { Pool } from "undici";
import type { ErrorKind, RequestRecord } from "../workload/record.js";
import { DONE_DATA, SseParser } from "../protocol/sse.js";
import type { ChatMessage, Endpoint } from "../workload/types.js";

export interface ClientOptions {
  baseUrl: string;
  model: string;
  endpoint: Endpoint;
  apiKey: string | null;
  connections: number;
  /** ms; applies to headers and to each gap in the body */
  timeoutMs: number;
  extraHeaders: Record<string, string>;
  /** extra JSON fields merged into every request body (temperature, ignore_eos, ...) */
  extraBody: Record<string, unknown>;
}

export interface OneRequest {
  index: number;
  sessionId: string;
  round: number;
  prompt: string | null;
  messages: ChatMessage[] | null;
  maxTokens: number;
  intendedPromptTokens: number;
  /**
   * send the session id as x-session-id (the router's default session header, Dynamo's and llm-d's
   * kind) and x-user-id (the production-stack router's), so a session router keeps it on one engine
   */
  sessionHeader: boolean;
  /** keep the generated text (multi-round sessions carry it into the next round) */
  keepText: boolean;
}

export interface Sent {
  record: RequestRecord;
  text: string;
}

/** Splits a base URL into the origin undici connects to and a path prefix (for servers under a path). */
export function splitBase(baseUrl: string): { origin: string; prefix: string } {
  const u = new URL(baseUrl);
  return { origin: u.origin, prefix: u.pathname.replace(/\/+$/, "") };
}

const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;

/**
 * vLLM's per-request `metrics` (on the final usage chunk with `--enable-per-request-metrics`) into the
 * record: the engine core's queue wait + prefill, and its decode time per output token
 */
function engineTiming(rec: RequestRecord, m: unknown): void {
  if (!m || typeof m !== "object") return;
  const x = m as { queue_time_ms?: unknown; time_to_first_token_ms?: unknown; mean_itl_ms?: unknown };
  if (finite(x.time_to_first_token_ms))
    rec.engineTtft = x.time_to_first_token_ms + (finite(x.queue_time_ms) ? x.queue_time_ms : 0);
  if (finite(x.mean_itl_ms)) rec.engineTpot = x.mean_itl_ms;
}

function classify(err: unknown): ErrorKind {
  const code = (err as { code?: string })?.code ?? "";
  const name = (err as { name?: string })?.name ?? "";
  if (name === "AbortError" || code === "UND_ERR_ABORTED") return "aborted";
  if (code.includes("TIMEOUT")) return "timeout";
  if (
    ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EHOSTUNREACH", "UND_ERR_SOCKET"].includes(code) ||
    code.startsWith("UND_ERR_CONNECT")
  )
    return "connect";
  return "other";
}

export class BenchClient {
  readonly pool: Pool;
  private readonly prefix: string;
  private readonly path: string;
  private readonly baseHeaders: Record<string, string>;
  /** start of the run, on performance.now()'s clock */
  t0 = performance.now();

  constructor(readonly opts: ClientOptions) {
    const { origin, prefix } = splitBase(opts.baseUrl);
    this.prefix = prefix;
    this.path = `${prefix}${opts.endpoint === "chat" ? "/v1/chat/completions" : "/v1/completions"}`;
    this.pool = new Pool(origin, {
      connections: opts.connections,
      pipelining: 1,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      keepAliveTimeout: 60_000,
    });
    this.baseHeaders = { "content-type": "application/json", ...opts.extraHeaders };
    if (opts.apiKey) this.baseHeaders.authorization = `Bearer ${opts.apiKey}`;
  }

  url(path: string): string {
    return `${splitBase(this.opts.baseUrl).origin}${this.prefix}${path}`;
  }

  body(req: OneRequest): string {
    const b: Record<string, unknown> = {
      model: this.opts.model,
      max_tokens: req.maxTokens,
      stream: true,
      stream_options: { include_usage: true },
      ...this.opts.extraBody,
    };
    if (this.opts.endpoint === "chat") b.messages = req.messages;
    else b.prompt = req.prompt;
    return JSON.stringify(b);
  }

  async send(req: OneRequest, signal?: AbortSignal): Promise<Sent> {
    const headers = req.sessionHeader
      ? { ...this.baseHeaders, "x-session-id": req.sessionId, "x-user-id": req.sessionId }
      : this.baseHeaders;
    const body = this.body(req);
    const chat = this.opts.endpoint === "chat";
    const rec: RequestRecord = {
      index: req.index,
      sessionId: req.sessionId,
      round: req.round,
      start: 0,
      ok: false,
      ttft: NaN,
      itl: [],
      e2el: NaN,
      promptTokens: req.intendedPromptTokens,
      outputTokens: 0,
      usageReported: false,
      httpStatus: 0,
      errorKind: null,
      error: "",
    };
    const pieces: string[] = [];
    let chunks = 0;
    let last = 0;
    /** when the first chunk with choices came, content or not (vllm bench's first token) */
    let firstChoices = NaN;
    let streamError: string | null = null;
    const t = performance.now();
    rec.start = t - this.t0;
    // One timestamp per network read, shared by the events in it (as vllm bench does).
    let now = t;
    const onEvent = (data: string) => {
      if (data === DONE_DATA) return;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(data) as Record<string, unknown>;
      } catch {
        streamError = `unparseable SSE data: ${data.slice(0, 120)}`;
        return;
      }
      if (msg.error) {
        const e = msg.error as { message?: string } | string;
        streamError = typeof e === "string" ? e : (e.message ?? JSON.stringify(e));
        return;
      }
      const usage = msg.usage as { prompt_tokens?: number; completion_tokens?: number } | null | undefined;
      if (usage && typeof usage.completion_tokens === "number") {
        rec.outputTokens = usage.completion_tokens;
        if (typeof usage.prompt_tokens === "number") rec.promptTokens = usage.prompt_tokens;
        rec.usageReported = true;
        engineTiming(rec, msg.metrics);
      }
      const choices = msg.choices as Record<string, unknown>[] | undefined;
      const c = choices?.[0];
      if (!c) return;
      if (Number.isNaN(firstChoices)) firstChoices = now;
      const piece = chat
        ? ((c.delta as { content?: string | null } | undefined)?.content ?? "")
        : ((c.text as string | undefined) ?? "");
      // A chunk counts as output when it carries text. Chat servers send a role-only first chunk
      // (content ""), which vllm bench counts as the first token; we wait for real content so that
      // a server sending the role early cannot flatter TTFT, and no zero-length ITL gets recorded.
      if (piece === "") return;
      if (chunks === 0) rec.ttft = now - t;
      else rec.itl.push(now - last);
      last = now;
      chunks++;
      if (req.keepText) pieces.push(piece);
    };
    try {
      const res = await this.pool.request({
        path: this.path,
        method: "POST",
        headers,
        body,
        signal,
      });
      rec.httpStatus = res.statusCode;
      if (res.statusCode >= 400) {
        const text = await res.body.text();
        rec.errorKind = res.statusCode >= 500 ? "http_5xx" : "http_4xx";
        rec.error = `HTTP ${res.statusCode}: ${text.slice(0, 300)}`;
        rec.e2el = performance.now() - t;
        return { record: rec, text: "" };
      }
      const parser = new SseParser();
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        now = performance.now();
        parser.push(chunk, onEvent);
      }
      now = performance.now();
      parser.end(onEvent);
      rec.e2el = now - t;
    } catch (err) {
      rec.e2el = performance.now() - t;
      rec.errorKind = classify(err);
      rec.error = (err as Error).message ?? String(err);
      return { record: rec, text: "" };
    }
    if (!rec.usageReported) rec.outputTokens = chunks;
    if (streamError !== null) {
      rec.errorKind = "stream_error";
      rec.error = streamError;
    } else if (Number.isNaN(firstChoices)) {
      rec.errorKind = "no_output";
      rec.error = "the stream carried no chunk with choices";
    } else {
      // Success as vllm bench defines it: any chunk with choices. A stream that ended on EOS at its
      // first token has no text (the EOS is not detokenized); its TTFT is that first chunk's time.
      rec.ok = true;
      if (chunks === 0) rec.ttft = firstChoices - t;
    }
    return { record: rec, text: req.keepText ? pieces.join("") : "" };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
