// The data plane: one client request → attempts on engines until one answers. The original request
// bytes go upstream untouched; response bytes are relayed chunk by chunk as they arrive. Failover is
// allowed only while nothing from an engine has reached the client.
//
// Hot-path shape (see docs/router.md, "Performance"): one undici `dispatch` per attempt with this
// file's handler object (no Readable body, no async iterator, no AbortController or listeners),
// every timeout on one shared coarse DeadlineQueue, headers as flat arrays built once per request,
// metrics through pre-bound children.
import type { LinkedList } from "../collections/linked-list.js";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import {
  decide,
  noteDone,
  noteFirstToken,
  noteSent,
  retryAfterSeconds,
  type Decision,
  type Policy,
  type RequestView,
} from "../routing/index.js";
import { HttpError, errorBody, sendError } from "../http/errors.js";
import type { AdmissionQueue, QueueFlow, RetryBudget } from "./admission.js";
import type { TenantRequest } from "../tenancy/request.js";
import type { RouterConfig } from "./config.js";
import { DeadlineQueue, OwnedDeadline, type DeadlineOwner } from "./deadlines.js";
import type { ModelSeries, RouterMetrics } from "./metrics.js";
import type { Upstream, PendingAttempt, Registry } from "./registry.js";
import type { Disaggregation } from "./disagg.js";
import { RequestTrace } from "./request-trace.js";
import type { Tracer } from "../obs/tracing.js";
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
  "http2-settings",
  "host",
  "content-length",
  "expect",
]);
/** response headers not relayed: hop-by-hop ones (Content-Length is kept: bodies go whole) and ours */
const RESPONSE_SKIP = new Set([...HOP_BY_HOP, "x-request-id"]);
RESPONSE_SKIP.delete("content-length");

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
/** an engine's failure answer kept for relaying when no other engine does better */
const MAX_FAILURE_BODY = 64 * 1024;
const NO_EXCLUDE: ReadonlySet<string> = new Set();

export interface ProxyDeps {
  registry: Registry;
  metrics: RouterMetrics;
  queue: AdmissionQueue;
  budget: RetryBudget;
  config: () => RouterConfig;
  policy: () => Policy;
  /** present only when tracing is configured: spans per request and attempt, traceparent upstream */
  tracer?: Tracer | undefined;
  /** disaggregated prefill/decode: runs the prefill step before the attempts loop (src/router/disagg.ts) */
  disagg?: Disaggregation | undefined;
  /** told of every engine picked for an attempt (cache-aware routing: the debug header) */
  onRouted?: (req: IncomingMessage, res: ServerResponse, view: RequestView, engineUrl: string) => void;
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
  /** tenancy on: the admitted tenant's bookkeeping (usage from the relayed body, slot release) */
  tenant?: TenantRequest | undefined;
  /** the fair admission queue's flow (tenant, weight, priority); anonymous when absent */
  flow?: QueueFlow | undefined;
  /** the client's TTFT SLO in ms (x-slo-ttft-ms), for the predictive policy's admission */
  sloTtftMs?: number | undefined;
}

/** An X-Request-Id we echo must be a safe header value (no response splitting, no odd bytes). */
const SAFE_REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

let seq = 0;

/**
 * Request ids the router makes up when the client sent none, UUID-shaped (vLLM builds its response
 * ids from X-Request-Id): a random per-process prefix (the version and variant fields included) and
 * a 48-bit counter in the last group. Unique across replicas and restarts by the prefix's random
 * bits, at a fraction of randomUUID's per-request cost (it showed up in the allocation profile).
 */
const ID_PREFIX = randomUUID().slice(0, 24);
let idCounter = 0;
function newRequestId(): string {
  idCounter = (idCounter + 1) % 0x1000000000000;
  return ID_PREFIX + idCounter.toString(16).padStart(12, "0");
}

