// One try of a client request on one engine, as an undici dispatch handler (no promise, stream or
// AbortController per attempt: docs/router.md, "Performance"). Bytes are relayed as they arrive; a
// 502/503/504 answer is collected so another engine may answer instead. It ends as one outcome
// (attempt-outcome.ts) that the attempts loop reads: done, retry with its `cause` (connect, in-flight:
// perhaps a poison request, answer), `migrate` for a stream with a ledger (../migration/ledger.ts)
// whose engine failed after the first byte, or a stream that broke off and could not move. Every byte
// marks its engine as making progress (../engines/health.ts). In a router group a pick awaiting the
// group's word (../cluster/claims.ts) has its answer held until the pick stands (`release`), or is
// taken back unseen and decided again (`takeBack`).
import type { Dispatcher } from "undici";
import type { Linked } from "../../collections/linked-list.js";
import { endStreamWithError } from "../../http/errors.js";
import { engineFailureKind } from "../../http/vllm-answers.js";
import { endsWithDone } from "../../protocol/sse.js";
import type { RouterConfig } from "../config/config.js";
import { OwnedDeadline, type DeadlineOwner } from "./deadlines.js";
import type { MoveReason } from "../migration/rules.js";
import {
  rememberResponseId,
  sendAnswer,
  type AttemptContext,
  type AttemptServices,
} from "./attempt-context.js";
import {
  CLIENT_GONE,
  CONNECT_ERRORS,
  DONE,
  ENGINE_FAULTS,
  RETRIABLE_STATUS,
  TOTAL_TIMEOUT,
  UNCLAIMED,
  brokeOff,
  closedUnderRequest,
  movedOff,
  migrate,
  unmovedNote,
  retry,
  type FailureCause,
  type Outcome,
  type RetryOutcome,
} from "./attempt-outcome.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { engineErrorMessage, relayedHeaders } from "../engines/upstream-rules.js";
import { CancelledError } from "../../errors/index.js";

/** an engine's failure answer kept for relaying when no other engine does better */
const MAX_FAILURE_BODY = 64 * 1024;
/** a 500 longer than this is not vLLM's shutdown refusal (a short JSON error) and is relayed as it comes */
const MAX_SHUTDOWN_BODY = 4096;
/**
 * an answer held for the group's word is read on up to this much before the engine is paused: a short
 * one ends while held, and a refused pick whose answer came in full stands (../cluster/worker-claims.ts)
 */
const HOLD_READ_AHEAD = 16 * 1024;

const enum AttemptDeadline {
  FirstByte,
  Idle,
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
  /** collecting a 500 that may be vLLM's refusal while it drains on shutdown (retried elsewhere) */
  CollectShutdown,
}

/**
 * `start` resolves how the attempt ended and never rejects for upstream trouble. Cancellation
 * (client gone, total/first-byte/idle timeout) settles the outcome at once and aborts upstream.
 * An engine's ejection never cancels an attempt: one that waits for a long prefill's first byte, or
 * still receives bytes, finishes on its engine.
 */
