// The data plane: one client request → attempts on engines (attempt.ts) until one answers. The
// original request bytes go upstream untouched; response bytes are relayed as they arrive. Failover
// is allowed only while nothing from an engine has reached the client, within `retry.maxAttempts`
// and the retry budget.
//
// Containment: a request whose attempts failed on `retry.poisonAfter` engines while they held it
// (the engine died, reset or fell silent past the first-byte timeout) is not retried further — it may
// be what breaks them — and gets a clear 502 with `x-should-retry: false`. When no engine of a model
// is in rotation, requests are still routed among its engines (panic mode, counted and logged)
// rather than refused: an ejection is a guess, a refusal is certain.
//
// A streamed completion or chat whose engine fails after the first byte is migrated: continued on
// another engine from what was delivered (../migration/rules.ts builds the request,
// ../migration/ledger.ts keeps the record and rewrites the next engine's events), within `migration.maxPerRequest`; engine
// failures while it is served count toward `retry.poisonAfter` as any attempt's do.
//
// Hot-path shape (see docs/router.md, "Performance"): one undici `dispatch` per attempt, every
// timeout on one shared coarse DeadlineQueue, headers as flat arrays built once per request,
// metrics through pre-bound children.
//
// Slots on the policy's picks are taken and freed through one SlotClaims (slot-claims.ts): a lone
// router's are the registry's slot operations; a router worker's (../cluster/worker-claims.ts) make
// load-aware picks claims its primary confirms, and decide a refused one again through this data
// plane's PickHost. Which one is held is chosen at wiring (useClaims).
import type { IncomingMessage, ServerResponse } from "node:http";
import { LinkedList } from "../../collections/linked-list.js";
import {
  createPolicy,
  decide,
  retryAfterSeconds,
  type Decision,
  type EngineView,
  type Policy,
  type CacheOracle,
  type RequestView,
} from "../../routing/index.js";
import { createLoraPolicy, createLoraPolicyByName } from "../../routing/lora.js";
import { addStrike, standingStrikes } from "./poison.js";
import { HttpError, endStreamWithError, sendError } from "../../http/errors.js";
import { SSE_HEADERS } from "../../protocol/sse.js";
import type { AdmissionQueue, RetryBudget } from "../request/admission.js";
import type { RouterConfig } from "../config/config.js";
import { DeadlineQueue } from "./deadlines.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { Registry } from "../engines/registry.js";
import type { Upstream } from "../engines/upstream.js";
import { LoneSlotClaims, type PickHost, type SlotClaims, type SlotClaimsFactory } from "./slot-claims.js";
import type { Disaggregation } from "../pd/disagg.js";
import type { Tracer } from "../../obs/tracing.js";
import { logger } from "../../obs/log.js";
import { Attempt, type AttemptContext, type AttemptHost } from "./attempt.js";
import { totalTimeoutError, type Outcome, type RetryOutcome } from "./attempt-outcome.js";
import { firstBody, type BreakReason } from "../migration/rules.js";
import { Migrations } from "./migration-flow.js";
import { RequestContext } from "./request-context.js";
import { modelNotFound, type RoutedRequest } from "../request/routed-request.js";
import { forwardedHeaders, upstreamAuthorization } from "../engines/upstream-rules.js";
import { WorkCancelled, type Cancellable } from "../../eventloop/turns.js";
import type { AccessLog } from "../telemetry/access-log.js";
import { responseNotFound, type ResponseAffinity } from "./response-affinity.js";
import type { IssuedIds } from "./issued-ids.js";

const log = logger("router.proxy");

const KEEPALIVE_BYTES = Buffer.from(": keep-alive\n\n");