type RetryOutcome = {
  kind: "retry";
  reason: string;
  status: number;
  body: Buffer | undefined;
  /** the failing engine's response headers, flat [name, value, ...] */
  headers: string[];
};
/** What one attempt ended as. */
type Outcome = { kind: "done" } | { kind: "client-gone" } | RetryOutcome;
const DONE: Outcome = { kind: "done" };
const CLIENT_GONE: Outcome = { kind: "client-gone" };

function retry(reason: string, status: number, body?: Buffer, headers: string[] = []): RetryOutcome {
  return { kind: "retry", reason, status, body, headers };
}

const enum CtxDeadline {
  Total,
  KeepAlive,
}
const enum AttemptDeadline {
  FirstByte,
  Idle,
}

/** The request context of a response, for the one shared 'close' listener (no closure per request). */
const CONTEXT = Symbol("switchyard.requestContext");
type WithContext = ServerResponse & { [CONTEXT]?: RequestContext };

function onResponseClose(this: WithContext): void {
  const ctx = this[CONTEXT];
  if (ctx && !this.writableFinished) {
    ctx.clientGone = true;
    ctx.cancel();
  }
}

class RequestContext implements DeadlineOwner<CtxDeadline> {
  readonly started = performance.now();
  readonly view: RequestView;
  readonly requestId: string;
  /** bytes from an engine (not our keep-alives) have reached the client: no more failover */
  relayed = false;
  clientGone = false;
  totalTimedOut = false;
  engineUrl = "none";
  status = 0;
  /** the attempt in progress, which client disconnects and the total timeout cut */
  current: Attempt | undefined;
  /** only for waiting in the admission queue (rare), so created on demand */
  private queueAbort: AbortController | undefined;
  readonly total = new OwnedDeadline(this, CtxDeadline.Total);
  readonly keepAlive = new OwnedDeadline(this, CtxDeadline.KeepAlive);
  readonly series: ModelSeries;
  /** spans of this request; undefined with tracing off */
  readonly trace: RequestTrace | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly pr: ProxyRequest,
    private readonly proxy: Proxy,
    metrics: RouterMetrics,
    tracer: Tracer | undefined,
  ) {
    const rid = req.headers["x-request-id"];
    this.requestId = typeof rid === "string" && SAFE_REQUEST_ID.test(rid) ? rid : newRequestId();
    this.view = {
      model: pr.model,
      seq: seq++ & 0x3fffffff,
      sessionKey: pr.sessionKey,
      prompt: pr.parsed?.prompt,
      messages: pr.parsed?.messages,
      body: pr.parsed,
      exclude: NO_EXCLUDE,
      sloTtftMs: pr.sloTtftMs,
    };
    this.series = metrics.forModel(pr.model);
    this.trace = tracer ? new RequestTrace(tracer, req, pr.path, pr.model, pr.stream, pr.parsed) : undefined;
  }

  onDeadline(kind: CtxDeadline): void {
    if (kind === CtxDeadline.KeepAlive) return this.proxy.sendKeepAlive(this);
    this.totalTimedOut = true;
    this.cancel();
  }

  cancel(): void {
    this.current?.cancel();
    this.queueAbort?.abort();
  }

  queueSignal(): AbortSignal {
    this.queueAbort ??= new AbortController();
    if (this.clientGone || this.totalTimedOut) this.queueAbort.abort();
    return this.queueAbort.signal;
  }

  exclude(url: string): void {
    if (this.view.exclude === NO_EXCLUDE) this.view.exclude = new Set([url]);
    else (this.view.exclude as Set<string>).add(url);
  }
}

export class Proxy {
  /** every per-request timeout of this router, on one coarse timer */
  readonly deadlines = new DeadlineQueue();

  constructor(private readonly d: ProxyDeps) {}

  /** The client's headers, minus hop-by-hop ones and Authorization (decided per engine), plus ours. */
  private upstreamHeaders(h: IncomingHttpHeaders, requestId: string, traced: boolean): string[] {
    const out: string[] = [];
    for (const name in h) {
      if (HOP_BY_HOP.has(name) || name === "x-request-id" || name === "authorization") continue;
      // traced: the engine gets our attempt span as its parent instead of the client's span
      if (traced && name === "traceparent") continue;
      const v = h[name];
      if (v === undefined) continue;
      out.push(name, Array.isArray(v) ? v.join(", ") : v);
    }
    out.push("x-request-id", requestId);
    return out;
  }

