// Attempt-loop step: prepare (attempt-loop.ts). Before the first pick: a long prompt's blocks hashed
// ahead by cache-aware routing, the headers every attempt sends built once, the prefill step of a
// disaggregated request run first (its decode step then goes through the loop like any request),
// and the number of tries the request may have.
import type { RequestView } from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import type { Disaggregation } from "../pd/disagg.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { firstBody } from "../migration/rules.js";
import { forwardedHeaders } from "../engines/upstream-rules.js";
import { WorkCancelled, type Cancellable } from "../../eventloop/turns.js";
import { totalTimeoutError, type RetryOutcome } from "./attempt-outcome.js";
import { answerError } from "./error-answers.js";
import type { RequestContext } from "./request-context.js";

/** Hashes a long prompt's blocks ahead of its first decision; undefined when there is nothing to wait for. */
export interface PromptHashing {
  hashAhead(view: RequestView, since: number, request: Cancellable): Promise<void> | undefined;
}

/** What preparing needs: the prompt hashing, the P/D prefill step, the slots its prefill takes. */
export interface PrepareNeeds {
  hashing?: PromptHashing | undefined;
  disagg?: Disaggregation | undefined;
  picks: {
    standing(ctx: RequestContext): EngineRecord | Promise<EngineRecord>;
    releaseSlot(e: EngineRecord, ctx: RequestContext): void;
  };
}

/** One request's loop: the headers each attempt sends, its tries, the last failure to report. */
export interface Round {
  readonly headers: string[];
  /** the headers every attempt sends; an attempt's own (authorization, traceparent) go after */
  readonly baseHeaders: number;
  readonly maxAttempts: number;
  attempt: number;
  /** tries on engines since the request (or its last migration) started */
  tries: number;
  last: RetryOutcome | undefined;
}

export class Prepare {
  constructor(private readonly d: PrepareNeeds) {}

  /**
   * The request's round; undefined when it is over already (its client left, the prefill answered). A
   * promise only where it waits (blocks hashed ahead, a prefill step): the others go on in the same turn.
   */
  run(ctx: RequestContext, cfg: RouterConfig): Round | undefined | Promise<Round | undefined> {
    const ahead = this.d.hashing?.hashAhead(ctx.view, ctx.pr.workBegan ?? ctx.started, ctx);
    return ahead === undefined ? this.round(ctx, cfg) : this.afterHashing(ctx, cfg, ahead);
  }

  private async afterHashing(
    ctx: RequestContext,
    cfg: RouterConfig,
    ahead: Promise<void>,
  ): Promise<Round | undefined> {
    // given up (WorkCancelled) only for a request whose client left or whose time ran out
    await ahead.catch(cancelledAhead);
    if (ctx.clientGone) return undefined;
    if (ctx.totalTimedOut) throw totalTimeoutError();
    return this.round(ctx, cfg);
  }

  /** the round, after the prefill step where P/D applies (the only wait here) */
  private round(ctx: RequestContext, cfg: RouterConfig): Round | Promise<Round | undefined> {
    const headers = forwardedHeaders(
      ctx.req.headers,
      ctx.requestId,
      ctx.trace !== undefined,
      ctx.req.socket.remoteAddress,
    );
    const disagg = this.d.disagg;
    return disagg?.applies(ctx.pr)
      ? this.afterPrefill(ctx, cfg, disagg, headers)
      : this.roundOf(ctx, cfg, headers, headers.length);
  }

  private async afterPrefill(
    ctx: RequestContext,
    cfg: RouterConfig,
    disagg: Disaggregation,
    headers: string[],
  ): Promise<Round | undefined> {
    const baseHeaders = headers.length;
    // P/D: the prefill step runs first; the loop then sends the decode step (body and candidates
    // rewritten) like any request, so its stream is relayed as it arrives
    const finished = await disagg.prefill(ctx, {
      headers,
      acquire: () => this.d.picks.standing(ctx),
      release: (e) => this.d.picks.releaseSlot(e, ctx),
      fail: (e) => answerError(ctx, e),
    });
    if (finished) return undefined;
    // the decode step's body (the prefill's KV transfer params), token ids asked for as before
    const plan = ctx.migration;
    const body = ctx.pr.body;
    ctx.upstreamBody = plan && Buffer.isBuffer(body) ? firstBody(body, plan) : body;
    return this.roundOf(ctx, cfg, headers, baseHeaders);
  }

  private roundOf(ctx: RequestContext, cfg: RouterConfig, headers: string[], baseHeaders: number): Round {
    const replayable = Buffer.isBuffer(ctx.pr.body);
    // a pinned request has one engine to try
    const maxAttempts = replayable && ctx.pr.pin === undefined ? cfg.retry.maxAttempts : 1;
    return { headers, baseHeaders, maxAttempts, attempt: 0, tries: 0, last: undefined };
  }
}

/** hashing ahead gave up for a cancelled request: what it was cancelled by is answered next */
function cancelledAhead(err: unknown): void {
  if (!(err instanceof WorkCancelled)) throw err;
}