export class Attempt implements Dispatcher.DispatchHandler, DeadlineOwner<AttemptDeadline>, Linked<Attempt> {
  // membership of the engine's list of attempts in flight (the drain and ejection walk it)
  prev: Attempt | null = null;
  next: Attempt | null = null;
  list: { remove(n: Attempt): void } | null = null;
  private mode = Mode.Headers;
  private done = false;
  /** undici wrote the whole request to the engine */
  private sent = false;
  /** the request as dispatched, for sending it again (`sendAgain`) */
  private request: Dispatcher.DispatchOptions | undefined;
  /** sent again already: a second connection closed under it is the engine's failure */
  private sentAgain = false;
  private abortUpstream: ((err?: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private onDrain: (() => void) | undefined;
  private settle!: (o: Outcome) => void;
  private ttfbTimedOut = false;
  private idleTimedOut = false;
  private status = 0;
  private isSse = false;
  private headers: string[] = [];
  private held: Buffer | undefined;
  private collected: Buffer[] | undefined;
  private collectedSize = 0;
  /** performance.now() of this attempt's last byte from its engine, and of its last chunk relayed */
  private lastChunk = 0;
  private lastRelayed = 0;
  private startedAt = 0;
  /** the chunk relayed before the last one (a [DONE] split across two chunks) */
  private prevChunk: Buffer | undefined;
  /** this attempt continues a stream whose first byte came from another engine */
  private readonly resumes: boolean;
  /** this attempt's engine has sent body bytes */
  private gotByte = false;
  /** the answer goes through the request's ledger (a 200 event stream of a request that may migrate) */
  private tracked = false;
  /** the ledger's events before this attempt (a buffered answer's progress is counted in events) */
  private eventsBefore = 0;
  /** the router is taking the stream off this engine (drain deadline, ejection) */
  private moving: MoveReason | undefined;
  /** its first output reached the client (routing counts the engine's request answered from then on) */
  answered = false;
  /** the engine's answer while the pick awaits the group's word (`release`), the engine paused */
  private holding: Buffer[] | undefined;
  /** the engine's answer ended while held */
  private endHeld = false;
  private heldBytes = 0;
  /** performance.now() of the first part of the answer held; 0 while none came */
  private heldSince = 0;
  /** taken back: the group refused the pick */
  private unclaimed = false;
  /** seconds the engine's answer waited for the group's word on its pick (`release`); 0: it did not */
  heldSeconds = 0;
  private readonly ttfb = new OwnedDeadline(this, AttemptDeadline.FirstByte);
  private readonly idle = new OwnedDeadline(this, AttemptDeadline.Idle);

  constructor(
    private readonly services: AttemptServices,
    private readonly ctx: AttemptContext,
    readonly engine: EngineRecord,
    private readonly cfg: RouterConfig,
  ) {
    this.resumes = ctx.relayed;
    if (ctx.claim !== 0) this.holding = [];
  }

  /** Its pick may still be taken back: its answer is held, and its body can be sent again. */
  get retractable(): boolean {
    return !this.done && this.holding !== undefined && Buffer.isBuffer(this.ctx.upstreamBody);
  }

  /** The engine's whole answer is held (its pick awaits the word). */
  get answeredInFull(): boolean {
    return this.endHeld && !this.done;
  }

  /** Taken off its engine: a router worker's pick refused, the request decided onto another. */
  takeBack(): void {
    this.unclaimed = true;
    this.cancel();
  }

  /** The pick stands: what the engine sent meanwhile goes out, and the rest as it comes. */
  release(): void {
    const held = this.holding;
    if (!held) return;
    this.holding = undefined;
    if (this.heldSince > 0) this.heldSeconds = (performance.now() - this.heldSince) / 1000;
    let flowing = true;
    for (const c of held) flowing = this.onData(c) && flowing;
    if (this.endHeld) this.onComplete();
    else if (held.length > 0 && flowing) this.resumeUpstream?.();
  }

  /**
   * Whether the router may take this attempt off its engine now: a stream that may migrate and has
   * started, or a request that has not started and can be sent again elsewhere.
   */
  get movable(): boolean {
    if (this.done) return false;
    if (this.ctx.relayed && (!this.resumes || this.gotByte)) return this.tracked;
    return Buffer.isBuffer(this.ctx.upstreamBody);
  }

  /** the model the request asks for (the drain moves it only to an engine serving it) */
  get model(): string {
    return this.ctx.view.model;
  }

  /** a migratable stream this attempt is relaying (its own bytes have reached the client) */
  get midStream(): boolean {
    return !this.done && this.tracked && this.relayedAny;
  }

  /** ms since this attempt's engine last sent a byte (or since it started) */
  silentFor(now: number): number {
    return now - (this.lastChunk || this.startedAt);
  }

  /** Takes the attempt off its engine: a started stream migrates, one not started is sent elsewhere. */
  moveOff(why: MoveReason): void {
    if (!this.movable) return;
    this.moving = why;
    this.cancel();
  }

  onDeadline(kind: AttemptDeadline): void {
    if (kind === AttemptDeadline.FirstByte) this.ttfbTimedOut = true;
    else this.idleTimedOut = true;
    this.cancel();
  }

  /** `inFlight`: the engine's list of attempts in flight, which this one joins until it ends */
  start(headers: string[], inFlight?: { push(a: Attempt): void }): Promise<Outcome> {
    const ctx = this.ctx;
    const p = new Promise<Outcome>((resolve) => (this.settle = resolve));
    if (ctx.clientGone || ctx.totalTimedOut) {
      this.finish(this.interrupted()!);
      return p;
    }
    ctx.current = this;
    inFlight?.push(this);
    // a partial event of an engine tried before is not this one's to finish
    const ledger = ctx.ledger;
    if (ledger) {
      ledger.dropPartial();
      this.eventsBefore = ledger.events;
    }
    this.startedAt = performance.now();
    this.services.deadlines.arm(this.ttfb, this.cfg.timeouts.firstByte, this.startedAt);
    // undici serialises the headers synchronously, so the caller may reuse the array afterwards
    const method = ctx.pr.method ?? "POST";
    // a chat continued from token ids goes to the completions route (../migration/rules.ts)
    const path = ledger?.path ?? ctx.pr.path;
    this.request = { path, method, headers, body: ctx.upstreamBody };
    this.engine.pool.dispatch(this.request, this);
    return p;
  }

  cancel(): void {
    if (this.done) return;
    const err = new CancelledError("attempt cancelled by the router");
    this.abortUpstream?.(err);
    // before the connection is handed over there is nothing to abort yet: onConnect does it
    if (!this.done) this.onError(err);
  }

  private interrupted(): Outcome | undefined {
    const ctx = this.ctx;
    if (ctx.clientGone) return CLIENT_GONE;
    if (ctx.totalTimedOut) return TOTAL_TIMEOUT;
    if (this.ttfbTimedOut)
      return retry(`no first byte within ${this.cfg.timeouts.firstByte} ms`, 504, "in-flight");
    return undefined;
  }

  private finish(o: Outcome): void {
    this.done = true;
    const dl = this.services.deadlines;
    dl.disarm(this.ttfb);
    dl.disarm(this.idle);
    if (this.ctx.current === this) this.ctx.current = undefined;
    if (this.onDrain) this.ctx.res.off("drain", this.onDrain);
    this.list?.remove(this);
    this.settle(o);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.done) abort(new CancelledError("attempt cancelled by the router"));
    else this.abortUpstream = abort;
  }

  /** undici calls this (untyped in its handler interface) once the whole request is written */
  onRequestSent(): void {
    this.sent = true;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.done) return false;
    if (status < 200) return true;
    this.engine.lastByteAt = performance.now();
    this.status = status;
    this.resumeUpstream = resume;
    this.isSse = relayedHeaders(rawHeaders, this.headers);
    const ctx = this.ctx;
    // anything but a 200 event stream (an error answer) is relayed as the engine sent it
    this.tracked = ctx.ledger !== undefined && status === 200 && this.isSse;
    // a continuation answered 502/503/504 has relayed nothing of its own: another engine may try
    if (RETRIABLE_STATUS.has(status) && (!ctx.relayed || this.resumes)) {
      this.mode = Mode.CollectRetry;
      this.collected = [];
      return true;
    }
    // a 0.18+ vLLM draining on SIGTERM refuses new work with a 500 before starting it, and answers a
    // request its dead engine core held with another: told apart from any other 500 by their short
    // bodies (engineFailureKind), read before anything is relayed
    if (status === 500 && (!ctx.relayed || this.resumes)) {
      this.mode = Mode.CollectShutdown;
      this.collected = [];
      return true;
    }
    if (status >= 500) this.services.engines.reportFailure(this.engine, `answered ${status}`);
    else this.services.engines.reportSuccess(this.engine);
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
    const now = performance.now();
    this.engine.lastByteAt = now;
    if (this.holding && this.mode === Mode.Relay) {
      if (this.heldSince === 0) this.heldSince = now;
      this.holding.push(chunk);
      this.heldBytes += chunk.length;
      return this.heldBytes < HOLD_READ_AHEAD;
    }
    if (this.mode === Mode.CollectShutdown && this.collectedSize + chunk.length > MAX_SHUTDOWN_BODY) {
      this.notShutdown();
      return this.onData(chunk);
    }
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
    this.lastChunk = now;
    this.services.deadlines.arm(this.idle, this.cfg.timeouts.idle, now);
    if (!this.gotByte) {
      this.gotByte = true;
      this.services.deadlines.disarm(this.ttfb);
    }
    if (this.tracked) {
      const ledger = ctx.ledger!;
      // whole events only, token ids the client did not ask for blanked, continuations rewritten
      const out = ledger.relay(chunk);
      if (ledger.buffered) {
        // a JSON answer is assembled whole: progress is events taken into the ledger
        if (ledger.events === this.eventsBefore) return true;
        ctx.relayed = true;
        if (this.lastRelayed === 0) this.firstOutput(now);
        this.lastRelayed = now;
        return true;
      }
      if (out.length === 0) return true;
      chunk = Buffer.from(out);
    }
    if (ctx.pr.endpoint?.remembers && this.status === 200)
      rememberResponseId(ctx, this.services, this.engine, chunk);
    if (this.lastRelayed === 0) this.firstOutput(now);
    if (!ctx.relayed) {
      ctx.relayed = true;
      this.writeHead();
      ctx.ttftMs = now - ctx.started;
      ctx.series.ttft.observe(ctx.ttftMs / 1000);
      ctx.trace?.firstByte(ctx.ttftMs / 1000);
    } else ctx.series.itl.observe((now - ctx.lastRelayAt) / 1000);
    this.lastRelayed = now;
    ctx.lastRelayAt = now;
    ctx.trace?.onBody(chunk, this.isSse);
    this.prevChunk = ctx.lastChunk;
    ctx.lastChunk = chunk;
    if (ctx.pr.tenant) {
      chunk = ctx.pr.tenant.onBody(chunk, this.isSse);
      if (chunk.length === 0) return true;
    }
    let ok = true;
    if (!this.isSse) {
      // one chunk held back: a one-chunk answer leaves with headers and terminator in one write (res.end)
      if (this.held !== undefined) ok = res.write(this.held);
      this.held = chunk;
    } else ok = res.write(chunk);
    if (ok) return true;
    this.onDrain ??= () => this.resumeUpstream?.();
    res.once("drain", this.onDrain);
    return false;
  }

