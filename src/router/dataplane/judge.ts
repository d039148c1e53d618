// Attempt-loop step: judge (attempt-loop.ts). What an attempt's end means for the request: a refused
// pick is tried again, not counted; a stream that broke off moves to another engine (migration-flow.ts);
// a failure fails over while nothing reached the client, within `retry.maxAttempts` and the retry
// budget, unless engines failed while holding the request on `retry.poisonAfter` of them (poison.ts).
import type { RetryBudget } from "../request/admission.js";
import type { RouterConfig } from "../config/config.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { MigrateOutcome } from "../migration/rules.js";
import { totalTimeoutError } from "./attempt-outcome.js";
import { answerFailure, answerPoisoned } from "./error-answers.js";
import { strike } from "./poison.js";
import type { MigratingRequest } from "./migration-flow.js";
import type { RequestContext } from "./request-context.js";
import type { Round } from "./prepare.js";
import type { Tried } from "./try-engine.js";

/** What judging needs: the retry budget, where a broken stream goes, the metrics. */
export interface JudgeNeeds {
  budget: Pick<RetryBudget, "tryRetry">;
  migrations: { onBreak(ctx: MigratingRequest, o: MigrateOutcome, cfg: RouterConfig): boolean };
  metrics: RouterMetrics;
}

export class Judge {
  constructor(private readonly d: JudgeNeeds) {}

  /**
   * True: another attempt follows; false: the request is answered (or its client gone). A promise only
   * for an attempt that did not end the request: an answer relayed ends it in the same turn.
   */
  run(
    ctx: RequestContext,
    engine: EngineRecord,
    tried: Tried,
    round: Round,
    cfg: RouterConfig,
  ): boolean | Promise<boolean> {
    const kind = tried.outcome.kind;
    if (kind === "unclaimed" || kind === "total-timeout" || kind === "retry" || kind === "migrate")
      return this.next(ctx, engine, tried, round, cfg);
    return false;
  }

  private async next(
    ctx: RequestContext,
    engine: EngineRecord,
    tried: Tried,
    round: Round,
    cfg: RouterConfig,
  ): Promise<boolean> {
    const { outcome, from } = tried;
    if (outcome.kind === "unclaimed") {
      // not a failure of the engine's: the next attempt is picked already (ctx.repicked)
      ctx.trace?.attemptEnded(0, "pick refused by the router group");
      round.attempt--;
      round.tries--;
      return true;
    }
    if (outcome.kind === "total-timeout") throw totalTimeoutError();
    if (outcome.kind === "retry" || (outcome.kind === "migrate" && outcome.cause === "in-flight"))
      engine.failures.mark(ctx.serial, performance.now());
    if (outcome.kind === "migrate") {
      ctx.trace?.attemptEnded(200, outcome.detail);
      ctx.exclude(engine.url);
      if (outcome.cause === "in-flight") {
        ctx.poisoned = await strike(ctx, engine.failures, from, cfg.retry.poisonAfter, cfg.health);
        if (ctx.clientGone) return false;
      }
      if (!this.d.migrations.onBreak(ctx, outcome, cfg)) return false;
      round.last = undefined;
      round.tries = 0;
      return true;
    }
    if (outcome.kind !== "retry") return false;
    ctx.trace?.attemptEnded(outcome.status, outcome.reason);
    const last = (round.last = outcome);
    ctx.exclude(engine.url);
    if (outcome.cause !== "connect") ctx.onlyConnectFailures = false;
    if (outcome.cause === "in-flight") {
      if (await strike(ctx, engine.failures, from, cfg.retry.poisonAfter, cfg.health)) {
        answerPoisoned(ctx, last, this.d.metrics);
        return false;
      }
      if (ctx.clientGone) return false;
    }
    if (ctx.totalTimedOut) throw totalTimeoutError();
    if (round.tries >= round.maxAttempts) {
      answerFailure(ctx, last);
      return false;
    }
    // a continuation is a migration's, bounded by migration.maxPerRequest, not the retry budget
    if (ctx.migrating === undefined && !this.d.budget.tryRetry()) {
      this.d.metrics.rejected.inc({ reason: "retry_budget" });
      answerFailure(ctx, last);
      return false;
    }
    this.d.metrics.retries.inc({ model: ctx.pr.model, reason: outcome.reason });
    return true;
  }
}