  /** Not async: hands back the attempts loop's promise itself (one async frame per request, not two). */
  handle(req: IncomingMessage, res: ServerResponse, pr: ProxyRequest): Promise<void> {
    const cfg = this.d.config();
    const metrics = this.d.metrics;
    const ctx = new RequestContext(req, res, pr, this, metrics, this.d.tracer);
    metrics.inFlight++;
    this.d.budget.onRequest();
    (res as WithContext)[CONTEXT] = ctx;
    res.on("close", onResponseClose);
    const now = ctx.started;
    this.deadlines.arm(ctx.total, cfg.timeouts.total, now);
    if (pr.stream && cfg.timeouts.keepAlive > 0)
      this.deadlines.arm(ctx.keepAlive, cfg.timeouts.keepAlive, now);
    return this.run(ctx, cfg);
  }

  /** The request's end, whatever happened: timers off, listener off, counted. */
  private finished(ctx: RequestContext): void {
    const res = ctx.res;
    const pr = ctx.pr;
    const metrics = this.d.metrics;
    this.deadlines.disarm(ctx.total);
    this.deadlines.disarm(ctx.keepAlive);
    res.off("close", onResponseClose);
    (res as WithContext)[CONTEXT] = undefined;
    metrics.inFlight--;
    const status = ctx.clientGone ? 499 : ctx.status || res.statusCode;
    metrics.countRequest(pr.model, ctx.engineUrl, status, this.d.policy().name);
    ctx.series.e2e.observe((performance.now() - ctx.started) / 1000);
    ctx.trace?.end(status, ctx.engineUrl);
    pr.tenant?.finish(status);
  }

  /** Answers with an error: a JSON error before anything was sent, an SSE error event after. */
  fail(ctx: RequestContext, e: HttpError): void {
    const res = ctx.res;
    ctx.status = e.status;
    if (!res.headersSent) {
      res.setHeader("x-request-id", ctx.requestId);
      sendError(res, e);
    } else if (ctx.pr.stream && !res.writableEnded) {
      endStreamWithError(res, e.status, e.message);
    } else res.destroy();
  }

  sendKeepAlive(ctx: RequestContext): void {
    const res = ctx.res;
    if (ctx.relayed || res.writableEnded || res.destroyed) return;
    if (!res.headersSent) {
      // Committing to 200 now is safe: an engine failure later becomes an SSE error event.
      res.writeHead(200, { ...SSE_HEADERS, "x-request-id": ctx.requestId });
      ctx.status = 200;
    }
    res.write(KEEPALIVE_BYTES);
    this.deadlines.arm(ctx.keepAlive, this.d.config().timeouts.keepAlive);
  }

