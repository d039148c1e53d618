// The data plane's loop: one client request → attempts on engines (attempt.ts) until one answers,
// each attempt's outcome read here. The request's bytes go upstream untouched; failover only while
// nothing from an engine reached the client, within `retry.maxAttempts` and the retry budget. A
// request engines failed while holding it on `retry.poisonAfter` of them is not retried (poison.ts,
// a 502 with `x-should-retry: false`); a streamed answer whose engine fails after the first byte
// moves to another (migration-flow.ts). Where each attempt goes is engine-picks.ts's; the answers
// of a request given up on, error-answers.ts's. Hot path (docs/router.md, "Performance"): one undici
// `dispatch` per attempt, every timeout on one coarse DeadlineQueue, headers as flat arrays built
// once per request, metrics through pre-bound children.
import type { IncomingMessage, ServerResponse } from "node:http";
import { LinkedList } from "../../collections/linked-list.js";
import type { CacheOracle, Policy, RequestView } from "../../routing/index.js";
import { HttpError } from "../../http/errors.js";
import type { AdmissionQueue, RetryBudget } from "../request/admission.js";
import type { RouterConfig } from "../config/config.js";
import { DeadlineQueue } from "./deadlines.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { SlotClaimsFactory } from "./slot-claims.js";
import type { Disaggregation } from "../pd/disagg.js";
import type { Tracer } from "../../obs/tracing.js";
import { logger } from "../../obs/log.js";
import { Attempt } from "./attempt.js";
import type { AttemptContext, AttemptServices } from "./attempt-context.js";
import { totalTimeoutError, type Outcome, type RetryOutcome } from "./attempt-outcome.js";
import { EnginePicks, OverSloError } from "./engine-picks.js";
import { answerError, answerFailure, answerPoisoned } from "./error-answers.js";
import { strike } from "./poison.js";
import { firstBody } from "../migration/rules.js";
import { Migrations } from "./migration-flow.js";
import type { RequestContext } from "./request-context.js";
import { RequestBooks } from "./request-books.js";
import type { RoutedRequest } from "../request/routed-request.js";
import { forwardedHeaders, upstreamAuthorization } from "../engines/upstream-rules.js";
import { WorkCancelled, type Cancellable } from "../../eventloop/turns.js";
import type { AccessLog } from "../telemetry/access-log.js";
import type { ResponseAffinity } from "./response-affinity.js";
import type { IssuedIds } from "./issued-ids.js";

/** the data plane's logger (its name kept from before the loop had one of its own) */
const log = logger("router.dataplane");

/** Hashes a long prompt's blocks ahead of its first decision; undefined when there is nothing to wait for. */
export interface PromptHashing {
  hashAhead(view: RequestView, since: number, request: Cancellable): Promise<void> | undefined;
}

/** Told of every engine picked for an attempt. */
export interface RouteListener {
  routed(
    req: IncomingMessage,
    res: ServerResponse,
    view: RequestView,
    engineUrl: string,
    requestId: string,
  ): void;
}

export interface AttemptLoopDeps {
  registry: EngineRegistry;
  metrics: RouterMetrics;
  queue: AdmissionQueue;
  budget: RetryBudget;
  config: () => RouterConfig;
  policy: () => Policy;
  /** present only when tracing is configured: spans per request and attempt, traceparent upstream */
  tracer?: Tracer | undefined;
  /** disaggregated prefill/decode: runs the prefill step before the attempts loop (../pd/disagg.ts) */
  disagg?: Disaggregation | undefined;
  /** one line per finished request (src/router/telemetry/access-log.ts) */
  accessLog?: AccessLog | undefined;
  /**
   * cache-aware routing: hashes a long prompt's blocks a slice per turn before its first decision
   * (src/router/kv/cache-routing.ts)
   */
  hashing?: PromptHashing | undefined;
  /** what the LoRA placement prices a candidate's cached prefix of an adapter's prompt by */
  loraCache?: CacheOracle | undefined;
  /** which engine made each stored response: learned from answers, read by pinned requests */
  affinity?: ResponseAffinity | undefined;
  /** the token-in requests in flight by tenant, for `/inference/v1/abort_requests` (issued-ids.ts) */
  issued?: IssuedIds | undefined;
  /** told of every engine picked for an attempt (the decision's debug line and header) */
  routes?: RouteListener | undefined;
}

