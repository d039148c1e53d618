// The predictive cost for the cache-aware policies (`prefix`, `kv`, `hybrid`, `predictive`;
// cache-aware.ts): what a prompt sent to each candidate now would cost in time. It is the prompt's
// predicted time to first token there, from the engine's timing (timing.ts: the roofline step time of its
// GPU and model, or learned from its metrics), plus the work a miss adds to the fleet:
//
//   ttft(e) = prefill(queued(e) + peers(e) + others(e) + P − credit(e))   when prompts are queued ahead
//           = residual(e) + prefill(P − credit(e))                   otherwise
//   cost(e) = ttft(e) + missWeight · backlog · prefill(P − credit(e)) + missWeight · prefill(pushed(e))
//           + missWeight · load(e) · decoding(e)                      a tier load stalls e's batch
//           + busyWeightS · busy(e) / weight(e)
//           + (1 + missWeight) · prefill(evicted(e))                    paused sessions' KV pushed out
//           + out · step((batch(e) + mean batch) / 2 + 1)              a session's decode
//
// queued/peers/others: the prefill queued ahead on e (this router's ledger, its group's, the rest);
// credit: the prefix e holds or will have computed for a queued prompt that shares it, and what a tier e
// loads from holds beyond that (CachePrediction.tierTokens: its CPU tier, a shared cache server), whose
// load time load(e) each prefill term above includes; backlog: the fewest prompts queued on any engine,
// since once every engine has a queue a miss's extra prefill holds up the prompts behind it; pushed:
// what does not fit e's spare room beyond the fleet's mean, since only that evicts cached work (a
// loaded prefix takes new blocks as a computed one does); evicted: paused sessions' contexts the new
// blocks push out, weighted by the chance each comes back (held-contexts.ts); the decode term places a
// session's later turns by whose batches they would share. Each term, with the measurements that set
// it: docs/routing.md.
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
   * price the paused sessions' contexts a placement would evict (held-contexts.ts; requests need a
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
 * whose token estimate wanders around the exact count: a 1,000-token system prompt every engine holds
 * (992 tokens in 16-token blocks) comes out at 996–1,017. Credited as it comes, that noise would favour
 * the engines with prompts queued (in the load-range benchmark's multi-round QA at round-robin's
 * capacity, TTFT p90 374 ms with the slack, 1,249 without); a prefix being computed ahead is thousands
 * of tokens beyond it.
 */
const QUEUED_PREFIX_SLACK_BLOCKS = 4;

/** tokens whose prefill time gives an engine's current prefill rate (one full step of a large budget) */
const RATE_PROBE_TOKENS = 8192;

/** the speed assumed for an engine with no timing: a fixed rate, no decode term */
export const DEFAULT_TIMING: EngineTiming = {
  kvCapacityTokens: 0,
  stepSeconds: () => 0,
  prefillSeconds: (tokens) => (tokens > 0 ? tokens / LEARNED_DEFAULT_TOKENS_PER_S : 0),
};