export interface ProxyDeps {
  registry: Registry;
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
   * (src/router/kv/cache-routing.ts); undefined when there is nothing to wait for
   */
  hashAhead?:
    ((view: RequestView, since: number, request: Cancellable) => Promise<void> | undefined) | undefined;
  /** what the LoRA placement prices a candidate's cached prefix of an adapter's prompt by */
  loraCache?: CacheOracle | undefined;
  /** which engine made each stored response: learned from answers, read by pinned requests */
  affinity?: ResponseAffinity | undefined;
  /** the token-in requests in flight by tenant, for `/inference/v1/abort_requests` (issued-ids.ts) */
  issued?: IssuedIds | undefined;
  /** told of every engine picked for an attempt (the decision's debug line and header) */
  onRouted?: (
    req: IncomingMessage,
    res: ServerResponse,
    view: RequestView,
    engineUrl: string,
    requestId: string,
  ) => void;
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

/** The attempts in flight on one engine (what a drain or an ejection moves). */
export class EngineAttempts extends LinkedList<Attempt> {}

export class Proxy implements AttemptHost {
  /** every per-request timeout of this router, on one coarse timer */
  readonly deadlines = new DeadlineQueue();
  /** keyed by the long-lived engine record; the attempts link themselves in (no per-request entry) */
  private readonly inFlight = new WeakMap<Upstream, EngineAttempts>();

  /** what a stream that breaks off mid-answer becomes (migration-flow.ts) */
  private readonly migrations: Migrations;
  /** what the claims side calls to decide a request again */
  private readonly host: PickHost<RequestContext> = {
    acquire: (ctx, word) => this.acquire(ctx, word),
    unpick: (ctx, e) => this.unpick(ctx, e),
  };
  /** slots on the policy's picks: a lone router's, or a router worker's claims (useClaims) */
  private claims: SlotClaims<RequestContext>;
  /** the LoRA placement for registry adapters, made on the first such request */
  private loraPolicy: Policy | undefined;

  constructor(private readonly d: ProxyDeps) {
    this.migrations = new Migrations({
      metrics: d.metrics,
      deadlines: this.deadlines,
      fail: (ctx, e) => this.fail(ctx as RequestContext, e),
    });
    this.claims = new LoneSlotClaims(d.registry, this.host);
  }

  /** Who confirms this data plane's picks: `make`'s claims (a router worker's), or none (a lone router). */
  useClaims(make: SlotClaimsFactory | undefined): void {
    this.claims = make ? make(this.host) : new LoneSlotClaims(this.d.registry, this.host);
  }

  /** The attempts in flight on an engine now. */
  attemptsOn(e: Upstream): EngineAttempts {
    let l = this.inFlight.get(e);
    if (!l) {
      l = new EngineAttempts();
      this.inFlight.set(e, l);
    }
    return l;
  }

  brokeOff(ctx: AttemptContext, reason: BreakReason): string {
    return this.migrations.brokeOff(ctx as RequestContext, reason);
  }

  reportFailure(e: Upstream, what: string): void {
    this.d.registry.reportFailure(e, what);
  }

  reportSuccess(e: Upstream): void {
    this.d.registry.reportSuccess(e);
  }

  engineShutdown(e: Upstream): void {
    this.d.registry.reportShutdown(e);
  }

  /** Not async: hands back the attempts loop's promise itself (one async frame per request, not two). */
  handle(req: IncomingMessage, res: ServerResponse, pr: RoutedRequest): Promise<void> {
    const cfg = this.d.config();
    const metrics = this.d.metrics;
    const ctx = new RequestContext(req, res, pr, this, metrics, this.d.tracer);
    metrics.inFlight++;
    this.d.budget.onRequest();
    (res as WithContext)[CONTEXT] = ctx;
    res.on("close", onResponseClose);
    // gone while the ingress awaited a body parsed on a thread or a tenant's admission: its close has
    // passed (the connection's: a pipelined request's response has no socket of its own)
    if (res.destroyed || req.socket.destroyed) ctx.clientGone = true;
    const now = ctx.started;
    this.deadlines.arm(ctx.total, cfg.timeouts.total, now);
    if (pr.stream && cfg.timeouts.keepAlive > 0)
      this.deadlines.arm(ctx.keepAlive, cfg.timeouts.keepAlive, now);
    if (pr.generation && cfg.migration.enabled && (pr.stream || cfg.migration.nonStreaming))
      this.migrations.plan(ctx, cfg.migration.nonStreaming);
    if (ctx.endpoint?.remembers && this.d.affinity) ctx.watchResponseId();
    if (ctx.endpoint?.abortIds === "issued" && this.d.issued) {
      const clientId = ctx.echoId !== ctx.requestId ? ctx.echoId : undefined;
      ctx.issued = this.d.issued.add(pr.tenant?.tenant ?? "", ctx.requestId, clientId);
    }
    return this.run(ctx, cfg);
  }

