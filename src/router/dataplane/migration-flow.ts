// What becomes of a request whose stream breaks off mid-answer, for the data plane (attempt-loop.ts): the
// plan made when it arrives (may it move at all? the ledger that keeps what it delivers, the body
// asking the engine for token ids), and at a break the decision — continue it on another engine with
// the request ../migration/rules.ts builds (from the exact token ids, as a completion), end it (the
// answer was complete), or end it with an error event that says why it could not move (`no_token_ids`
// when the engine gave no ids to continue a greedy answer from) — counted in switchyard_migrations_total, timed in
// switchyard_migration_seconds, logged and traced.
import type { Readable } from "node:stream";
import { HttpError } from "../../http/errors.js";
import { logger } from "../../obs/log.js";
import type { RequestView } from "../../routing/index.js";
import { endStreamWithError } from "../../http/errors.js";
import { DONE_EVENT } from "../../protocol/sse.js";
import { sendAnswer, type AttemptContext } from "./attempt-context.js";
import type { RouterConfig } from "../config/config.js";
import type { DeadlineQueue, OwnedDeadline } from "./deadlines.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import { MigrationLedger } from "../migration/ledger.js";
import {
  continuation,
  firstBody,
  planMigration,
  type BreakReason,
  type MigrateOutcome,
  type MigrationPlan,
} from "../migration/rules.js";

const log = logger("router.migration");

/** What migration reads and updates of a request (request-context.ts's RequestContext). */
export interface MigratingRequest extends AttemptContext {
  /** what routing reads; a continuation gets a new one */
  view: RequestView;
  upstreamBody: Buffer | Readable;
  migration: MigrationPlan | undefined;
  ledger: MigrationLedger | undefined;
  migrationRefusal: string | undefined;
  /** between a break and the continuation's first byte: why it broke, what happened, when */
  migrating: BreakReason | undefined;
  migrationDetail: string;
  migratingSince: number;
  /** engines that failed for it alone while holding it (retry.poisonAfter; poison.ts) */
  inFlightFailures: number;
  /** those reached retry.poisonAfter: judged by the data plane before the break comes here */
  poisoned: boolean;
  readonly engineUrl: string;
  readonly keepAlive: OwnedDeadline<number>;
}

export interface MigrationDeps {
  metrics: RouterMetrics;
  deadlines: DeadlineQueue;
  /** answers with an error (a JSON error before anything was sent, an SSE error event after) */
  fail: (ctx: MigratingRequest, e: HttpError) => void;
}

export class Migrations {
  constructor(private readonly d: MigrationDeps) {}

  /** A stream that may migrate gets its plan, ledger and the body asking for token ids. */
  plan(ctx: MigratingRequest, nonStreaming: boolean): void {
    const path = ctx.pr.path;
    const q = path.indexOf("?");
    const plan = planMigration(q < 0 ? path : path.slice(0, q), ctx.pr, nonStreaming);
    if (plan === undefined) return;
    if (typeof plan === "string") {
      ctx.migrationRefusal = plan;
      return;
    }
    ctx.migration = plan;
    ctx.ledger = new MigrationLedger(plan.kind, !plan.clientWantsIds, plan.buffered);
    ctx.upstreamBody = firstBody(ctx.pr.body as Buffer, plan);
  }

  /** A continuation relayed its first byte: the move is done (counted, timed, traced). */
  continued(ctx: MigratingRequest): void {
    const reason = ctx.migrating;
    if (reason === undefined) return;
    ctx.migrating = undefined;
    this.d.deadlines.disarm(ctx.keepAlive);
    const seconds = (performance.now() - ctx.migratingSince) / 1000;
    this.d.metrics.migrationGap.child(ctx.pr.model).observe(seconds);
    this.d.metrics.countMigration(ctx.pr.model, reason, "continued");
    ctx.trace?.migrated(ctx.engineUrl, reason, seconds);
  }

  /** A stream without a plan broke off: counted when it is one that could not move. */
  brokeOff(ctx: MigratingRequest, reason: BreakReason): void {
    if (ctx.migrationRefusal === undefined) return;
    this.d.metrics.countMigration(ctx.pr.model, reason, "not_migratable");
  }