  /**
   * Picks an engine and claims a slot on it. Synchronous when an engine has room (the common case:
   * no promise, no microtask); a promise only when every candidate is at its cap and it queues.
   */
  private acquire(ctx: RequestContext): Upstream | Promise<Upstream> {
    const reg = this.d.registry;
    const now = performance.now();
    const dec = decide(this.d.policy(), ctx.view, { engines: reg.snapshot(), now });
    if (dec.kind === "picked") {
      const e = reg.engines.get(dec.engine.id)!;
      noteSent(e.view, now);
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
    if (dec.kind === "over-slo" && this.d.config().slo.onMiss === "reject") throw overSlo(dec);
    return this.queueForSlot(ctx);
  }

  /** Saturated (or over its SLO, queueing): waits in the bounded queue for room. */
  private async queueForSlot(ctx: RequestContext): Promise<Upstream> {
    const reg = this.d.registry;
    let picked: Upstream | undefined;
    const tryAcquire = (): boolean => {
      const now = performance.now();
      const dec = decide(this.d.policy(), ctx.view, { engines: reg.snapshot(), now });
      if (dec.kind !== "picked") return false;
      const e = reg.engines.get(dec.engine.id);
      if (!e) return false;
      noteSent(e.view, now);
      picked = e;
      return true;
    };
    await this.d.queue.wait(tryAcquire, ctx.queueSignal(), ctx.pr.flow);
    return picked!;
  }

  /** an attempt's first byte reached the client: routing counts it answered, the policy calibrates */
  firstToken(ctx: RequestContext, e: Upstream, now: number): void {
    noteFirstToken(e.view, now);
    this.d.policy().onFirstToken?.(ctx.view, e.view, now - ctx.started);
  }

  /** `answered`: the attempt's first byte reached the client (and noteFirstToken was told then) */
  private releaseSlot(e: Upstream, answered = false): void {
    noteDone(e.view, answered, performance.now());
    this.d.registry.maybeFinishDrain(e);
    this.d.queue.kick(1);
  }

  private async run(ctx: RequestContext, cfg: RouterConfig): Promise<void> {
    try {
      const headers = this.upstreamHeaders(ctx.req.headers, ctx.requestId, ctx.trace !== undefined);
      const baseHeaders = headers.length;
      const clientAuth = ctx.req.headers.authorization;
      const engineKeyConfigured = cfg.engineApiKey !== undefined;
      // P/D: the prefill step runs first; the loop below then sends the decode step (body and
      // candidates rewritten) like any request, so its stream is relayed as it arrives
      if (this.d.disagg?.applies(ctx.pr)) {
        const finished = await this.d.disagg.prefill(ctx, {
          headers,
          acquire: () => this.acquire(ctx),
          release: (e) => this.releaseSlot(e),
          fail: (e) => this.fail(ctx, e),
        });
        if (finished) return;
      }
      const replayable = Buffer.isBuffer(ctx.pr.body);
      const maxAttempts = replayable ? cfg.retry.maxAttempts : 1;
      let last: RetryOutcome | undefined;
      for (let attempt = 1; ; attempt++) {
        let engine: Upstream;
        try {
          const got = this.acquire(ctx);
          engine = got instanceof Promise ? await got : got;
        } catch (err) {
          if (ctx.clientGone) return;
          if (ctx.totalTimedOut) throw new HttpError(504, "request exceeded the router's total timeout");
          // every engine tried already: report what the last one said rather than "unavailable"
          if (last && err instanceof HttpError && err.status === 503) return this.relayFailure(ctx, last);
          if (err instanceof HttpError && err.status === 429)
            this.d.metrics.rejected.inc({ reason: err instanceof OverSloError ? "slo" : "queue" });
          throw err;
        }
        ctx.engineUrl = engine.url;
        this.d.onRouted?.(ctx.req, ctx.res, ctx.view, engine.url);
        headers.length = baseHeaders;
        const key = engine.spec.apiKey ?? cfg.engineApiKey;
        if (key) headers.push("authorization", `Bearer ${key}`);
        // with tenancy on the client's key is the router's credential: it never goes upstream
        else if (!engineKeyConfigured && clientAuth && !ctx.pr.tenant)
          headers.push("authorization", clientAuth);
        if (ctx.trace) headers.push("traceparent", ctx.trace.attempt(engine.url, attempt).traceparent());
        let outcome: Outcome;
        const att = new Attempt(this, ctx, engine, cfg);
        try {
          outcome = await att.start(headers);
        } finally {
          this.releaseSlot(engine, att.answered);
        }
        if (outcome.kind !== "retry") return;
        ctx.trace?.attemptEnded(outcome.status, outcome.reason);
        last = outcome;
        ctx.exclude(engine.url);
        if (ctx.totalTimedOut) throw new HttpError(504, "request exceeded the router's total timeout");
        if (attempt >= maxAttempts) return this.relayFailure(ctx, last);
        if (!this.d.budget.tryRetry()) {
          this.d.metrics.rejected.inc({ reason: "retry_budget" });
          return this.relayFailure(ctx, last);
        }
        this.d.metrics.retries.inc({ model: ctx.pr.model, reason: outcome.reason });
      }
    } catch (err) {
      if (!ctx.clientGone) {
        const e =
          err instanceof HttpError ? err : new HttpError(500, `router error: ${(err as Error).message}`);
        if (!(err instanceof HttpError)) log.error({ err, requestId: ctx.requestId }, "proxy failure");
        this.fail(ctx, e);
      }
    } finally {
      this.finished(ctx);
    }
  }

  /** No engine could answer: pass on the last engine's 5xx answer, or say what went wrong. */
  private relayFailure(ctx: RequestContext, last: RetryOutcome): void {
    const res = ctx.res;
    if (last.body && !res.headersSent) {
      ctx.status = last.status;
      const h: string[] = [];
      for (let i = 0; i < last.headers.length; i += 2) {
        if (last.headers[i]!.toLowerCase() !== "content-length")
          h.push(last.headers[i]!, last.headers[i + 1]!);
      }
      h.push("content-length", String(last.body.length), "x-request-id", ctx.requestId);
      res.writeHead(last.status, h);
      res.end(last.body);
      return;
    }
    const status = last.status || 502;
    this.fail(ctx, new HttpError(status, `upstream engine failed: ${last.reason}`));
  }

  get registry(): Registry {
    return this.d.registry;
  }
}

const enum Mode {
  /** waiting for the engine's response headers */
  Headers,
  /** relaying the body to the client */
  Relay,
  /** collecting a 502/503/504 answer in case no other engine does better */
  CollectRetry,
  /** collecting a non-200 answer that must become an SSE error event (keep-alives went out) */
  CollectSseError,
}

/**
 * One try on one engine, as an undici dispatch handler. `start` resolves how it ended and never
 * rejects for upstream trouble. Cancellation (client gone, total/first-byte/idle timeout, ejection)
 * settles the outcome at once and aborts the upstream request.
 */
class Attempt implements Dispatcher.DispatchHandler, PendingAttempt, DeadlineOwner<AttemptDeadline> {
  private mode = Mode.Headers;
  private done = false;
  private abortUpstream: ((err?: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private onDrain: (() => void) | undefined;
  private settle!: (o: Outcome) => void;
  private failover: string | undefined;
  private ttfbTimedOut = false;
  private idleTimedOut = false;
  private status = 0;
  private isSse = false;
  private headers: string[] = [];
  private held: Buffer | undefined;
  private collected: Buffer[] | undefined;
  private collectedSize = 0;
  private lastChunk = 0;
  private readonly ttfb = new OwnedDeadline(this, AttemptDeadline.FirstByte);
  private readonly idle = new OwnedDeadline(this, AttemptDeadline.Idle);
  /** its first byte reached the client (routing counts it as answered from then on) */
  answered = false;
  // links in the engine's pending list
  prev: PendingAttempt | null = null;
  next: PendingAttempt | null = null;
  list: LinkedList<PendingAttempt> | null = null;

  constructor(
    private readonly proxy: Proxy,
    private readonly ctx: RequestContext,
    private readonly engine: Upstream,
    private readonly cfg: RouterConfig,
  ) {}

  onDeadline(kind: AttemptDeadline): void {
    if (kind === AttemptDeadline.FirstByte) this.ttfbTimedOut = true;
    else this.idleTimedOut = true;
    this.cancel();
  }

  start(headers: string[]): Promise<Outcome> {
    const ctx = this.ctx;
    const p = new Promise<Outcome>((resolve) => (this.settle = resolve));
    if (ctx.clientGone || ctx.totalTimedOut) {
      this.finish(this.interrupted()!);
      return p;
    }
    ctx.current = this;
    this.engine.pending.push(this);
    this.proxy.deadlines.arm(this.ttfb, this.cfg.timeouts.firstByte);
    // undici serialises the headers synchronously, so the caller may reuse the array afterwards
    this.engine.pool.dispatch({ path: ctx.pr.path, method: "POST", headers, body: ctx.pr.body }, this);
    return p;
  }

  abortForFailover(reason: string): void {
    this.failover = reason;
    this.cancel();
  }

  cancel(): void {
    if (this.done) return;
    const err = new Error("attempt cancelled by the router");
    this.abortUpstream?.(err);
    // before the connection is handed over there is nothing to abort yet: onConnect does it
    if (!this.done) this.onError(err);
  }

  private interrupted(): Outcome | undefined {
    const ctx = this.ctx;
    if (ctx.clientGone) return CLIENT_GONE;
    if (ctx.totalTimedOut) return retry("total timeout", 504);
    if (this.failover) return retry("ejected", 503);
    if (this.ttfbTimedOut) return retry("first-byte timeout", 504);
    return undefined;
  }

  private finish(o: Outcome): void {
    this.done = true;
    const dl = this.proxy.deadlines;
    dl.disarm(this.ttfb);
    dl.disarm(this.idle);
    this.engine.pending.remove(this);
    if (this.ctx.current === this) this.ctx.current = undefined;
    if (this.onDrain) this.ctx.res.off("drain", this.onDrain);
    this.settle(o);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.done) abort(new Error("attempt cancelled by the router"));
    else this.abortUpstream = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.done) return false;
    if (status < 200) return true;
    this.status = status;
    this.resumeUpstream = resume;
    const h = this.headers;
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toString("latin1");
      const lower = name.toLowerCase();
      if (RESPONSE_SKIP.has(lower)) continue;
      const value = rawHeaders[i + 1]!.toString("latin1");
      if (lower === "content-type" && value.includes("text/event-stream")) this.isSse = true;
      h.push(name, value);
    }
    const reg = this.proxy.registry;
    const ctx = this.ctx;
    if (RETRIABLE_STATUS.has(status) && !ctx.relayed) {
      this.mode = Mode.CollectRetry;
      this.collected = [];
      return true;
    }
    if (status >= 500) reg.reportFailure(this.engine, `answered ${status}`);
    else reg.reportSuccess(this.engine);
    if (ctx.res.headersSent && status !== 200) {
      this.mode = Mode.CollectSseError;
      this.collected = [];
      return true;
    }
    this.mode = Mode.Relay;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false;
    if (this.mode !== Mode.Relay) {
      if (this.collected) {
        this.collectedSize += chunk.length;
        if (this.collectedSize > MAX_FAILURE_BODY) this.collected = undefined;
        else this.collected.push(chunk);
      }
      return true;
    }
    const ctx = this.ctx;
    const res = ctx.res;
    const now = performance.now();
    if (!ctx.relayed) {
      ctx.relayed = true;
      this.answered = true;
      this.proxy.firstToken(ctx, this.engine, now);
      this.proxy.deadlines.disarm(this.ttfb);
      this.engine.pending.remove(this);
      this.writeHead();
      ctx.series.ttft.observe((now - ctx.started) / 1000);
      ctx.trace?.firstByte((now - ctx.started) / 1000);
    } else ctx.series.itl.observe((now - this.lastChunk) / 1000);
    ctx.trace?.onBody(chunk, this.isSse);
    this.lastChunk = now;
    this.proxy.deadlines.arm(this.idle, this.cfg.timeouts.idle, now);
    if (ctx.pr.tenant) {
      chunk = ctx.pr.tenant.onBody(chunk, this.isSse);
      if (chunk.length === 0) return true;
    }
    let ok = true;
    if (!this.isSse) {
      // Non-streamed bodies: hold one chunk back so a one-chunk answer leaves in a single
      // write with its headers and terminator (res.end), instead of three.
      if (this.held !== undefined) ok = res.write(this.held);
      this.held = chunk;
    } else ok = res.write(chunk);
    if (ok) return true;
    this.onDrain ??= () => this.resumeUpstream?.();
    res.once("drain", this.onDrain);
    return false;
  }

