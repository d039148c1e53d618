// The data plane: one client request → attempts on engines until one answers. The original request
// bytes go upstream untouched; response bytes are relayed chunk by chunk as they arrive. Failover is
// allowed only while nothing from an engine has reached the client.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { decide, type Policy, type RequestView } from "../routing/index.js";
import { HttpError, errorBody, sendError } from "../http/errors.js";
import type { AdmissionQueue, RetryBudget } from "./admission.js";
import type { RouterConfig } from "./config.js";
import type { RouterMetrics } from "./metrics.js";
import { discard, type Engine, type PendingAttempt, type Registry } from "./registry.js";
import { logger } from "../obs/log.js";

const log = logger("router.proxy");

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "host",
  "content-length",
  "expect",
]);

const RETRIABLE_STATUS = new Set([502, 503, 504]);
const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ETIMEDOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
]);

const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
};
const KEEPALIVE_BYTES = Buffer.from(": keep-alive\n\n");
const DONE_BYTES = Buffer.from("data: [DONE]\n\n");

export interface ProxyDeps {
  registry: Registry;
  metrics: RouterMetrics;
  queue: AdmissionQueue;
  budget: RetryBudget;
  config: () => RouterConfig;
  policy: () => Policy;
}

/** Everything the data plane knows about one client request. */
export interface ProxyRequest {
  path: string;
  model: string;
  stream: boolean;
  sessionKey: string | undefined;
  /** exact bytes to send upstream, or a one-shot stream (multipart) that cannot be replayed */
  body: Buffer | Readable;
  /** for cache-aware policies later */
  parsed?: Record<string, unknown> | undefined;
}

let seq = 0;

/** What one attempt ended as. */
type Outcome =
  | { kind: "done" }
  | { kind: "client-gone" }
  | {
      kind: "retry";
      reason: string;
      status: number;
      body: Buffer | undefined;
      headers: Record<string, string>;
    };

class RequestContext {
  readonly started = performance.now();
  readonly abort = new AbortController();
  readonly exclude = new Set<string>();
  readonly view: RequestView;
  readonly requestId: string;
  /** bytes from an engine (not our keep-alives) have reached the client: no more failover */
  relayed = false;
  clientGone = false;
  totalTimedOut = false;
  engineUrl = "none";
  status = 0;
  keepAlive: NodeJS.Timeout | undefined;
  total: NodeJS.Timeout | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly pr: ProxyRequest,
  ) {
    this.requestId = (req.headers["x-request-id"] as string | undefined) || randomUUID();
    this.view = {
      model: pr.model,
      seq: seq++ & 0x3fffffff,
      sessionKey: pr.sessionKey,
      prompt: pr.parsed?.prompt,
      messages: pr.parsed?.messages,
      exclude: this.exclude,
    };
  }
}

export class Proxy {
  constructor(private readonly d: ProxyDeps) {}