  /** The request's end, whatever happened: timers off, listener off, counted, logged. */
  private finished(ctx: RequestContext): void {
    const res = ctx.res;
    const pr = ctx.pr;
    const metrics = this.d.metrics;
    this.deadlines.disarm(ctx.total);
    this.deadlines.disarm(ctx.keepAlive);
    // a continuation that never got going: the migration failed (the client saw an error event)
    if (ctx.migrating !== undefined && !ctx.clientGone)
      metrics.countMigration(pr.model, ctx.migrating, "failed");
    res.off("close", onResponseClose);
    (res as WithContext)[CONTEXT] = undefined;
    metrics.inFlight--;
    if (ctx.issued) this.d.issued?.remove(ctx.issued);
    const status = ctx.clientGone ? 499 : ctx.status || res.statusCode;
    const ep = ctx.endpoint;
    if (pr.generation) metrics.countRequest(pr.model, ctx.engineUrl, status, this.d.policy().name);
    else if (ep) metrics.countUnlisted(ep.path, status, ep.counted === "other" ? "other" : "tokenizer");
    else metrics.countUnlisted(pr.path, status);
    const seconds = (performance.now() - ctx.started) / 1000;
    ctx.series.e2e.observe(seconds);
    ctx.trace?.end(status, ctx.engineUrl);
    // a request that never reached an engine generated nothing (without usage it is charged none)
    pr.tenant?.finish(status, ctx.engineUrl !== "none");
    this.d.accessLog?.write(ctx, status, seconds);
  }

  /** Answers with an error: a JSON error before anything was sent, an SSE error event after. */
  fail(ctx: RequestContext, e: HttpError): void {
    const res = ctx.res;
    ctx.status = e.status;
    if (!res.headersSent) {
      res.setHeader("x-request-id", ctx.echoId);
      sendError(res, e);
    } else if (ctx.pr.stream && !res.writableEnded) {
      endStreamWithError(res, e.status, e.message);
    } else res.destroy();
  }

  sendKeepAlive(ctx: RequestContext): void {
    const res = ctx.res;
    // comments keep the client's connection warm before the first byte and while a stream moves
    if ((ctx.relayed && ctx.migrating === undefined) || res.writableEnded || res.destroyed) return;
    if (!res.headersSent) {
      // Committing to 200 now is safe: an engine failure later becomes an SSE error event.
      res.writeHead(200, { ...SSE_HEADERS, "x-request-id": ctx.echoId });
      ctx.status = 200;
    }
    res.write(KEEPALIVE_BYTES);
    this.deadlines.arm(ctx.keepAlive, this.d.config().timeouts.keepAlive);
  }

  /**
   * Picks an engine and claims a slot on it. Synchronous when an engine has room (the common case:
   * no promise, no microtask); a promise only when every candidate is at its cap and it queues.
   * `word`: the claims' own token for a pick that must stand first (SlotClaims.standing).
   */
  private acquire(ctx: RequestContext, word?: object): Upstream | Promise<Upstream> {
    const reg = this.d.registry;
    const now = performance.now();
    const pin = ctx.pr.pin;
    if (pin !== undefined) {
      // the engine holding the response, or nobody: another would answer without the history
      const e = reg.engines.get(pin.engine);
      if (!e || e.draining || !e.healthy || ctx.view.exclude?.has(e.url)) throw responseNotFound(pin.id);
      reg.takeSlot(e, now);
      return e;
    }
    const dec = decide(this.policyFor(ctx), ctx.view, { engines: reg.snapshot(), now });
    if (dec.kind === "picked") {
      const e = reg.engines.get(dec.engine.id)!;
      // a router worker's load-aware pick may await its group's word (ctx.claim): the request goes out
      // meanwhile, its answer held (Attempt), and one refused is taken back and decided again (run)
      this.claims.take(e, ctx, now, word);
      return e;
    }
    if (dec.kind === "unknown-model") throw modelNotFound(ctx.pr.model);
    if (dec.kind === "unavailable") return this.panicPick(ctx);
    if (dec.kind === "over-slo" && this.d.config().slo.onMiss === "reject") throw overSlo(dec);
    return this.queueForSlot(ctx);
  }