  private writeHead(): void {
    const ctx = this.ctx;
    if (!ctx.res.headersSent) {
      this.headers.push("x-request-id", ctx.requestId);
      ctx.res.writeHead(this.status, this.headers);
    }
    ctx.status = this.status;
  }

  private collectedBody(): Buffer | undefined {
    return this.collected ? Buffer.concat(this.collected, this.collectedSize) : undefined;
  }

  onComplete(): void {
    if (this.done) return;
    const ctx = this.ctx;
    switch (this.mode) {
      case Mode.CollectRetry: {
        this.proxy.registry.reportFailure(this.engine, `answered ${this.status}`);
        const s = this.status;
        return this.finish(this.interrupted() ?? retry(`status ${s}`, s, this.collectedBody(), this.headers));
      }
      case Mode.CollectSseError:
        ctx.relayed = true;
        endStreamWithError(
          ctx.res,
          this.status,
          extractMessage(this.collectedBody()) ?? `engine answered ${this.status}`,
        );
        return this.finish(DONE);
      default:
        // an empty body: headers only
        if (!ctx.relayed) {
          ctx.relayed = true;
          this.writeHead();
        }
        if (ctx.pr.tenant) {
          const rest = ctx.pr.tenant.flush();
          if (rest.length > 0) ctx.res.write(rest);
        }
        if (this.held !== undefined) ctx.res.end(this.held);
        else ctx.res.end();
        this.held = undefined;
        return this.finish(DONE);
    }
  }

