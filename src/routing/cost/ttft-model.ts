// The predictive cost for the cache-aware policies (`prefix`, `kv`, `hybrid`, `predictive`;
// plugins/cache-aware/): what a prompt sent to each candidate now would cost in time: its predicted time to
// first token there, from the engine's timing (timing.ts), plus the work a miss adds to the fleet (the
// prompts its extra prefill holds up, evicted work, level decode batches, paused sessions' KV pushed out,
// a session's decode). Each term, with its reasons: docs/routing.md#how-a-request-is-scored; the
// measurements that set them: docs/benchmarks.md.
import type { CachePrediction } from "../policy/cache-oracle.js";
import type { EngineView, RequestView } from "../policy/views.js";
import { busyOf, othersQueuedOf, stepResidualMs, waitingOf } from "./engine-load.js";
import type { PrefillLedger } from "./prefill-ledger.js";
import { LEARNED_DEFAULT_TOKENS_PER_S, type EngineTiming } from "./timing.js";
import type { SloOptions } from "./slo.js";
import { HeldContexts } from "../sessions/held-contexts.js";
import type { LateBindingOptions } from "./late-binding.js";

export interface PredictiveOptions {
  /** each engine's timing for a model; undefined (or none given): a fixed default speed */
  timing?: (engine: EngineView, model: string) => EngineTiming | undefined;
  /** the extra fleet work of a miss, as a fraction of its prefill time (0 = TTFT alone) */
  missWeight?: number;
  /**
   * the miss weight grows with the fleet's backlog (1 + the fewest prompts queued on any engine): once no
   * engine is free, a miss's extra prefill holds up the prompts that queue behind it; false: the weight
   * alone (comparisons)
   */
  queueScaledMiss?: boolean;
  /**
   * a miss pushes out only what does not fit e's spare room (its KV capacity less what its KV events say
   * it holds, the prompts queued ahead and the fleet's mean room), but for a session leaving its home;
   * false, or no events: a miss pushes out its own size (comparisons)
   */
  roomAwareMiss?: boolean;
  /** seconds of cost per request busy on the engine (decode batch balance) */
  busyWeightS?: number;
  /** TTFT SLOs (the predictive policy admits by them): a default and per-model values */
  slo?: SloOptions;
  /**
   * price the paused sessions' contexts a placement would evict (sessions/held-contexts.ts; requests need a
   * session key); false: the cost without that term (comparisons)
   */
  pausedSessions?: boolean;
  /**
   * price each candidate's decode (the steps an answer shares with its batch), for callers that report
   * completions; false: the cost without that term (comparisons)
   */
  decode?: boolean;
  /**
   * the caller reports every request's completion (Policy.onDone): a session's context is paused from its
   * turn's end (else from its first token), and answers' lengths are learned for the decode term (else
   * it is left out: a client's max_tokens alone is often far above what it gets)
   */
  reportsCompletions?: boolean;
  /**
   * late binding (late-binding.ts): how many of this router's prompts may await a first token on an engine
   * before the next one picked for it waits in the router, the longest hold, and the picks' cached share
   * below which nothing is held; unset keys take LATE_BINDING_DEFAULTS, and `queuedPrompts: 0` binds every
   * request at once
   */
  lateBinding?: Partial<LateBindingOptions> | undefined;
}

export const PREDICTIVE_DEFAULTS = {
  missWeight: 1,
  queueScaledMiss: true,
  roomAwareMiss: true,
  busyWeightS: 0.002,
  pausedSessions: true,
  decode: true,
  reportsCompletions: false,
};

/**
 * Blocks (of CachePrediction.blocks) by which a prefix shared with a prompt queued on an engine must
 * exceed what any engine holds before it counts. The blocks are the approximate index's 64 characters,
 * whose token estimate wanders around the exact count (a 1,000-token system prompt every engine holds
 * comes out at 996–1,017); credited as it comes, that noise would draw requests to the engines with
 * prompts queued (docs/benchmarks.md, the cost model's choices). A prefix being computed ahead is
 * thousands of tokens beyond it.
 */
const QUEUED_PREFIX_SLACK_BLOCKS = 4;

/** tokens whose prefill time gives an engine's current prefill rate (one full step of a large budget) */
const RATE_PROBE_TOKENS = 8192;