/** Per-request TTFT predictions over the candidates, with the state they need across requests. */
export class TtftModel {
  private readonly o: Required<Omit<PredictiveOptions, "timing" | "slo" | "lateBinding">> & PredictiveOptions;
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
    this.o = { ...PREDICTIVE_DEFAULTS, ...options };
    this.held = this.o.pausedSessions ? new HeldContexts({ releaseOnDone: this.o.reportsCompletions }) : null;
  }

  /**
   * Into `out`: −cost per candidate (higher is better); into `uncached` and `ttftMs`: the prefill tokens
   * the prompt needs there and its predicted TTFT. Engines predicted over `sloMs` lose to any under it.
   */
  score(
    req: RequestView,
    engines: readonly EngineView[],
    pred: CachePrediction,
    now: number | undefined,
    sloMs: number | undefined,
    out: Float64Array,
    uncached: Float64Array,
    ttftMs: Float64Array,
  ): void {
    const o = this.o;
    const P = pred.promptTokens;
    const n = engines.length;
    // per candidate: its timing, its decoding batch and the KV that batch holds
    const timings: EngineTiming[] = new Array<EngineTiming>(n);
    const decodingOf = new Float64Array(n);
    const kvOf = new Float64Array(n);
    // and its cache's empty room, where its KV events say what the cache holds (NaN: they do not)
    const roomOf = new Float64Array(n);
    // the longest prefix any candidate holds: a prompt queued ahead is evidence of more only beyond it
    let heldAnywhere = 0;
    let meanDecoding = 0;
    let meanKv = 0;
    // the mean room of the engines whose KV events say what their caches hold
    let meanRoom = 0;
    let roomKnown = 0;
    // the fleet's backlog: the fewest prompts queued on any engine (the router's own and other clients')
    let backlog = Infinity;
    for (let i = 0; i < n; i++) {
      const e = engines[i]!;
      heldAnywhere = Math.max(heldAnywhere, pred.cachedTokens[i]!);
      const own = e.awaitingFirstToken;
      backlog = Math.min(backlog, own !== undefined ? own + othersQueuedOf(e, now) : waitingOf(e, now));
      const t = (timings[i] = o.timing?.(e, req.model) ?? DEFAULT_TIMING);
      decodingOf[i] = Math.max(0, busyOf(e, now) - (e.awaitingFirstToken ?? waitingOf(e, now)));
      kvOf[i] = Math.min(1, Math.max(0, e.kvUsage)) * t.kvCapacityTokens;
      meanDecoding += decodingOf[i]! / n;
      meanKv += kvOf[i]! / n;
      const inCache = pred.heldTokens?.[i] ?? NaN;
      roomOf[i] =
        t.kvCapacityTokens > 0 ? Math.max(0, t.kvCapacityTokens - Math.max(inCache, kvOf[i]!)) : NaN;
      if (!Number.isNaN(roomOf[i]!)) {
        meanRoom += roomOf[i]!;
        roomKnown++;
      }
    }
    if (roomKnown > 0) meanRoom /= roomKnown;
    const outTokens = this.expectedOutput(req);
    // a session with a context on some candidate (its home): a move elsewhere is priced as a full miss
    const key = req.sessionKey;
    const home = this.held && key !== undefined ? new Uint8Array(n) : null;
    let homed = false;
    if (home)
      for (let i = 0; i < n; i++) {
        home[i] = this.held!.holds(key!, engines[i]!.id) ? 1 : 0;
        homed ||= home[i] === 1;
      }
    // the queueing part of a miss's price: the prompts its extra prefill holds up
    const queueWeight = o.queueScaledMiss && n > 0 ? o.missWeight * backlog : 0;
    for (let i = 0; i < n; i++) {
      const e = engines[i]!;
      const t = timings[i]!;
      const busy = busyOf(e, now);
      const queue = waitingOf(e, now);
      const own = e.awaitingFirstToken;
      const decoding = decodingOf[i]!;
      const kvTokens = kvOf[i]!;
      const probe = t.prefillSeconds(RATE_PROBE_TOKENS, 0, decoding, kvTokens);
      const tokensPerMs = probe > 0 ? RATE_PROBE_TOKENS / (probe * 1000) : undefined;
      const queued = this.ledger.pending(e, now, tokensPerMs) ?? queue * this.meanUncached;
      const others = own !== undefined ? othersQueuedOf(e, now) * this.meanUncached : 0;
      // what the engine holds now, or will have computed for a prompt queued ahead with the same prefix
      let held = pred.cachedTokens[i]!;
      const b = pred.blocks;
      if (b && own !== undefined) {
        const ahead = this.ledger.sharedBlocks(e, b.ids) * b.tokensPerBlock;
        if (ahead > heldAnywhere + QUEUED_PREFIX_SLACK_BLOCKS * b.tokensPerBlock)
          held = Math.max(held, ahead);
      }
      // a tier the engine loads from gives what it holds beyond: at its load time
      const tier = pred.tierTokens?.[i] ?? 0;
      const load = tier > 0 ? (pred.tierLoadSeconds?.[i] ?? 0) : 0;
      const credit = Math.min(P, Math.max(0, held) + tier);
      const u = P - credit;
      uncached[i] = u;
      // a prompt queued behind others starts when they are through; else when the current step ends
      const ahead = queued + (e.peerPrefillTokens ?? 0) + others;
      const prefill = t.prefillSeconds(u, credit, decoding, kvTokens) + load;
      const ttft =
        ahead > 0
          ? t.prefillSeconds(ahead + u, credit, decoding, kvTokens) + load
          : stepResidualMs(e, now, t.stepSeconds(decoding, kvTokens) * 1000) / 1000 + prefill;
      ttftMs[i] = ttft * 1000;
      const w = e.weight > 0 ? e.weight : 1;
      // what its new blocks (computed, loaded) push out of e's cache: all, unless e has room the fleet lacks
      const fresh = tier > 0 ? P - Math.min(P, Math.max(0, held)) : u;
      let pushed = fresh > u ? t.prefillSeconds(fresh, Math.max(0, held), decoding, kvTokens) : prefill;
      const moving = homed && home![i] === 0;
      if (o.roomAwareMiss && !moving && !Number.isNaN(roomOf[i]!) && fresh > 0) {
        const spare = roomOf[i]! - ahead - meanRoom;
        const over = fresh - Math.max(0, spare);
        pushed =
          over >= fresh
            ? pushed
            : over > 0
              ? t.prefillSeconds(over, Math.max(0, held), decoding, kvTokens)
              : 0;
      }
      // a load stalls its step (LMCache's retrieve blocks the forward pass): e's decodes all wait for it
      const stall = load * decoding;
      let cost = ttft + queueWeight * prefill + o.missWeight * (pushed + stall) + (o.busyWeightS * busy) / w;
      // the paused sessions' contexts this prompt would push out of e's KV: their sessions will prefill
      // them again, a TTFT and a miss as this prompt's own are priced, if they come back
      if (this.held && now !== undefined) {
        const evicted = this.held.evictedTokens(e.id, fresh, t.kvCapacityTokens, kvTokens, key, now);
        if (evicted > 0) cost += (1 + o.missWeight) * t.prefillSeconds(evicted, 0, decoding, kvTokens);
      }
      // a session's decode: its later turns follow its KV, so where it lands decides whose decode batches
      // it shares, `outTokens` steps a turn. The batch turns over while it decodes (its sequences finish,
      // new ones come, levelled by the router), so on average it sees halfway between e's batch now and
      // the fleet's mean
      if (outTokens > 0) {
        const batch = (decoding + meanDecoding) / 2 + 1;
        const kv = (kvTokens + meanKv) / 2 + P + outTokens / 2;
        cost += outTokens * t.stepSeconds(batch, kv);
      }
      // an engine over the SLO loses to any under it
      if (sloMs !== undefined && ttft * 1000 > sloMs) cost += 1e6;
      // KV free space as a tie-break between otherwise equal engines
      out[i] = -cost + 1e-6 * (1 - Math.min(1, Math.max(0, e.kvUsage)));
    }
  }

  /**
   * The tokens a session's turn is expected to decode, for callers that report completions: the mean
   * length of the answers they reported, at most the request's max_tokens (which stands alone until the
   * first completion); 0 when neither is known. 0 for a request with no session key: a one-off's
   * placement decides only its own decode, and the batch it would pick by (KV in use) cannot tell an
   * engine holding many paused contexts from an empty one, so without keys (which the paused-context
   * prices need) it would steer new prompts onto others' cached KV (multi-round QA at round-robin's
   * capacity, sessions unnamed: TTFT p90 377 ms without the term, 571 ms with it; hit rate 78% and 72%)
   */
  private expectedOutput(req: RequestView): number {
    if (!this.o.decode || !this.o.reportsCompletions || req.sessionKey === undefined) return 0;
    const body = req.body;
    const cap = body ? (body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens) : undefined;
    const max = typeof cap === "number" && cap > 0 ? cap : Infinity;
    const mean = this.decodeSamples > 0 ? this.meanOutput : Infinity;
    const out = Math.min(max, mean);
    return Number.isFinite(out) ? out : 0;
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
    const t = this.o.timing?.(engine, req.model);
    if (t) {
      const used = Math.min(1, Math.max(0, engine.kvUsage)) * t.kvCapacityTokens;
      this.held.placed(engine.id, uncached, t.kvCapacityTokens, used, req.sessionKey);
    }
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
    const t = this.o.timing?.(engine, req.model);
    if (!t) return;
    const decoding = Math.max(1, busyOf(engine, now) - (engine.awaitingFirstToken ?? 0));
    const kv = Math.min(1, Math.max(0, engine.kvUsage)) * t.kvCapacityTokens;
    const step = t.stepSeconds(decoding, kv) * 1000;
    if (step <= 0) return;
    const tokens = decodeMs / step;
    this.meanOutput = this.decodeSamples === 0 ? tokens : this.meanOutput + (tokens - this.meanOutput) * 0.05;
    this.decodeSamples++;
  }
}