  /** This attempt's first output went out: the engine's request counts as answered from now on. */
  private firstOutput(now: number): void {
    this.answered = true;
    this.services.answered(this.ctx, this.engine, now);
  }

  private writeHead(): void {
    const ctx = this.ctx;
    if (!ctx.res.headersSent) {
      this.headers.push("x-request-id", ctx.echoId);
      ctx.res.writeHead(this.status, this.headers);
    }
    ctx.status = this.status;
  }

  /** The 500 being read is not a shutdown refusal: from here on it is any other error answer. */
  private notShutdown(): void {
    this.services.engines.reportFailure(this.engine, `answered ${this.status}`);
    const held = this.collected ?? [];
    if (this.ctx.res.headersSent) {
      this.mode = Mode.CollectSseError;
      return;
    }
    this.mode = Mode.Relay;
    this.collected = undefined;
    this.collectedSize = 0;
    for (const chunk of held) this.onData(chunk);
  }

  private collectedBody(): Buffer | undefined {
    return this.collected ? Buffer.concat(this.collected, this.collectedSize) : undefined;
  }

  onComplete(): void {
    if (this.done) return;
    if (this.holding && this.mode === Mode.Relay) {
      if (this.heldSince === 0) this.heldSince = performance.now();
      this.endHeld = true;
      return;
    }
    const ctx = this.ctx;
    switch (this.mode) {
      case Mode.CollectRetry: {
        this.services.engines.reportFailure(this.engine, `answered ${this.status}`);
        const s = this.status;
        return this.finish(
          this.interrupted() ?? retry(`status ${s}`, s, "answer", this.collectedBody(), this.headers),
        );
      }
      case Mode.CollectShutdown: {
        const kind = engineFailureKind(this.status, this.collectedBody());
        if (kind === "shutdown") {
          // not a failure of the engine's, nor the request's: it never started there
          this.services.engines.reportShutdown(this.engine);
          return this.finish(
            this.interrupted() ?? retry("engine shutting down (vLLM drain)", 503, "connect"),
          );
        }
        if (kind === "dead") {
          // the engine core died holding it (a crash, a drain out of time): as a reset before any
          // byte, retried elsewhere, and a strike against the request (poison.ts)
          this.services.engines.reportFailure(this.engine, "answered 500: its engine core is dead");
          return this.finish(
            this.interrupted() ?? retry("engine core died holding the request", 502, "in-flight"),
          );
        }
        this.notShutdown();
        return this.onComplete();
      }
      case Mode.CollectSseError:
        ctx.relayed = true;
        endStreamWithError(
          ctx.res,
          this.status,
          engineErrorMessage(this.collectedBody(), this.status).message,
        );
        return this.finish(DONE);
      default: {
        const ledger = this.tracked ? ctx.ledger : undefined;
        if (ledger && !ledger.sawDone) {
          // the engine ended the response before the stream's end: an error event, or just closed
          const detail = ledger.heldError
            ? `engine error mid-stream: ${ledger.heldError.message}`
            : "engine ended the stream before [DONE]";
          this.services.engines.reportFailure(this.engine, detail);
          if (!this.relayedAny) return this.finish(retry(detail, 502, "in-flight"));
          return this.finish(migrate(ledger.heldError ? "error_event" : "closed", detail, "in-flight"));
        }
        if (ledger?.buffered) {
          sendAnswer(ctx);
          return this.finish(DONE);
        }
        // a stream that ends without its [DONE] was cut by its engine: the client is told so
        if (ctx.migrationRefusal !== undefined && this.isSse && !this.endsWithDone()) {
          const why = unmovedNote(ctx.migrationRefusal);
          this.services.engines.reportFailure(this.engine, "engine ended the stream before [DONE]");
          ctx.relayed = true;
          endStreamWithError(ctx.res, 502, `engine ended the stream before [DONE]${why}`);
          return this.finish(brokeOff("closed"));
        }
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
  }

  /** the bytes relayed end with the stream's [DONE] */
  private endsWithDone(): boolean {
    const last = this.ctx.lastChunk;
    return last !== undefined && this.lastRelayed !== 0 && endsWithDone(last, this.prevChunk);
  }

  /** nothing of this attempt's own has reached the client: it may still fail over like a fresh one */
  private get relayedAny(): boolean {
    return this.ctx.relayed && (!this.resumes || this.lastRelayed > 0);
  }

  /**
   * The engine closed the connection under the request (`closedUnderRequest`): sent to it
   * again, once, on another connection, as Go's client does with a request it may replay; what ends
   * that try counts as the first close would have (a strike, a failure against the engine). The attempt
   * keeps its slot, deadlines and place in flight; only a body held whole goes again.
   */
  private sendAgain(err: Error): boolean {
    const request = this.request;
    if (this.sentAgain || !request || !Buffer.isBuffer(request.body) || !closedUnderRequest(err))
      return false;
    this.sentAgain = true;
    this.sent = false;
    this.abortUpstream = undefined;
    this.services.sentAgain(this.ctx, this.engine);
    // after undici has finished closing the connection whose request this was
    queueMicrotask(() => {
      if (!this.done) this.engine.pool.dispatch(request, this);
    });
    return true;
  }

  /** A transport failure before any byte was relayed: retried on another engine. */
  private transportFailure(err: Error, when: string): RetryOutcome {
    const code = (err as { code?: string }).code ?? "";
    if (ENGINE_FAULTS.has(code)) this.services.engines.reportFailure(this.engine, `${code}: ${err.message}`);
    // sent again after a close: whatever ends it now is what the first close would have been
    const connect = !this.sentAgain && (CONNECT_ERRORS.has(code) || !this.sent);
    const cause: FailureCause = connect ? "connect" : "in-flight";
    return retry(`transport ${code || "error"}${when}`, 502, cause);
  }

  onError(err: Error): void {
    if (this.done) return;
    const ctx = this.ctx;
    const why = this.interrupted();
    // nothing went out, and the data plane freed its slot when it took it back: the next attempt,
    // already picked, meets whatever else is under way (client gone, timeout)
    if (this.unclaimed) return this.finish(UNCLAIMED);
    switch (this.mode) {
      case Mode.Headers:
        if (this.moving && !why) return this.finish(movedOff(this.moving));
        if (!why && this.sendAgain(err)) return;
        return this.finish(why ?? this.transportFailure(err, ""));
      case Mode.CollectRetry: {
        this.services.engines.reportFailure(this.engine, `answered ${this.status}`);
        const s = this.status;
        return this.finish(why ?? retry(`status ${s}`, s, "answer", undefined, this.headers));
      }
      case Mode.CollectSseError:
        if (why === CLIENT_GONE) return this.finish(why);
        ctx.relayed = true;
        endStreamWithError(ctx.res, this.status, `engine answered ${this.status}`);
        return this.finish(DONE);
      case Mode.CollectShutdown:
        this.services.engines.reportFailure(this.engine, `answered ${this.status}`);
        return this.finish(why ?? this.transportFailure(err, " in a 500 answer"));
    }
    // relaying
    if (why === CLIENT_GONE) return this.finish(why);
    if (!this.relayedAny) {
      if (this.moving && !why) return this.finish(movedOff(this.moving));
      return this.finish(why ?? this.transportFailure(err, " before first byte"));
    }
    if (this.moving && this.tracked && !ctx.totalTimedOut)
      return this.finish(
        migrate(this.moving, `the router moved the stream off the engine (${this.moving})`, "router"),
      );
    const idle = this.idleTimedOut;
    const reason = idle
      ? `engine sent nothing for ${this.cfg.timeouts.idle} ms`
      : ctx.totalTimedOut
        ? "request exceeded the router's total timeout"
        : `engine connection lost mid-response: ${err.message}`;
    if (!idle && !ctx.totalTimedOut) this.services.engines.reportFailure(this.engine, reason);
    if (this.tracked && !ctx.totalTimedOut)
      return this.finish(migrate(idle ? "idle_timeout" : "connection_lost", reason, "in-flight"));
    const unmoved = ctx.totalTimedOut ? "" : unmovedNote(ctx.migrationRefusal);
    if (this.isSse || ctx.pr.stream)
      endStreamWithError(ctx.res, idle || ctx.totalTimedOut ? 504 : 502, reason + unmoved);
    else ctx.res.destroy();
    ctx.status = 502;
    this.finish(ctx.totalTimedOut ? DONE : brokeOff(idle ? "idle_timeout" : "connection_lost"));
  }
}