/** seconds added to the cost of an engine predicted over the request's TTFT SLO: it loses to any under it */
const OVER_SLO_PENALTY_S = 1e6;

/** weight of an engine's free KV share in its score: a tie-break between otherwise equal engines */
const KV_FREE_TIE_BREAK = 1e-6;

/** the speed assumed for an engine with no timing: a fixed rate, no decode term */
export const DEFAULT_TIMING: EngineTiming = {
  kvCapacityTokens: 0,
  stepSeconds: () => 0,
  prefillSeconds: (tokens) => (tokens > 0 ? tokens / LEARNED_DEFAULT_TOKENS_PER_S : 0),
};

type ResolvedOptions = Required<Omit<PredictiveOptions, "timing" | "slo" | "lateBinding">> &
  PredictiveOptions;

/** What pricing one candidate reads of the whole fleet, gathered once per decision. */
interface FleetFigures {
  /** per candidate: its timing for the request's model */
  timings: EngineTiming[];
  /** per candidate: requests in its decode batch (busy less those awaiting a first token) */
  decodingRequests: Float64Array;
  /** per candidate: KV tokens in use (the scraped usage times the capacity) */
  kvTokensInUse: Float64Array;
  /** per candidate: its cache's empty room, tokens, where its KV events say what it holds (else NaN) */
  emptyRoomTokens: Float64Array;
  /** the longest prefix any candidate holds: a prompt queued ahead is evidence of more only beyond it */
  longestCachedPrefix: number;
  meanDecodingRequests: number;
  meanKvTokensInUse: number;
  /** the mean room of the candidates whose KV events say what their caches hold */
  meanEmptyRoomTokens: number;
  /** the fewest prompts queued on any candidate (the router's own and other clients'): the fleet's backlog */
  fewestQueuedPrompts: number;
}

/** KV tokens an engine's running requests hold: its scraped usage (clamped to 0..1) times the capacity. */
function kvTokensInUseOf(engine: EngineView, timing: EngineTiming): number {
  return Math.min(1, Math.max(0, engine.kvUsage)) * timing.kvCapacityTokens;
}

function gatherFleetFigures(
  options: ResolvedOptions,
  req: RequestView,
  engines: readonly EngineView[],
  prediction: CachePrediction,
  now: number | undefined,
): FleetFigures {
  const count = engines.length;
  const figures: FleetFigures = {
    timings: new Array<EngineTiming>(count),
    decodingRequests: new Float64Array(count),
    kvTokensInUse: new Float64Array(count),
    emptyRoomTokens: new Float64Array(count),
    longestCachedPrefix: 0,
    meanDecodingRequests: 0,
    meanKvTokensInUse: 0,
    meanEmptyRoomTokens: 0,
    fewestQueuedPrompts: Infinity,
  };
  let roomKnown = 0;
  for (let i = 0; i < count; i++) {
    const engine = engines[i]!;
    figures.longestCachedPrefix = Math.max(figures.longestCachedPrefix, prediction.cachedTokens[i]!);
    const ownAwaiting = engine.awaitingFirstToken;
    figures.fewestQueuedPrompts = Math.min(
      figures.fewestQueuedPrompts,
      ownAwaiting !== undefined ? ownAwaiting + othersQueuedOf(engine, now) : waitingOf(engine, now),
    );
    const timing = (figures.timings[i] = options.timing?.(engine, req.model) ?? DEFAULT_TIMING);
    figures.decodingRequests[i] = Math.max(
      0,
      busyOf(engine, now) - (engine.awaitingFirstToken ?? waitingOf(engine, now)),
    );
    figures.kvTokensInUse[i] = kvTokensInUseOf(engine, timing);
    figures.meanDecodingRequests += figures.decodingRequests[i]! / count;
    figures.meanKvTokensInUse += figures.kvTokensInUse[i]! / count;
    const heldByEvents = prediction.heldTokens?.[i] ?? NaN;
    figures.emptyRoomTokens[i] =
      timing.kvCapacityTokens > 0
        ? Math.max(0, timing.kvCapacityTokens - Math.max(heldByEvents, figures.kvTokensInUse[i]!))
        : NaN;
    if (!Number.isNaN(figures.emptyRoomTokens[i]!)) {
      figures.meanEmptyRoomTokens += figures.emptyRoomTokens[i]!;
      roomKnown++;
    }
  }
  if (roomKnown > 0) figures.meanEmptyRoomTokens /= roomKnown;
  return figures;
}

