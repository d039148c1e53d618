// The data plane's loop: one client request → attempts on engines (attempt.ts) until one answers. `run`
// calls the named steps, each its own file: prepare (hashing ahead, headers, a P/D prefill), then per
// attempt pick, ensure the adapter, attempt (try-engine.ts) and judge (failover, migration, poison,
// retry budget). The request's bytes go upstream untouched; failover only while nothing from an engine
// reached the client. Where each attempt goes is engine-picks.ts's; the answers of a request given up
// on, error-answers.ts's. What the steps need is handed in at construction (AttemptLoopDeps); nothing
// here calls back into the assembly. Hot path (docs/router.md, "Performance"): one undici `dispatch`
// per attempt, every timeout on one coarse DeadlineQueue, headers as flat arrays built once per
// request, metrics through pre-bound children.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { CacheOracle, Policy } from "../../routing/index.js";
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
import type { AttemptContext, AttemptServices } from "./attempt-context.js";
import { EnginePicks } from "./engine-picks.js";
import { answerError } from "./error-answers.js";
import { CLOSED_UNDER_REQUEST } from "./attempt-outcome.js";
import { Migrations } from "./migration-flow.js";
import type { RequestContext } from "./request-context.js";
import { RequestBooks } from "./request-books.js";
import type { RoutedRequest } from "../request/routed-request.js";
import type { AccessLog } from "../telemetry/access-log.js";
import type { ResponseAffinity } from "./response-affinity.js";
import type { IssuedIds } from "./issued-ids.js";
import { Prepare, type PromptHashing } from "./prepare.js";
import { PickEngine } from "./pick.js";
import { EnsureAdapter } from "./ensure-adapter.js";
import { InFlightAttempts, TryEngine, type EngineAttempts, type RouteListener } from "./try-engine.js";
import { Judge } from "./judge.js";

export type { PromptHashing } from "./prepare.js";
export { EngineAttempts, type RouteListener } from "./try-engine.js";

/** the data plane's logger */
const log = logger("router.dataplane");

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

export class AttemptLoop {
  /** every per-request timeout of this router, on one coarse timer */
  readonly deadlines = new DeadlineQueue();
  /** the attempts in flight on each engine */
  private readonly inFlight = new InFlightAttempts();
  /** what a stream that breaks off mid-answer becomes (migration-flow.ts) */
  private readonly migrations: Migrations;
  /** each request's opening and closing books: counted, timed, listened to, logged */
  private readonly books: RequestBooks;
  /** where each request goes, and the slots on its picks */
  private readonly picks: EnginePicks;
  /** the steps */
  private readonly prepare: Prepare;
  private readonly pick: PickEngine;
  private readonly ensureAdapter: EnsureAdapter;
  private readonly tryEngine: TryEngine;
  private readonly judge: Judge;

  constructor(private readonly d: AttemptLoopDeps) {
    this.migrations = new Migrations({ metrics: d.metrics, deadlines: this.deadlines, fail: answerError });
    this.picks = new EnginePicks(d);
    this.books = new RequestBooks(d, this.deadlines, this.migrations);
    const services: AttemptServices = {
      deadlines: this.deadlines,
      engines: d.registry,
      affinity: d.affinity,
      answered: (ctx, e, now) => this.answered(ctx, e, now),
      sentAgain: (ctx, e) => {
        d.metrics.retries.inc({ model: ctx.pr.model, reason: CLOSED_UNDER_REQUEST });
        log.debug({ requestId: ctx.requestId, engine: e.url }, CLOSED_UNDER_REQUEST);
      },
    };
    const steps = { ...d, picks: this.picks, migrations: this.migrations };
    this.prepare = new Prepare(steps);
    this.pick = new PickEngine(steps);
    this.ensureAdapter = new EnsureAdapter(steps);
    this.tryEngine = new TryEngine({ ...steps, services, inFlight: this.inFlight });
    this.judge = new Judge(steps);
  }

  /** Who confirms this data plane's picks: `make`'s claims (a router worker's), or none (a lone router). */
  useClaims(make: SlotClaimsFactory | undefined): void {
    this.picks.useClaims(make);
  }

  /** The attempts in flight on an engine now. */
  attemptsOn(e: EngineRecord): EngineAttempts {
    return this.inFlight.on(e);
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

  private async run(ctx: RequestContext, cfg: RouterConfig): Promise<void> {
    try {
      if (ctx.clientGone) return;
      this.ensureAdapter.view(ctx);
      const prepared = this.prepare.run(ctx, cfg);
      const round = prepared instanceof Promise ? await prepared : prepared;
      if (round === undefined) return;
      for (;;) {
        round.attempt++;
        round.tries++;
        let engine: EngineRecord;
        try {
          const got = this.pick.run(ctx);
          engine = got instanceof Promise ? await got : got;
          const loading = this.ensureAdapter.run(ctx, engine);
          if (loading !== undefined) await loading;
        } catch (err) {
          return this.pick.failed(ctx, round, err);
        }
        const tried = await this.tryEngine.run(ctx, engine, round, cfg);
        const again = this.judge.run(ctx, engine, tried, round, cfg);
        if (!(typeof again === "boolean" ? again : await again)) return;
      }
    } catch (err) {
      this.failed(ctx, err);
    } finally {
      this.books.close(ctx);
    }
  }

  /** The request failed in the router: its client (if still there) gets the error, a bug is logged. */
  private failed(ctx: RequestContext, err: unknown): void {
    if (ctx.clientGone) return;
    const e = err instanceof HttpError ? err : new HttpError(500, `router error: ${(err as Error).message}`);
    if (!(err instanceof HttpError)) log.error({ err, requestId: ctx.requestId }, "proxy failure");
    answerError(ctx, e);
  }
}
