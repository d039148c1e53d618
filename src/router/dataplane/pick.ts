// Attempt-loop step: pick (attempt-loop.ts). The engine for the next attempt: the one a router group
// decided again after refusing a pick, else the policy's (engine-picks.ts: a slot, the admission
// queue, the panic pick). A pick that fails ends the request here: its client gone, its time up, a
// moving stream stranded, the last engine's failure reported rather than "unavailable", or the refusal.
import { HttpError } from "../../http/errors.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { totalTimeoutError } from "./attempt-outcome.js";
import { OverSloError } from "./engine-picks.js";
import { answerFailure } from "./error-answers.js";
import type { MigratingRequest } from "./migration-flow.js";
import type { RequestContext } from "./request-context.js";
import type { Round } from "./prepare.js";

/** What picking needs: the picks, where a stranded stream is answered, the rejection counter. */
export interface PickNeeds {
  picks: { acquire(ctx: RequestContext): EngineRecord | Promise<EngineRecord> };
  migrations: { stranded(ctx: MigratingRequest, err: HttpError): void };
  metrics: Pick<RouterMetrics, "rejected">;
}

export class PickEngine {
  constructor(private readonly d: PickNeeds) {}

  /** Not async: a pick made at once is handed back as it is (no promise per attempt). */
  run(ctx: RequestContext): EngineRecord | Promise<EngineRecord> {
    const got = ctx.repicked ?? this.d.picks.acquire(ctx);
    ctx.repicked = undefined;
    return got;
  }

  /** The pick (or the adapter's load on it) failed: the request's answer, or the error to answer. */
  failed(ctx: RequestContext, round: Round, err: unknown): void {
    if (ctx.clientGone) return;
    if (ctx.totalTimedOut) throw totalTimeoutError();
    if (ctx.migrating !== undefined && err instanceof HttpError) return this.d.migrations.stranded(ctx, err);
    // every engine tried already: report what the last one said rather than "unavailable"
    if (round.last && err instanceof HttpError && err.status === 503) return answerFailure(ctx, round.last);
    // a tenant's adapter-load budget is its own limit (counted by the gate), not the queue's
    if (err instanceof HttpError && err.status === 429 && !err.headers["x-ratelimit-limit"])
      this.d.metrics.rejected.inc({ reason: err instanceof OverSloError ? "slo" : "queue" });
    throw err;
  }
}