/** what one scoring shares across its candidates (TtftModel.score → costOn) */
interface ScoreContext {
  engines: readonly EngineView[];
  prediction: CachePrediction;
  now: number | undefined;
  sloMs: number | undefined;
  uncached: Float64Array;
  ttftMs: Float64Array;
  figures: FleetFigures;
  outputTokens: number;
  sessionKey: string | undefined;
  homes: Uint8Array | null;
  /** the queueing part of a miss's price */
  queueWeight: number;
}

/**
 * Per candidate, 1 where the request's session has a context (its home): a move elsewhere is priced as a
 * full miss. null when no candidate is home, or the request names no session, or contexts are not kept.
 */
function sessionHomes(
  held: HeldContexts | null,
  sessionKey: string | undefined,
  engines: readonly EngineView[],
): Uint8Array | null {
  if (!held || sessionKey === undefined) return null;
  const homes = new Uint8Array(engines.length);
  let homed = false;
  for (let i = 0; i < engines.length; i++) {
    homes[i] = held.holds(sessionKey, engines[i]!.id) ? 1 : 0;
    homed ||= homes[i] === 1;
  }
  return homed ? homes : null;
}

/** the engine's prefill rate now, tokens per ms: one large step's tokens over its time (undefined: none) */
function prefillTokensPerMs(timing: EngineTiming, decoding: number, kvTokens: number): number | undefined {
  const probeSeconds = timing.prefillSeconds(RATE_PROBE_TOKENS, 0, decoding, kvTokens);
  return probeSeconds > 0 ? RATE_PROBE_TOKENS / (probeSeconds * 1000) : undefined;
}

/**
 * Seconds to the first token: a prompt queued behind `aheadTokens` of others' prefill starts when they
 * are through; else when the engine's current step ends. A tier load adds its time either way.
 */
function ttftSeconds(
  engine: EngineView,
  timing: EngineTiming,
  now: number | undefined,
  aheadTokens: number,
  uncachedTokens: number,
  creditedTokens: number,
  decoding: number,
  kvTokens: number,
  tierLoadSeconds: number,
  ownPrefillSeconds: number,
): number {
  return aheadTokens > 0
    ? timing.prefillSeconds(aheadTokens + uncachedTokens, creditedTokens, decoding, kvTokens) +
        tierLoadSeconds
    : stepResidualMs(engine, now, timing.stepSeconds(decoding, kvTokens) * 1000) / 1000 + ownPrefillSeconds;
}

/**
 * Seconds of prefill worth of cached work the prompt's new blocks (computed or loaded) push out of the
 * engine's cache: all of them, unless (room-aware) the engine has spare room beyond the fleet's mean and
 * the request is not a session leaving its home, when only what does not fit there.
 */
function pushedOutSeconds(
  options: ResolvedOptions,
  timing: EngineTiming,
  newTokens: number,
  uncachedTokens: number,
  cachedTokens: number,
  ownPrefillSeconds: number,
  emptyRoomTokens: number,
  aheadTokens: number,
  meanEmptyRoomTokens: number,
  leavingHome: boolean,
  decoding: number,
  kvTokens: number,
): number {
  const pushed =
    newTokens > uncachedTokens
      ? timing.prefillSeconds(newTokens, cachedTokens, decoding, kvTokens)
      : ownPrefillSeconds;
  if (!options.roomAwareMiss || leavingHome || Number.isNaN(emptyRoomTokens) || !(newTokens > 0))
    return pushed;
  const spareTokens = emptyRoomTokens - aheadTokens - meanEmptyRoomTokens;
  const overflowTokens = newTokens - Math.max(0, spareTokens);
  if (overflowTokens >= newTokens) return pushed;
  return overflowTokens > 0 ? timing.prefillSeconds(overflowTokens, cachedTokens, decoding, kvTokens) : 0;
}