  /** A refused pick let go of: its claim and slot freed, and the policy forgets it (its prefill ledger). */
  private unpick(ctx: RequestContext, e: Upstream): void {
    this.releaseSlot(e, ctx);
    this.policyFor(ctx).onUnpicked?.(ctx.view, e.view);
  }

  /**
   * No engine in rotation can take the request. When that is because none of the model's engines is
   * in rotation at all (every one ejected or never admitted), route among them anyway: panic mode,
   * as Envoy does below its panic threshold. Otherwise (the ones in rotation were tried) it is a 503.
   */
  private panicPick(ctx: RequestContext): Upstream {
    const reg = this.d.registry;
    const model = ctx.pr.model;
    const views: EngineView[] | undefined = reg.panicViews(model);
    if (views) {
      const now = performance.now();
      const dec = decide(this.policyFor(ctx), ctx.view, { engines: views, now });
      const e = dec.kind === "picked" ? reg.engines.get(dec.engine.id) : undefined;
      if (e) {
        reg.takeSlot(e, now);
        if (!ctx.panicked) {
          ctx.panicked = true;
          reg.notePanic(model);
        }
        return e;
      }
    }
    throw new HttpError(503, `no ready engine serves the model \`${model}\` right now; retry later`, null, {
      "retry-after": "1",
    });
  }

  /** Saturated (or over its SLO, queueing): waits in the bounded queue for room. */
  private async queueForSlot(ctx: RequestContext): Promise<Upstream> {
    const reg = this.d.registry;
    let picked: Upstream | undefined;
    const tryAcquire = (): boolean => {
      const now = performance.now();
      const dec = decide(this.policyFor(ctx), ctx.view, { engines: reg.snapshot(), now });
      if (dec.kind !== "picked") return false;
      const e = reg.engines.get(dec.engine.id);
      if (!e) return false;
      reg.takeSlot(e, now);
      picked = e;
      return true;
    };
    const since = performance.now();
    try {
      await this.d.queue.wait(tryAcquire, ctx.queueSignal(), ctx.pr.flow, ctx.pr.queueAsk);
    } catch (err) {
      // timed out, refused or its client gone while held: it ranks among the waiting no more
      this.policyFor(ctx).onLeftQueue?.(ctx.view);
      throw err;
    } finally {
      ctx.queuedMs += performance.now() - since;
    }
    return picked!;
  }

  /** The first bytes of a Responses answer: its id, once read, is remembered with the engine. */
  responseBytes(c: AttemptContext, e: Upstream, chunk: Buffer): void {
    const ctx = c as RequestContext;
    const id = ctx.responseScan?.feed(chunk);
    if (id === undefined) return;
    ctx.responseScan = undefined;
    if (id !== null) this.d.affinity?.remember(id, e.url, c.pr.model, c.pr.sessionKey, c.pr.tenant?.tenant);
  }

  answerHeld(c: AttemptContext, seconds: number): void {
    this.d.metrics.claimHeld.child(c.pr.model).observe(seconds);
  }