/** The attempts in flight on one engine (what a drain or an ejection moves). */
export class EngineAttempts extends LinkedList<Attempt> {}

export class AttemptLoop {
  /** every per-request timeout of this router, on one coarse timer */
  readonly deadlines = new DeadlineQueue();
  /** keyed by the long-lived engine record; the attempts link themselves in (no per-request entry) */
  private readonly inFlight = new WeakMap<EngineRecord, EngineAttempts>();

  /** what a stream that breaks off mid-answer becomes (migration-flow.ts) */
  private readonly migrations: Migrations;
  /** each request's opening and closing books: counted, timed, listened to, logged */
  private readonly books: RequestBooks;
  /** where each request goes, and the slots on its picks */
  private readonly picks: EnginePicks;
  /** what each attempt works with; it tells only its first output as it happens */
  private readonly services: AttemptServices;

  constructor(private readonly d: AttemptLoopDeps) {
    this.migrations = new Migrations({
      metrics: d.metrics,
      deadlines: this.deadlines,
      fail: answerError,
    });
    this.picks = new EnginePicks(d);
    this.books = new RequestBooks(d, this.deadlines, this.migrations);
    this.services = {
      deadlines: this.deadlines,
      engines: d.registry,
      affinity: d.affinity,
      answered: (ctx, e, now) => this.answered(ctx, e, now),
    };
  }

  /** Who confirms this data plane's picks: `make`'s claims (a router worker's), or none (a lone router). */
  useClaims(make: SlotClaimsFactory | undefined): void {
    this.picks.useClaims(make);
  }

  /** The attempts in flight on an engine now. */
  attemptsOn(e: EngineRecord): EngineAttempts {
    let l = this.inFlight.get(e);
    if (!l) {
      l = new EngineAttempts();
      this.inFlight.set(e, l);
    }
    return l;
  }

  /** Not async: hands back the attempts loop's promise itself (one async frame per request, not two). */
  handle(req: IncomingMessage, res: ServerResponse, pr: RoutedRequest): Promise<void> {
    const cfg = this.d.config();
    return this.run(this.books.open(req, res, pr, cfg), cfg);
  }

  /**
   * An attempt's first output reached the client: routing counts it answered, the policy calibrates.
   * A continuation's first token ends its migration instead: its time is not the request's TTFT,
   * and calibrating the prediction with it would mix two different quantities.
   */
  private answered(c: AttemptContext, e: EngineRecord, now: number): void {
    const ctx = c as RequestContext;
    this.d.registry.firstToken(e, now);
    this.picks.countUnstreamed(ctx, undefined);
    const policy = this.picks.policyFor(ctx);
    if (ctx.migrating !== undefined) this.migrations.continued(ctx);
    else policy.onFirstToken?.(ctx.view, e.view, now - ctx.started);
    // a policy that binds late holds requests until an engine's queued prompts are answered
    if (policy.roomAtFirstToken) this.d.queue.kick(1);
  }

  /**
   * An attempt on `e` ended (a refused pick aside, which unpick handles). An answer relayed whole is a
   * completion: the policy pauses the request's session there and learns answers' lengths from it
   * (reported on the engine that finished it, so a stream that moved counts where it ended). Any other end
   * (failed, moved on, its client gone, an error relayed) tells the policy the turn is no longer in
   * flight there; a completion's timings would mislead it.
   */
  private attemptEnded(ctx: RequestContext, e: EngineRecord, outcome: Outcome | undefined): void {
    const policy = this.picks.policyFor(ctx);
    const elapsed = performance.now() - ctx.started;
    const ended = outcome?.kind === "done" || outcome?.kind === "broke-off";
    if (ended && ctx.status >= 200 && ctx.status < 300) policy.onDone?.(ctx.view, e.view, elapsed);
    else policy.onAbandoned?.(ctx.view, e.view, elapsed);
  }