/**
 * Seconds a session's decode adds where it lands: its later turns follow its KV, so the placement
 * decides whose decode batches it shares, `outputTokens` steps a turn. The batch turns over while it
 * decodes (its sequences finish, new ones come, levelled by the router), so on average it sees halfway
 * between the engine's batch now and the fleet's mean.
 */
function sessionDecodeSeconds(
  timing: EngineTiming,
  outputTokens: number,
  promptTokens: number,
  decoding: number,
  kvTokens: number,
  figures: FleetFigures,
): number {
  const batch = (decoding + figures.meanDecodingRequests) / 2 + 1;
  const contextTokens = (kvTokens + figures.meanKvTokensInUse) / 2 + promptTokens + outputTokens / 2;
  return outputTokens * timing.stepSeconds(batch, contextTokens);
}

/** Per-request TTFT predictions over the candidates, with the state they need across requests. */
export class TtftModel {
  private readonly options: ResolvedOptions;
  /** mean uncached tokens of the router's picks: the size assumed for other clients' queued prompts */
  private meanUncached = 1024;
  /** the router's sessions' contexts per engine, paused or in flight (null: not priced) */
  readonly held: HeldContexts | null;
  /** tokens an answer decodes, on average (learned from completions), and completions seen */
  private meanOutput = 0;
  private decodeSamples = 0;

  constructor(
    options: PredictiveOptions,
    readonly ledger: PrefillLedger,
  ) {
    this.options = { ...PREDICTIVE_DEFAULTS, ...options };
    this.held = this.options.pausedSessions
      ? new HeldContexts({ releaseOnDone: this.options.reportsCompletions })
      : null;
  }

  /**
   * Into `out`: −cost per candidate (higher is better); into `uncached` and `ttftMs`: the prefill tokens
   * the prompt needs there and its predicted TTFT. Engines predicted over `sloMs` lose to any under it.
   */
  score(
    req: RequestView,
    engines: readonly EngineView[],
    prediction: CachePrediction,
    now: number | undefined,
    sloMs: number | undefined,
    out: Float64Array,
    uncached: Float64Array,
    ttftMs: Float64Array,
  ): void {
    const options = this.options;
    const count = engines.length;
    const figures = gatherFleetFigures(options, req, engines, prediction, now);
    const outputTokens = this.expectedOutput(req);
    const sessionKey = req.sessionKey;
    const homes = sessionHomes(this.held, sessionKey, engines);
    // the queueing part of a miss's price: the prompts its extra prefill holds up
    const queueWeight =
      options.queueScaledMiss && count > 0 ? options.missWeight * figures.fewestQueuedPrompts : 0;
    const ctx: ScoreContext = {
      engines,
      prediction,
      now,
      sloMs,
      uncached,
      ttftMs,
      figures,
      outputTokens,
      sessionKey,
      homes,
      queueWeight,
    };
    for (let i = 0; i < count; i++) out[i] = this.costOn(ctx, i);
  }