  /** Builds the upstream headers once per request: the client's, minus hop-by-hop, plus ours. */
  private upstreamHeaders(h: IncomingHttpHeaders, requestId: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name in h) {
      if (HOP_BY_HOP.has(name)) continue;
      const v = h[name];
      if (v === undefined) continue;
      out[name] = Array.isArray(v) ? v.join(", ") : v;
    }
    out["x-request-id"] = requestId;
    return out;
  }

  async handle(req: IncomingMessage, res: ServerResponse, pr: ProxyRequest): Promise<void> {
    const cfg = this.d.config();
    const ctx = new RequestContext(req, res, pr);
    const metrics = this.d.metrics;
    metrics.inFlight.inc();
    this.d.budget.onRequest();
    const onClose = () => {
      if (!res.writableFinished) {
        ctx.clientGone = true;
        ctx.abort.abort();
      }
    };
    res.once("close", onClose);
    ctx.total = setTimeout(() => {
      ctx.totalTimedOut = true;
      ctx.abort.abort();
    }, cfg.timeouts.total);
    if (pr.stream && cfg.timeouts.keepAlive > 0) {
      ctx.keepAlive = setInterval(() => this.sendKeepAlive(ctx), cfg.timeouts.keepAlive);
    }
    try {
      await this.run(ctx, cfg);
    } catch (err) {
      if (!ctx.clientGone) {
        const e =
          err instanceof HttpError ? err : new HttpError(500, `router error: ${(err as Error).message}`);
        if (!(err instanceof HttpError)) log.error({ err, requestId: ctx.requestId }, "proxy failure");
        this.fail(ctx, e);
      }
    } finally {
      clearTimeout(ctx.total);
      clearInterval(ctx.keepAlive);
      res.off("close", onClose);
      metrics.inFlight.dec();
      const status = ctx.clientGone ? 499 : ctx.status || res.statusCode;
      metrics.requests.inc({
        model: pr.model,
        engine: ctx.engineUrl,
        status: String(status),
        policy: this.d.policy().name,
      });
      metrics.forModel(pr.model).e2e.observe((performance.now() - ctx.started) / 1000);
    }
  }

  /** Answers with an error: a JSON error before anything was sent, an SSE error event after. */
  private fail(ctx: RequestContext, e: HttpError): void {
    const res = ctx.res;
    ctx.status = e.status;
    if (!res.headersSent) {
      res.setHeader("x-request-id", ctx.requestId);
      sendError(res, e);
    } else if (ctx.pr.stream && !res.writableEnded) {
      this.endStreamWithError(res, e.status, e.message);
    } else res.destroy();
  }

  private endStreamWithError(res: ServerResponse, status: number, message: string): void {
    if (res.writableEnded || res.destroyed) return;
    res.write(`data: ${errorBody(status, message)}\n\n`);
    res.end(DONE_BYTES);
  }

  private sendKeepAlive(ctx: RequestContext): void {
    const res = ctx.res;
    if (ctx.relayed || res.writableEnded || res.destroyed) {
      clearInterval(ctx.keepAlive);
      return;
    }
    if (!res.headersSent) {
      // Committing to 200 now is safe: an engine failure later becomes an SSE error event.
      res.writeHead(200, { ...SSE_HEADERS, "x-request-id": ctx.requestId });
      ctx.status = 200;
    }
    res.write(KEEPALIVE_BYTES);
  }

  /** Picks an engine and claims a slot on it; queues when every candidate is at its cap. */
  private async acquire(ctx: RequestContext): Promise<Engine> {
    const reg = this.d.registry;
    let picked: Engine | undefined;
    const tryAcquire = (): boolean => {
      const dec = decide(this.d.policy(), ctx.view, { engines: reg.snapshot() });
      if (dec.kind !== "picked") return false;
      const e = reg.engines.get(dec.engine.id);
      if (!e) return false;
      e.view.inFlight++;
      picked = e;
      return true;
    };
    const dec = decide(this.d.policy(), ctx.view, { engines: reg.snapshot() });
    if (dec.kind === "picked") {
      const e = reg.engines.get(dec.engine.id)!;
      e.view.inFlight++;
      return e;
    }
    if (dec.kind === "unknown-model") {
      throw new HttpError(404, `The model \`${ctx.pr.model}\` does not exist.`, "model");
    }
    if (dec.kind === "unavailable") {
      throw new HttpError(
        503,
        `no ready engine serves the model \`${ctx.pr.model}\` right now; retry later`,
        null,
        { "retry-after": "1" },
      );
    }
    // saturated: wait in the bounded queue for room
    await this.d.queue.wait(tryAcquire, ctx.abort.signal);
    return picked!;
  }

  private releaseSlot(e: Engine): void {
    e.view.inFlight--;
    this.d.registry.maybeFinishDrain(e);
    this.d.queue.kick(1);
  }

  private async run(ctx: RequestContext, cfg: RouterConfig): Promise<void> {
    const headers = this.upstreamHeaders(ctx.req.headers, ctx.requestId);
    const engineKeyConfigured = cfg.engineApiKey !== undefined;
    const replayable = Buffer.isBuffer(ctx.pr.body);
    const maxAttempts = replayable ? cfg.retry.maxAttempts : 1;
    let last: Extract<Outcome, { kind: "retry" }> | undefined;
    for (let attempt = 1; ; attempt++) {
      let engine: Engine;
      try {
        engine = await this.acquire(ctx);
      } catch (err) {
        if (ctx.clientGone) return;
        if (ctx.totalTimedOut) throw new HttpError(504, "request exceeded the router's total timeout");
        // every engine tried already: report what the last one said rather than "unavailable"
        if (last && err instanceof HttpError && err.status === 503) return this.relayFailure(ctx, last);
        if (err instanceof HttpError && err.status === 429) this.d.metrics.rejected.inc({ reason: "queue" });
        throw err;
      }
      ctx.engineUrl = engine.url;
      const key = engine.spec.apiKey ?? cfg.engineApiKey;
      if (key) headers.authorization = `Bearer ${key}`;
      else if (engineKeyConfigured) delete headers.authorization;
      let outcome: Outcome;
      try {
        outcome = await this.attempt(ctx, engine, headers, cfg);
      } finally {
        this.releaseSlot(engine);
      }
      if (outcome.kind !== "retry") return;
      last = outcome;
      ctx.exclude.add(engine.url);
      if (ctx.totalTimedOut) throw new HttpError(504, "request exceeded the router's total timeout");
      if (attempt >= maxAttempts) return this.relayFailure(ctx, last);
      if (!this.d.budget.tryRetry()) {
        this.d.metrics.rejected.inc({ reason: "retry_budget" });
        return this.relayFailure(ctx, last);
      }
      this.d.metrics.retries.inc({ model: ctx.pr.model, reason: outcome.reason });
    }
  }

  /** No engine could answer: pass on the last engine's 5xx answer, or say what went wrong. */
  private relayFailure(ctx: RequestContext, last: Extract<Outcome, { kind: "retry" }>): void {
    const res = ctx.res;
    if (last.body && !res.headersSent) {
      ctx.status = last.status;
      res.writeHead(last.status, {
        ...last.headers,
        "content-length": String(last.body.length),
        "x-request-id": ctx.requestId,
      });
      res.end(last.body);
      return;
    }
    const status = last.status || 502;
    this.fail(ctx, new HttpError(status, `upstream engine failed: ${last.reason}`));
  }

  /** One try on one engine. Resolves how it ended; never throws for upstream trouble. */
  private async attempt(
    ctx: RequestContext,
    engine: Engine,
    headers: Record<string, string>,
    cfg: RouterConfig,
  ): Promise<Outcome> {
    const reg = this.d.registry;
    const ac = new AbortController();
    let failover: string | undefined;
    let ttfbTimedOut = false;
    let idleTimedOut = false;
    const onParentAbort = () => ac.abort();
    ctx.abort.signal.addEventListener("abort", onParentAbort, { once: true });
    const pending: PendingAttempt = {
      abortForFailover(reason: string) {
        failover = reason;
        ac.abort();
      },
    };
    engine.pending.add(pending);
    const ttfb = setTimeout(() => {
      ttfbTimedOut = true;
      ac.abort();
    }, cfg.timeouts.firstByte);
    let idle: NodeJS.Timeout | undefined;
    const retry = (
      reason: string,
      status: number,
      body?: Buffer,
      h: Record<string, string> = {},
    ): Outcome => ({
      kind: "retry",
      reason,
      status,
      body,
      headers: h,
    });
    const interrupted = (): Outcome | undefined => {
      if (ctx.clientGone) return { kind: "client-gone" };
      if (ctx.totalTimedOut) return retry("total timeout", 504);
      if (failover) return retry("ejected", 503);
      if (ttfbTimedOut) return retry("first-byte timeout", 504);
      return undefined;
    };
    const cleanup = () => {
      clearTimeout(ttfb);
      clearTimeout(idle);
      engine.pending.delete(pending);
      ctx.abort.signal.removeEventListener("abort", onParentAbort);
    };
    try {
      let up;
      try {
        up = await engine.pool.request({
          path: ctx.pr.path,
          method: "POST",
          headers,
          body: ctx.pr.body,
          signal: ac.signal,
        });
      } catch (err) {
        const why = interrupted();
        if (why) return why;
        const code = (err as { code?: string }).code ?? "";
        const msg = `${code || "error"}: ${(err as Error).message}`;
        if (CONNECT_ERRORS.has(code)) reg.reportFailure(engine, msg);
        return retry(`transport ${code || "error"}`, 502);
      }
      const status = up.statusCode;
      if (RETRIABLE_STATUS.has(status) && !ctx.relayed) {
        // keep the answer (bounded) in case no other engine does better
        const body = await readSmall(up.body, 64 * 1024).catch(() => undefined);
        reg.reportFailure(engine, `answered ${status}`);
        return interrupted() ?? retry(`status ${status}`, status, body, responseHeaders(up.headers));
      }
      if (status >= 500) reg.reportFailure(engine, `answered ${status}`);
      else reg.reportSuccess(engine);

      const res = ctx.res;
      const isSse = String(up.headers["content-type"] ?? "").includes("text/event-stream");
      const m = this.d.metrics.forModel(ctx.pr.model);
      // Committed to SSE by a keep-alive already: a non-200 answer must become an SSE error event.
      if (res.headersSent && status !== 200) {
        const body = await readSmall(up.body, 64 * 1024).catch(() => undefined);
        ctx.relayed = true;
        this.endStreamWithError(res, status, extractMessage(body) ?? `engine answered ${status}`);
        return { kind: "done" };
      }
      let lastChunk = 0;
      let held: Buffer | undefined;
      const onIdle = () => {
        idleTimedOut = true;
        ac.abort();
      };
      try {
        for await (const chunk of up.body as AsyncIterable<Buffer>) {
          const now = performance.now();
          if (!ctx.relayed) {
            ctx.relayed = true;
            clearTimeout(ttfb);
            engine.pending.delete(pending);
            if (!res.headersSent) {
              const h = responseHeaders(up.headers);
              h["x-request-id"] = ctx.requestId;
              res.writeHead(status, h);
            }
            ctx.status = status;
            m.ttft.observe((now - ctx.started) / 1000);
          } else m.itl.observe((now - lastChunk) / 1000);
          lastChunk = now;
          if (idle) idle.refresh();
          else idle = setTimeout(onIdle, cfg.timeouts.idle);
          if (!isSse) {
            // Non-streamed bodies: hold one chunk back so a one-chunk answer leaves in a single
            // write with its headers and terminator (res.end), instead of three.
            if (held !== undefined && !res.write(held)) {
              held = chunk;
              await drained(res);
              continue;
            }
            held = chunk;
          } else if (!res.write(chunk)) await drained(res);
        }
      } catch (err) {
        const why = interrupted();
        if (why && why.kind === "client-gone") return why;
        if (!ctx.relayed) {
          if (why) return why;
          const code = (err as { code?: string }).code ?? "";
          if (CONNECT_ERRORS.has(code)) reg.reportFailure(engine, `${code}: ${(err as Error).message}`);
          return retry(`transport ${code || "error"} before first byte`, 502);
        }
        const reason = idleTimedOut
          ? `engine sent nothing for ${cfg.timeouts.idle} ms`
          : ctx.totalTimedOut
            ? "request exceeded the router's total timeout"
            : `engine connection lost mid-response: ${(err as Error).message}`;
        if (!idleTimedOut && !ctx.totalTimedOut) reg.reportFailure(engine, reason);
        if (isSse || ctx.pr.stream)
          this.endStreamWithError(res, idleTimedOut || ctx.totalTimedOut ? 504 : 502, reason);
        else res.destroy();
        ctx.status = 502;
        return { kind: "done" };
      }
      if (!ctx.relayed) {
        // an empty body: headers only
        ctx.relayed = true;
        if (!res.headersSent) {
          const h = responseHeaders(up.headers);
          h["x-request-id"] = ctx.requestId;
          res.writeHead(status, h);
        }
        ctx.status = status;
      }
      if (held !== undefined) res.end(held);
      else res.end();
      return { kind: "done" };
    } finally {
      cleanup();
    }
  }
}

/** The engine's response headers minus hop-by-hop ones; Content-Length kept (the body is relayed whole). */
function responseHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in h) {
    if (HOP_BY_HOP.has(name) && name !== "content-length") continue;
    const v = h[name];
    if (v === undefined) continue;
    out[name] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

async function readSmall(body: Parameters<typeof discard>[0], max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    if (size + c.length > max) {
      discard(body);
      break;
    }
    chunks.push(c);
    size += c.length;
  }
  return Buffer.concat(chunks, size);
}

function extractMessage(body: Buffer | undefined): string | undefined {
  if (!body) return undefined;
  try {
    const doc = JSON.parse(body.toString("utf8")) as {
      error?: { message?: unknown } | string;
      message?: unknown;
    };
    if (typeof doc.error === "object" && typeof doc.error?.message === "string") return doc.error.message;
    if (typeof doc.message === "string") return doc.message;
    if (typeof doc.error === "string") return doc.error;
  } catch {
    // not JSON
  }
  return body.toString("utf8").slice(0, 500);
}