  /**
   * A stream that may migrate broke off. True: it continues on another engine (the attempts loop goes
   * on with the continuation). False: it ended here — by the router, when nothing was left to
   * generate, or with an error event saying why it could not continue.
   */
  onBreak(ctx: MigratingRequest, o: MigrateOutcome, cfg: RouterConfig): boolean {
    const ledger = ctx.ledger!;
    const plan = ctx.migration!;
    const model = ctx.pr.model;
    const m = this.d.metrics;
    // the answer was complete and the engine failed before its [DONE]: the router writes the end
    if (ledger.finishReason !== null) {
      if (plan.buffered) {
        ledger.finish(ledger.finishReason);
        sendAnswer(ctx);
      } else this.endStream(ctx, ledger.closingEvents(null, plan.includeUsage && !ledger.usageSent));
      m.countMigration(model, o.reason, "ended");
      return false;
    }
    let refusal = ledger.blocked;
    let outcome = "not_migratable";
    if (refusal === undefined && ledger.migrations >= cfg.migration.maxPerRequest) {
      refusal = `it moved ${ledger.migrations} times already (migration.maxPerRequest)`;
      outcome = "limit";
    }
    if (refusal === undefined && o.cause === "in-flight" && ctx.poisoned) {
      refusal = `${ctx.inFlightFailures} engines failed while serving it; it may be what makes them fail`;
      outcome = "poisoned";
      m.poisoned.inc({ model });
    }
    const next = refusal === undefined ? continuation(plan, ledger) : undefined;
    if (next?.kind === "end") {
      if (plan.buffered) {
        ledger.finish(next.finish);
        sendAnswer(ctx);
      } else this.endStream(ctx, ledger.closingEvents(next.finish, plan.includeUsage));
      m.countMigration(model, o.reason, "ended");
      return false;
    }
    if (next?.kind === "refused") {
      refusal = next.why;
      outcome = next.outcome;
    }
    if (next === undefined || next.kind !== "request") {
      m.countMigration(model, o.reason, outcome);
      log.warn(
        { requestId: ctx.requestId, model, engine: ctx.engineUrl, reason: o.reason, why: refusal },
        "stream broke off and cannot migrate",
      );
      const held = ledger.heldError;
      const status = o.reason === "idle_timeout" ? 504 : 502;
      const message = `${o.detail}; the stream could not move to another engine: ${refusal ?? "no continuation"}`;
      // a JSON answer: an OpenAI error; a stream: the engine's own error event when it sent one, else
      // what happened and why it did not move
      if (plan.buffered) this.d.fail(ctx, new HttpError(held?.status ?? status, held?.message ?? message));
      else if (held) {
        ctx.status = 502;
        this.endStream(ctx, held.event + DONE_EVENT);
      } else {
        ctx.status = 502;
        endStreamWithError(ctx.res, status, message);
      }
      return false;
    }
    ledger.beginContinuation(next.asTokens);
    ctx.upstreamBody = next.body;
    const v = ctx.view;
    // a new view: routing memos (a prepared prompt) belong to the request as it was
    ctx.view = {
      model: v.model,
      seq: v.seq,
      sessionKey: v.sessionKey,
      prompt: next.prompt,
      messages: next.messages,
      body: next.request,
      exclude: v.exclude,
    };
    ctx.migrating = o.reason;
    ctx.migrationDetail = o.detail;
    ctx.migratingSince = performance.now();
    if (cfg.timeouts.keepAlive > 0 && ctx.pr.stream)
      this.d.deadlines.arm(ctx.keepAlive, cfg.timeouts.keepAlive);
    log.info(
      {
        requestId: ctx.requestId,
        model,
        engine: ctx.engineUrl,
        reason: o.reason,
        tokens: ledger.tokens,
        migration: ledger.migrations,
      },
      "stream moving to another engine",
    );
    return true;
  }

  /** A stream that broke off found no engine to continue on (none other, or all busy past the queue). */
  stranded(ctx: MigratingRequest, err: HttpError): void {
    this.d.metrics.countMigration(ctx.pr.model, ctx.migrating!, "no_engine");
    ctx.migrating = undefined;
    const held = ctx.ledger?.heldError;
    const message = `${ctx.migrationDetail}; the stream could not move to another engine: ${err.message}`;
    if (ctx.migration?.buffered)
      return this.d.fail(ctx, new HttpError(held?.status ?? 502, held?.message ?? message));
    ctx.status = 502;
    if (held) return this.endStream(ctx, held.event + DONE_EVENT);
    endStreamWithError(ctx.res, 502, message);
  }

  /** Writes the router's own end of a stream (through the tenant's usage accounting). */
  private endStream(ctx: MigratingRequest, text: string): void {
    const res = ctx.res;
    if (res.writableEnded || res.destroyed) return;
    let bytes = Buffer.from(text);
    ctx.lastChunk = bytes;
    if (ctx.pr.tenant) bytes = Buffer.concat([ctx.pr.tenant.onBody(bytes, true), ctx.pr.tenant.flush()]);
    res.end(bytes);
  }
}