  /** −cost of engine `i` (plus the KV-free tie-break); its uncached tokens and TTFT into the context's arrays */
  private costOn(ctx: ScoreContext, i: number): number {
    const { engines, prediction, now, sloMs, uncached, ttftMs } = ctx;
    const { figures, outputTokens, sessionKey, homes, queueWeight } = ctx;
    const options = this.options;
    const promptTokens = prediction.promptTokens;
    const engine = engines[i]!;
    const timing = figures.timings[i]!;
    const busy = busyOf(engine, now);
    const decoding = figures.decodingRequests[i]!;
    const kvTokens = figures.kvTokensInUse[i]!;
    const aheadTokens = this.queuedAheadTokens(engine, now, timing, decoding, kvTokens);
    const cachedTokens = this.cachedOrComputedAhead(engine, prediction, i, figures.longestCachedPrefix);
    // a tier the engine loads from gives what it holds beyond: at its load time
    const tierTokens = prediction.tierTokens?.[i] ?? 0;
    const tierLoadSeconds = tierTokens > 0 ? (prediction.tierLoadSeconds?.[i] ?? 0) : 0;
    const creditedTokens = Math.min(promptTokens, Math.max(0, cachedTokens) + tierTokens);
    const uncachedTokens = promptTokens - creditedTokens;
    uncached[i] = uncachedTokens;
    const ownPrefillSeconds =
      timing.prefillSeconds(uncachedTokens, creditedTokens, decoding, kvTokens) + tierLoadSeconds;
    const ttft = ttftSeconds(
      engine,
      timing,
      now,
      aheadTokens,
      uncachedTokens,
      creditedTokens,
      decoding,
      kvTokens,
      tierLoadSeconds,
      ownPrefillSeconds,
    );
    ttftMs[i] = ttft * 1000;
    // the blocks the prompt adds to the engine's cache: computed, or loaded from a tier
    const newTokens =
      tierTokens > 0 ? promptTokens - Math.min(promptTokens, Math.max(0, cachedTokens)) : uncachedTokens;
    const pushedSeconds = pushedOutSeconds(
      options,
      timing,
      newTokens,
      uncachedTokens,
      Math.max(0, cachedTokens),
      ownPrefillSeconds,
      figures.emptyRoomTokens[i]!,
      aheadTokens,
      figures.meanEmptyRoomTokens,
      homes !== null && homes[i] === 0,
      decoding,
      kvTokens,
    );
    // a load stalls its step (LMCache's retrieve blocks the forward pass): the engine's decodes all wait
    const stallSeconds = tierLoadSeconds * decoding;
    const weight = engine.weight > 0 ? engine.weight : 1;
    let cost = ttft;
    cost += queueWeight * ownPrefillSeconds;
    cost += options.missWeight * (pushedSeconds + stallSeconds);
    cost += (options.busyWeightS * busy) / weight;
    if (this.held && now !== undefined)
      cost += this.pausedSessionsEvictionSeconds(
        engine,
        timing,
        newTokens,
        decoding,
        kvTokens,
        sessionKey,
        now,
      );
    if (outputTokens > 0)
      cost += sessionDecodeSeconds(timing, outputTokens, promptTokens, decoding, kvTokens, figures);
    if (sloMs !== undefined && ttft * 1000 > sloMs) cost += OVER_SLO_PENALTY_S;
    return -cost + KV_FREE_TIE_BREAK * (1 - Math.min(1, Math.max(0, engine.kvUsage)));
  }

  /**
   * Prefill tokens queued ahead of a prompt on the engine: this router's (its ledger, drained at the
   * engine's rate; else the scraped queue at the mean prompt), its router group's, and other clients'.
   */
  private queuedAheadTokens(
    engine: EngineView,
    now: number | undefined,
    timing: EngineTiming,
    decoding: number,
    kvTokens: number,
  ): number {
    const waiting = waitingOf(engine, now);
    const tokensPerMs = prefillTokensPerMs(timing, decoding, kvTokens);
    const ownTokens = this.ledger.pending(engine, now, tokensPerMs) ?? waiting * this.meanUncached;
    const othersTokens =
      engine.awaitingFirstToken !== undefined ? othersQueuedOf(engine, now) * this.meanUncached : 0;
    return ownTokens + (engine.peerPrefillTokens ?? 0) + othersTokens;
  }

  /**
   * The prompt's prefix the engine holds now, or will have computed for a prompt of the router's queued
   * ahead there that shares it (counted only beyond what any candidate holds, by the slack)
   */
  private cachedOrComputedAhead(
    engine: EngineView,
    prediction: CachePrediction,
    index: number,
    longestCachedPrefix: number,
  ): number {
    const cachedTokens = prediction.cachedTokens[index]!;
    const blocks = prediction.blocks;
    if (!blocks || engine.awaitingFirstToken === undefined) return cachedTokens;
    const computedAheadTokens = this.ledger.sharedBlocks(engine, blocks.ids) * blocks.tokensPerBlock;
    return computedAheadTokens > longestCachedPrefix + QUEUED_PREFIX_SLACK_BLOCKS * blocks.tokensPerBlock
      ? Math.max(cachedTokens, computedAheadTokens)
      : cachedTokens;
  }