  onError(err: Error): void {
    if (this.done) return;
    const ctx = this.ctx;
    const reg = this.proxy.registry;
    const why = this.interrupted();
    const code = (err as { code?: string }).code ?? "";
    switch (this.mode) {
      case Mode.Headers:
        if (why) return this.finish(why);
        if (CONNECT_ERRORS.has(code)) reg.reportFailure(this.engine, `${code}: ${err.message}`);
        return this.finish(retry(`transport ${code || "error"}`, 502));
      case Mode.CollectRetry: {
        reg.reportFailure(this.engine, `answered ${this.status}`);
        const s = this.status;
        return this.finish(why ?? retry(`status ${s}`, s, undefined, this.headers));
      }
      case Mode.CollectSseError:
        if (why === CLIENT_GONE) return this.finish(why);
        ctx.relayed = true;
        endStreamWithError(ctx.res, this.status, `engine answered ${this.status}`);
        return this.finish(DONE);
    }
    // relaying
    if (why === CLIENT_GONE) return this.finish(why);
    if (!ctx.relayed) {
      if (why) return this.finish(why);
      if (CONNECT_ERRORS.has(code)) reg.reportFailure(this.engine, `${code}: ${err.message}`);
      return this.finish(retry(`transport ${code || "error"} before first byte`, 502));
    }
    const idle = this.idleTimedOut;
    const reason = idle
      ? `engine sent nothing for ${this.cfg.timeouts.idle} ms`
      : ctx.totalTimedOut
        ? "request exceeded the router's total timeout"
        : `engine connection lost mid-response: ${err.message}`;
    if (!idle && !ctx.totalTimedOut) reg.reportFailure(this.engine, reason);
    if (this.isSse || ctx.pr.stream)
      endStreamWithError(ctx.res, idle || ctx.totalTimedOut ? 504 : 502, reason);
    else ctx.res.destroy();
    ctx.status = 502;
    this.finish(DONE);
  }
}

/** 429 for a request no engine is predicted to start within its TTFT SLO */
class OverSloError extends HttpError {}
function overSlo(d: Extract<Decision, { kind: "over-slo" }>): HttpError {
  return new OverSloError(
    429,
    `no engine is predicted to serve the first token within the request's TTFT SLO of ${Math.round(d.sloTtftMs)} ms (best: ${Math.round(d.predictedTtftMs)} ms); retry later`,
    null,
    { "retry-after": String(retryAfterSeconds(d.retryAfterMs)) },
  );
}

function endStreamWithError(res: ServerResponse, status: number, message: string): void {
  if (res.writableEnded || res.destroyed) return;
  res.write(`data: ${errorBody(status, message)}\n\n`);
  res.end(DONE_BYTES);
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
