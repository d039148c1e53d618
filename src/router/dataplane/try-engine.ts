// Attempt-loop step: attempt (attempt-loop.ts). One attempt on the engine picked: the decision told
// (its debug line and header), the attempt's own headers after the request's, the bytes relayed
// (attempt.ts), and when it ends the policy told first, then the slot freed. The attempts in flight on
// each engine are kept here, for a drain or an ejection to move.
import type { IncomingMessage, ServerResponse } from "node:http";
import { LinkedList } from "../../collections/linked-list.js";
import type { Policy, RequestView } from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { upstreamAuthorization } from "../engines/upstream-rules.js";
import { Attempt } from "./attempt.js";
import type { AttemptServices } from "./attempt-context.js";
import type { Outcome } from "./attempt-outcome.js";
import type { BreakReason } from "../migration/rules.js";
import type { MigratingRequest } from "./migration-flow.js";
import type { RequestContext } from "./request-context.js";
import type { Round } from "./prepare.js";

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

/** The attempts in flight on one engine (what a drain or an ejection moves). */
export class EngineAttempts extends LinkedList<Attempt> {}

/** The attempts in flight by engine; keyed by the long-lived engine record (no per-request entry). */
export class InFlightAttempts {
  private readonly map = new WeakMap<EngineRecord, EngineAttempts>();

  on(e: EngineRecord): EngineAttempts {
    let l = this.map.get(e);
    if (!l) {
      l = new EngineAttempts();
      this.map.set(e, l);
    }
    return l;
  }
}

/** What an attempt needs: what it works with, the picks' books, the decision's listener, metrics. */
export interface TryEngineNeeds {
  services: AttemptServices;
  inFlight: InFlightAttempts;
  picks: {
    countUnstreamed(ctx: RequestContext, e: EngineRecord | undefined): void;
    releaseSlot(e: EngineRecord, ctx: RequestContext, answered?: boolean): void;
    policyFor(ctx: RequestContext): Policy;
  };
  migrations: { brokeOff(ctx: MigratingRequest, reason: BreakReason): void };
  metrics: Pick<RouterMetrics, "claimHeld">;
  routes?: RouteListener | undefined;
}

/** An attempt's end: its outcome and when it began. */
export interface Tried {
  outcome: Outcome;
  from: number;
}

export class TryEngine {
  constructor(private readonly d: TryEngineNeeds) {}

  async run(ctx: RequestContext, engine: EngineRecord, round: Round, cfg: RouterConfig): Promise<Tried> {
    ctx.engineUrl = engine.url;
    ctx.attempts = round.attempt;
    if (!ctx.pr.stream) this.d.picks.countUnstreamed(ctx, engine);
    // the debug header names the engine a stream started on, not the one it moved to
    if (ctx.migrating === undefined)
      this.d.routes?.routed(ctx.req, ctx.res, ctx.view, engine.url, ctx.echoId);
    const headers = round.headers;
    headers.length = round.baseHeaders;
    const auth = upstreamAuthorization(engine.spec, cfg, ctx.pr.clientAuthorization);
    if (auth !== undefined) headers.push("authorization", auth);
    if (ctx.trace) headers.push("traceparent", ctx.trace.attempt(engine.url, round.attempt).traceparent());
    let outcome;
    const from = performance.now();
    const att = new Attempt(this.d.services, ctx, engine, cfg);
    try {
      outcome = await att.start(headers, this.d.inFlight.on(engine));
    } finally {
      // taken back (a router worker's refused pick): its slot is freed already; otherwise a claim
      // whose word has not come goes with the slot. The policy hears of the end first, as the fleet
      // simulator tells it: freeing the slot lets a waiter be decided, and a policy that holds room
      // for the request (vllm-router-program) must have let it go by then
      this.d.picks.countUnstreamed(ctx, undefined);
      if (outcome?.kind !== "unclaimed") {
        try {
          this.ended(ctx, engine, outcome);
        } finally {
          this.d.picks.releaseSlot(engine, ctx, att.answered);
        }
      }
    }
    // read off the attempt once it ended: how long its answer was held, a broken stream to count
    if (att.heldSeconds > 0) this.d.metrics.claimHeld.child(ctx.pr.model).observe(att.heldSeconds);
    if (outcome.kind === "broke-off") this.d.migrations.brokeOff(ctx, outcome.reason);
    return { outcome, from };
  }

  /**
   * An attempt on `e` ended (a refused pick aside, which unpick handles). An answer relayed whole is a
   * completion: the policy pauses the request's session there and learns answers' lengths from it
   * (reported on the engine that finished it, so a stream that moved counts where it ended). Any other
   * end (failed, moved on, its client gone, an error relayed) tells the policy the turn is no longer in
   * flight there; a completion's timings would mislead it.
   */
  private ended(ctx: RequestContext, e: EngineRecord, outcome: Outcome | undefined): void {
    const policy = this.d.picks.policyFor(ctx);
    const elapsed = performance.now() - ctx.started;
    const ended = outcome?.kind === "done" || outcome?.kind === "broke-off";
    if (ended && ctx.status >= 200 && ctx.status < 300) policy.onDone?.(ctx.view, e.view, elapsed);
    else policy.onAbandoned?.(ctx.view, e.view, elapsed);
  }
}