  /**
   * Seconds the paused sessions' contexts this prompt would push out of the engine's KV are worth: their
   * sessions will prefill them again, a TTFT and a miss as this prompt's own are priced, if they come
   * back (sessions/held-contexts.ts weighs each by that chance)
   */
  private pausedSessionsEvictionSeconds(
    engine: EngineView,
    timing: EngineTiming,
    newTokens: number,
    decoding: number,
    kvTokens: number,
    sessionKey: string | undefined,
    now: number,
  ): number {
    const evictedTokens = this.held!.evictedTokens(
      engine.id,
      newTokens,
      timing.kvCapacityTokens,
      kvTokens,
      sessionKey,
      now,
    );
    return evictedTokens > 0
      ? (1 + this.options.missWeight) * timing.prefillSeconds(evictedTokens, 0, decoding, kvTokens)
      : 0;
  }

  /**
   * The tokens a session's turn is expected to decode, for callers that report completions: the mean
   * length of the answers they reported, at most the request's max_tokens (which stands alone until the
   * first completion); 0 when neither is known. 0 for a request with no session key: a one-off's
   * placement decides only its own decode, and the batch it would pick by (KV in use) cannot tell an
   * engine holding many paused contexts from an empty one, so without keys (which the paused-context
   * prices need) it would steer new prompts onto others' cached KV (docs/benchmarks.md, the cost
   * model's choices)
   */
  private expectedOutput(req: RequestView): number {
    if (!this.options.decode || !this.options.reportsCompletions || req.sessionKey === undefined) return 0;
    const body = req.body;
    const cap = body ? (body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens) : undefined;
    const maxTokens = typeof cap === "number" && cap > 0 ? cap : Infinity;
    const meanTokens = this.decodeSamples > 0 ? this.meanOutput : Infinity;
    const expected = Math.min(maxTokens, meanTokens);
    return Number.isFinite(expected) ? expected : 0;
  }

  /**
   * the pick: the engine's prefill queue grows by what the prompt needs there, and the request's session
   * (`req.sessionKey`) has its context there now
   */
  picked(
    req: RequestView,
    engine: EngineView,
    promptTokens: number,
    uncached: number,
    now: number | undefined,
    ids?: readonly number[],
  ): void {
    this.meanUncached += (uncached - this.meanUncached) * 0.05;
    if (engine.awaitingFirstToken !== undefined) this.ledger.add(engine, uncached, now, ids);
    if (!this.held) return;
    // any prompt's new tokens push paused contexts out of the engine's cache, keyed or not
    const timing = this.options.timing?.(engine, req.model);
    if (timing)
      this.held.placed(
        engine.id,
        uncached,
        timing.kvCapacityTokens,
        kvTokensInUseOf(engine, timing),
        req.sessionKey,
      );
    if (req.sessionKey !== undefined && now !== undefined)
      this.held.picked(req.sessionKey, engine.id, promptTokens, promptTokens - uncached, now);
  }

  /**
   * a pick that did not stand (a router group's claim answered with newer counts), or a turn that ended
   * there without its answer (Policy.onAbandoned): its turn is not in flight there
   */
  unpicked(req: RequestView, engine: EngineView, now: number | undefined): void {
    if (this.held && req.sessionKey !== undefined && now !== undefined)
      this.held.withdrawn(req.sessionKey, engine.id, now);
  }

  /** a request's first token came back from `engine` at `now` (ms) */
  firstToken(req: RequestView, engine: EngineView, now: number): void {
    if (this.held && req.sessionKey !== undefined) this.held.firstToken(req.sessionKey, engine.id, now);
  }

  /**
   * a request finished on `engine` at `now` (ms), `decodeMs` after its first token: its session is paused
   * from here until its next turn, and its decode tells how long answers are (in steps of e's batch now)
   */
  done(req: RequestView, engine: EngineView, now: number, decodeMs: number | undefined): void {
    if (this.held && req.sessionKey !== undefined) this.held.done(req.sessionKey, engine.id, now);
    if (decodeMs === undefined || decodeMs <= 0) return;
    const timing = this.options.timing?.(engine, req.model);
    if (!timing) return;
    const decoding = Math.max(1, busyOf(engine, now) - (engine.awaitingFirstToken ?? 0));
    const stepMs = timing.stepSeconds(decoding, kvTokensInUseOf(engine, timing)) * 1000;
    if (stepMs <= 0) return;
    const tokens = decodeMs / stepMs;
    this.meanOutput = this.decodeSamples === 0 ? tokens : this.meanOutput + (tokens - this.meanOutput) * 0.05;
    this.decodeSamples++;
  }
}