  private async run(ctx: RequestContext, cfg: RouterConfig): Promise<void> {
    try {
      if (ctx.clientGone) return;
      const adapters = this.d.registry.adapters;
      if (adapters && ctx.view.lora === undefined) {
        const v = adapters.requestView(ctx.pr.model);
        if (v) v.base = this.d.registry.adapterBase(v.base || null) ?? v.base;
        ctx.view.lora = v;
      }
      const ahead = this.d.hashing?.hashAhead(ctx.view, ctx.pr.workBegan ?? ctx.started, ctx);
      if (ahead !== undefined) {
        // given up (WorkCancelled) only for a request whose client left or whose time ran out
        await ahead.catch(cancelledAhead);
        if (ctx.clientGone) return;
        if (ctx.totalTimedOut) throw totalTimeoutError();
      }
      const headers = forwardedHeaders(
        ctx.req.headers,
        ctx.requestId,
        ctx.trace !== undefined,
        ctx.req.socket.remoteAddress,
      );
      const baseHeaders = headers.length;
      // P/D: the prefill step runs first; the loop below then sends the decode step (body and
      // candidates rewritten) like any request, so its stream is relayed as it arrives
      if (this.d.disagg?.applies(ctx.pr)) {
        const finished = await this.d.disagg.prefill(ctx, {
          headers,
          acquire: () => this.picks.standing(ctx),
          release: (e) => this.picks.releaseSlot(e, ctx),
          fail: (e) => answerError(ctx, e),
        });
        if (finished) return;
        // the decode step's body (the prefill's KV transfer params), token ids asked for as before
        const plan = ctx.migration;
        const body = ctx.pr.body;
        ctx.upstreamBody = plan && Buffer.isBuffer(body) ? firstBody(body, plan) : body;
      }
      const replayable = Buffer.isBuffer(ctx.pr.body);
      // a pinned request has one engine to try
      const maxAttempts = replayable && ctx.pr.pin === undefined ? cfg.retry.maxAttempts : 1;
      let last: RetryOutcome | undefined;
      // tries on engines since the request (or its last migration) started
      let tries = 0;
      for (let attempt = 1; ; attempt++) {
        tries++;
        let engine: EngineRecord;
        try {
          const got = ctx.repicked ?? this.picks.acquire(ctx);
          ctx.repicked = undefined;
          engine = got instanceof Promise ? await got : got;
          if (ctx.view.lora) await this.picks.ensureAdapter(ctx, engine);
        } catch (err) {
          if (ctx.clientGone) return;
          if (ctx.totalTimedOut) throw totalTimeoutError();
          if (ctx.migrating !== undefined && err instanceof HttpError)
            return this.migrations.stranded(ctx, err);
          // every engine tried already: report what the last one said rather than "unavailable"
          if (last && err instanceof HttpError && err.status === 503) return answerFailure(ctx, last);
          // a tenant's adapter-load budget is its own limit (counted by the gate), not the queue's
          if (err instanceof HttpError && err.status === 429 && !err.headers["x-ratelimit-limit"])
            this.d.metrics.rejected.inc({ reason: err instanceof OverSloError ? "slo" : "queue" });
          throw err;
        }
        ctx.engineUrl = engine.url;
        ctx.attempts = attempt;
        if (!ctx.pr.stream) this.picks.countUnstreamed(ctx, engine);
        // the debug header names the engine a stream started on, not the one it moved to
        if (ctx.migrating === undefined)
          this.d.routes?.routed(ctx.req, ctx.res, ctx.view, engine.url, ctx.echoId);
        headers.length = baseHeaders;
        const auth = upstreamAuthorization(engine.spec, cfg, ctx.pr.clientAuthorization);
        if (auth !== undefined) headers.push("authorization", auth);
        if (ctx.trace) headers.push("traceparent", ctx.trace.attempt(engine.url, attempt).traceparent());
        let outcome;
        const attemptFrom = performance.now();
        const att = new Attempt(this.services, ctx, engine, cfg);
        try {
          outcome = await att.start(headers, this.attemptsOn(engine));
        } finally {
          // taken back (a router worker's refused pick): its slot is freed already; otherwise a claim
          // whose word has not come goes with the slot. The policy hears of the end first, as the fleet
          // simulator tells it: freeing the slot lets a waiter be decided, and a policy that holds room
          // for the request (vllm-router-program) must have let it go by then
          this.picks.countUnstreamed(ctx, undefined);
          if (outcome?.kind !== "unclaimed") {
            try {
              this.attemptEnded(ctx, engine, outcome);
            } finally {
              this.picks.releaseSlot(engine, ctx, att.answered);
            }
          }
        }
        // read off the attempt once it ended: how long its answer was held, a broken stream to count
        if (att.heldSeconds > 0) this.d.metrics.claimHeld.child(ctx.pr.model).observe(att.heldSeconds);
        if (outcome.kind === "broke-off") this.migrations.brokeOff(ctx, outcome.reason);
        if (outcome.kind === "unclaimed") {
          // not a failure of the engine's: the next attempt is picked already (ctx.repicked)
          ctx.trace?.attemptEnded(0, "pick refused by the router group");
          attempt--;
          tries--;
          continue;
        }
        if (outcome.kind === "total-timeout") throw totalTimeoutError();
        if (outcome.kind === "retry" || (outcome.kind === "migrate" && outcome.cause === "in-flight"))
          engine.failures.mark(ctx.serial, performance.now());
        if (outcome.kind === "migrate") {
          ctx.trace?.attemptEnded(200, outcome.detail);
          ctx.exclude(engine.url);
          if (outcome.cause === "in-flight") {
            ctx.poisoned = await strike(ctx, engine.failures, attemptFrom, cfg.retry.poisonAfter, cfg.health);
            if (ctx.clientGone) return;
          }
          if (!this.migrations.onBreak(ctx, outcome, cfg)) return;
          last = undefined;
          tries = 0;
          continue;
        }
        if (outcome.kind !== "retry") return;
        ctx.trace?.attemptEnded(outcome.status, outcome.reason);
        last = outcome;
        ctx.exclude(engine.url);
        if (outcome.cause !== "connect") ctx.onlyConnectFailures = false;
        if (outcome.cause === "in-flight") {
          if (await strike(ctx, engine.failures, attemptFrom, cfg.retry.poisonAfter, cfg.health))
            return answerPoisoned(ctx, last, this.d.metrics);
          if (ctx.clientGone) return;
        }
        if (ctx.totalTimedOut) throw totalTimeoutError();
        if (tries >= maxAttempts) return answerFailure(ctx, last);
        // a continuation is a migration's, bounded by migration.maxPerRequest, not the retry budget
        if (ctx.migrating === undefined && !this.d.budget.tryRetry()) {
          this.d.metrics.rejected.inc({ reason: "retry_budget" });
          return answerFailure(ctx, last);
        }
        this.d.metrics.retries.inc({ model: ctx.pr.model, reason: outcome.reason });
      }
    } catch (err) {
      if (!ctx.clientGone) {
        const e =
          err instanceof HttpError ? err : new HttpError(500, `router error: ${(err as Error).message}`);
        if (!(err instanceof HttpError)) log.error({ err, requestId: ctx.requestId }, "proxy failure");
        answerError(ctx, e);
      }
    } finally {
      this.books.close(ctx);
    }
  }
}

/** hashing ahead gave up for a cancelled request: what it was cancelled by is answered next */
function cancelledAhead(err: unknown): void {
  if (!(err instanceof WorkCancelled)) throw err;
}