  /**
   * An attempt's first output reached the client: routing counts it answered, the policy calibrates.
   * A continuation's first token ends its migration instead: its time is not the request's TTFT,
   * and calibrating the prediction with it would mix two different quantities.
   */
  firstToken(c: AttemptContext, e: Upstream, now: number): void {
    const ctx = c as RequestContext;
    this.d.registry.firstToken(e, now);
    this.countUnstreamed(ctx, undefined);
    const policy = this.policyFor(ctx);
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
  private attemptEnded(ctx: RequestContext, e: Upstream, outcome: Outcome | undefined): void {
    const policy = this.policyFor(ctx);
    const elapsed = performance.now() - ctx.started;
    if (outcome?.kind === "done" && ctx.status >= 200 && ctx.status < 300)
      policy.onDone?.(ctx.view, e.view, elapsed);
    else policy.onAbandoned?.(ctx.view, e.view, elapsed);
  }

  /**
   * A non-streamed answer's first byte comes with its last, so its engine's count of requests awaiting a
   * first token holds it all along: `unstreamed` says how many of those it holds (late binding leaves
   * them out). `e`: the attempt now counted on that engine; undefined: none (answered, or ended).
   */
  private countUnstreamed(ctx: RequestContext, e: Upstream | undefined): void {
    const was = ctx.unstreamedOn;
    if (was === e) return;
    if (was?.view.unstreamed) was.view.unstreamed--;
    ctx.unstreamedOn = e;
    if (e) e.view.unstreamed = (e.view.unstreamed ?? 0) + 1;
  }

  /**
   * The request's slot on `e` is free (a claim of its still out is withdrawn with it). `answered`:
   * the attempt's first byte reached the client (and firstToken was told then).
   */
  private releaseSlot(e: Upstream, ctx: RequestContext, answered = false): void {
    if (ctx.loraEngine === e.url) {
      ctx.loraEngine = undefined;
      this.d.registry.adapters?.noteDone(e, ctx.view.lora!.name);
    }
    this.claims.free(e, ctx, answered);
    this.d.queue.kick(1);
  }

  /**
   * The policy that places a request: a registry adapter's by the LoRA placement (src/routing/lora.ts),
   * which prices where the adapter is loaded and what loading it costs; every other by the router's
   */
  private policyFor(ctx: RequestContext): Policy {
    return ctx.view.lora ? (this.loraPolicy ??= this.makeLoraPolicy()) : this.d.policy();
  }

  /** the configured placement (`lora.policy`): ours, priced with the cache oracle, or a baseline */
  private makeLoraPolicy(): Policy {
    const name = this.d.config().lora?.policy ?? "lora";
    if (name === "lora") return createLoraPolicy({ cache: this.d.loraCache });
    if (name === "round-robin") return createPolicy("round-robin");
    return createLoraPolicyByName(name);
  }

  /**
   * A registry adapter's request on its picked engine: counted there, then sent once the adapter is
   * loaded (at once, or after the one load in flight for it there); a failed load frees the slot and
   * answers the load's error
   */
  private async ensureAdapter(ctx: RequestContext, e: Upstream): Promise<void> {
    const loader = this.d.registry.adapters;
    if (!loader || !ctx.view.lora) return;
    loader.noteSent(e, ctx.view.lora.name, performance.now());
    ctx.loraEngine = e.url;
    try {
      await loader.ensure(e, ctx.view.lora.name);
    } catch (err) {
      this.releaseSlot(e, ctx);
      throw err;
    }
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
      const ahead = this.d.hashAhead?.(ctx.view, ctx.pr.workBegan ?? ctx.started, ctx);
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
          acquire: () => this.claims.standing(ctx),
          release: (e) => this.releaseSlot(e, ctx),
          fail: (e) => this.fail(ctx, e),
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
        let engine: Upstream;
        try {
          const got = ctx.repicked ?? this.acquire(ctx);
          ctx.repicked = undefined;
          engine = got instanceof Promise ? await got : got;
          if (ctx.view.lora) await this.ensureAdapter(ctx, engine);
        } catch (err) {
          if (ctx.clientGone) return;
          if (ctx.totalTimedOut) throw totalTimeoutError();
          if (ctx.migrating !== undefined && err instanceof HttpError)
            return this.migrations.stranded(ctx, err);
          // every engine tried already: report what the last one said rather than "unavailable"
          if (last && err instanceof HttpError && err.status === 503) return this.relayFailure(ctx, last);
          if (err instanceof HttpError && err.status === 429)
            this.d.metrics.rejected.inc({ reason: err instanceof OverSloError ? "slo" : "queue" });
          throw err;
        }
        ctx.engineUrl = engine.url;
        ctx.attempts = attempt;
        if (!ctx.pr.stream) this.countUnstreamed(ctx, engine);
        // the debug header names the engine a stream started on, not the one it moved to
        if (ctx.migrating === undefined)
          this.d.onRouted?.(ctx.req, ctx.res, ctx.view, engine.url, ctx.echoId);
        headers.length = baseHeaders;
        const auth = upstreamAuthorization(engine.spec, cfg, ctx.pr.clientAuthorization);
        if (auth !== undefined) headers.push("authorization", auth);
        if (ctx.trace) headers.push("traceparent", ctx.trace.attempt(engine.url, attempt).traceparent());
        let outcome;
        const attemptFrom = performance.now();
        const att = new Attempt(this, ctx, engine, cfg);
        try {
          outcome = await att.start(headers, this.attemptsOn(engine));
        } finally {
          // taken back (a router worker's refused pick): its slot is freed already; otherwise a claim
          // whose word has not come goes with the slot. The policy hears of the end first, as the fleet
          // simulator tells it: freeing the slot lets a waiter be decided, and a policy that holds room
          // for the request (vllm-router-program) must have let it go by then
          this.countUnstreamed(ctx, undefined);
          if (outcome?.kind !== "unclaimed") {
            try {
              this.attemptEnded(ctx, engine, outcome);
            } finally {
              this.releaseSlot(engine, ctx, att.answered);
            }
          }
        }
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
            ctx.poisoned = await this.strike(ctx, engine, attemptFrom, cfg);
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
          if (await this.strike(ctx, engine, attemptFrom, cfg)) return this.poisoned(ctx, last);
          if (ctx.clientGone) return;
        }
        if (ctx.totalTimedOut) throw totalTimeoutError();
        if (tries >= maxAttempts) return this.relayFailure(ctx, last);
        // a continuation is a migration's, bounded by migration.maxPerRequest, not the retry budget
        if (ctx.migrating === undefined && !this.d.budget.tryRetry()) {
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

  /**
   * An engine failed while holding the request (poison.ts): true when the strikes that stand reach
   * retry.poisonAfter. Only then does it wait the grace period for the engine's other requests and
   * probes to show whether it broke under everyone.
   */
  private async strike(ctx: RequestContext, e: Upstream, from: number, cfg: RouterConfig): Promise<boolean> {
    const poisonAfter = cfg.retry.poisonAfter;
    if (poisonAfter <= 0) return false;
    const strikes = (ctx.strikes ??= []);
    const at = performance.now();
    addStrike(strikes, { marks: e.failures, from, at });
    const lookback = cfg.health.interval;
    const grace = cfg.health.interval + cfg.health.timeout;
    ctx.inFlightFailures = standingStrikes(strikes, ctx.serial, lookback, grace);
    if (ctx.inFlightFailures < poisonAfter) return false;
    await new Promise((r) => setTimeout(r, grace));
    ctx.inFlightFailures = standingStrikes(strikes, ctx.serial, lookback, grace);
    return ctx.inFlightFailures >= poisonAfter;
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
      h.push("content-length", String(last.body.length), "x-request-id", ctx.echoId);
      res.writeHead(last.status, h);
      res.end(last.body);
      return;
    }
    // the engine holding a stored response cannot be reached: for the client the response is gone
    if (ctx.onlyConnectFailures && ctx.pr.pin) return this.fail(ctx, responseNotFound(ctx.pr.pin.id));
    if (ctx.onlyConnectFailures) {
      // nothing reached an engine: the fleet is down or unreachable, which is what 503 says
      const tried = ctx.attempts === 1 ? "its engine" : `any of the ${ctx.attempts} engines tried`;
      return this.fail(
        ctx,
        new HttpError(
          503,
          `no engine serving the model \`${ctx.pr.model}\` could be reached (${tried}; last: ${last.reason}); retry later`,
          null,
          { "retry-after": "1" },
        ),
      );
    }
    this.fail(ctx, new HttpError(last.status || 502, `upstream engine failed: ${last.reason}`));
  }

  /** The request broke (or met broken) engines while they held it, too often to try another. */
  private poisoned(ctx: RequestContext, last: RetryOutcome): void {
    const n = ctx.inFlightFailures;
    this.d.metrics.poisoned.inc({ model: ctx.pr.model });
    log.warn(
      { requestId: ctx.requestId, model: ctx.pr.model, engines: n, last: last.reason },
      "request not retried: engines failed while serving it (possible poison request)",
    );
    this.fail(
      ctx,
      new HttpError(
        502,
        `the request was not retried: ${n} engines failed while serving it (last: ${last.reason}); ` +
          "it may be what makes them fail",
        null,
        // the OpenAI clients honour this and do not retry on their own
        { "x-should-retry": "false" },
      ),
    );
  }
}

/** hashing ahead gave up for a cancelled request: what it was cancelled by is answered next */
function cancelledAhead(err: unknown): void {
  if (!(err instanceof WorkCancelled)) throw err;
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
