// What a prompt sent to each candidate now would cost in time, for the cache-aware policies (`prefix`,
// `kv`, `hybrid`, `predictive`; cache-aware.ts): its predicted time to first token there, from the engine
// model, plus what a miss adds to the fleet.
//
//   ttft(e) = prefill(queued(e) + peers(e) + others(e) + P − credit(e))   when prompts are queued ahead
//           = residual(e) + prefill(P − credit(e))                   otherwise
//   cost(e) = ttft(e) + missWeight · prefill(P − credit(e)) + busyWeightS · busy(e) / weight(e)
//
// queued(e): prefill tokens of the router's requests on e with no first token yet (PrefillLedger; the
// head, being prefilled now, drained at e's predicted rate); peers(e): the same of the other routers of
// a router group (workers, replicas), as their ledgers last reported it (each drains its own head, so a
// group drains up to one head per router too fast: a fraction of one prompt); others(e): the engine's
// queue beyond the router group's requests, at the router's mean prompt; P − credit(e): what e must
// compute for this prompt given the prefix it holds (the caller's CacheOracle) or will have computed for
// a prompt of the router's queued there that shares it (PrefillLedger.sharedBlocks). Without that, a
// group's prompts arriving while its prefix is still being prefilled see it cached nowhere (an engine
// reports blocks once computed) and scatter: under KV pressure every engine ends up caching every
// group, and they evict each other (docs/routing.md, shared prefixes under KV pressure). residual(e): what is
// left of e's current step (load.ts: an engine that just answered has just begun one). prefill(),
// residual(): the engine's timing (timing.ts): the roofline step time of its GPU and model with its
// decoding batch in every step, or learned from the engine's own metrics, or a fixed default speed.
// missWeight prices the work a miss adds (its prefill again: an evicted prefix, a longer queue for the
// next prompt): a tenant's burst stays on the engine holding its prefix until queueing behind itself
// costs more than a miss elsewhere, then replicates to a second engine, which caches it too;
// busyWeightS keeps decode batches level.
import type { CachePrediction, EngineView, RequestView } from "./types.js";
import { busyOf, othersQueuedOf, stepResidualMs, waitingOf } from "./load.js";
import type { PrefillLedger } from "./ledger.js";
import { LEARNED_DEFAULT_TOKENS_PER_S, type EngineTiming } from "./timing.js";
import type { SloOptions } from "./slo.js";

export interface PredictiveOptions {
  /** each engine's timing for a model; undefined (or none given): a fixed default speed */
  timing?: (engine: EngineView, model: string) => EngineTiming | undefined;
  /** the extra fleet work of a miss, as a fraction of its prefill time (0 = TTFT alone) */
  missWeight?: number;
  /** seconds of cost per request busy on the engine (decode batch balance) */
  busyWeightS?: number;
  /** TTFT SLOs (the predictive policy admits by them): a default and per-model values */
  slo?: SloOptions;
}

export const PREDICTIVE_DEFAULTS = { missWeight: 1, busyWeightS: 0.002 };

/**
 * Blocks (of CachePrediction.blocks) by which a prefix shared with a prompt queued on an engine must
 * exceed what any engine holds before it counts. The blocks are the approximate index's 64 characters,
 * whose token estimate wanders around the exact count: a 1,000-token system prompt every engine holds
 * (992 tokens in 16-token blocks) came out at 996–1,017. Credited as it came, that noise favoured the
 * engines with prompts queued (multi-round QA at round-robin's capacity: TTFT p90 374 → 1,249 ms in
 * the load-range benchmark); a prefix being computed ahead is thousands of tokens beyond it.
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
  private readonly o: Required<Omit<PredictiveOptions, "timing" | "slo">> & PredictiveOptions;
  /** mean uncached tokens of the router's picks: the size assumed for other clients' queued prompts */
  private meanUncached = 1024;

  constructor(
    options: PredictiveOptions,
    readonly ledger: PrefillLedger,
  ) {
    this.o = { ...PREDICTIVE_DEFAULTS, ...options };
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
    // the longest prefix any candidate holds: a prompt queued ahead is evidence of more only beyond it
    let heldAnywhere = 0;
    for (let i = 0; i < engines.length; i++) heldAnywhere = Math.max(heldAnywhere, pred.cachedTokens[i]!);
    for (let i = 0; i < engines.length; i++) {
      const e = engines[i]!;
      const t = o.timing?.(e, req.model) ?? DEFAULT_TIMING;
      const busy = busyOf(e, now);
      const queue = waitingOf(e, now);
      const own = e.awaitingFirstToken;
      const decoding = Math.max(0, busy - (own ?? queue));
      const kvTokens = Math.min(1, Math.max(0, e.kvUsage)) * t.kvCapacityTokens;
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
      const credit = Math.min(P, Math.max(0, held));
      const u = P - credit;
      uncached[i] = u;
      // a prompt queued behind others starts when they are through; else when the current step ends
      const ahead = queued + (e.peerPrefillTokens ?? 0) + others;
      const ttft =
        ahead > 0
          ? t.prefillSeconds(ahead + u, credit, decoding, kvTokens)
          : stepResidualMs(e, now, t.stepSeconds(decoding, kvTokens) * 1000) / 1000 +
            t.prefillSeconds(u, credit, decoding, kvTokens);
      ttftMs[i] = ttft * 1000;
      const w = e.weight > 0 ? e.weight : 1;
      let cost =
        ttft + o.missWeight * t.prefillSeconds(u, credit, decoding, kvTokens) + (o.busyWeightS * busy) / w;
      // an engine over the SLO loses to any under it
      if (sloMs !== undefined && ttft * 1000 > sloMs) cost += 1e6;
      // KV free space as a tie-break between otherwise equal engines
      out[i] = -cost + 1e-6 * (1 - Math.min(1, Math.max(0, e.kvUsage)));
    }
  }

  /** the pick: the engine's prefill queue grows by what the prompt needs there */
  picked(engine: EngineView, uncached: number, now: number | undefined, ids?: readonly number[]): void {
    this.meanUncached += (uncached - this.meanUncached) * 0.05;
    if (engine.awaitingFirstToken !== undefined) this.ledger.add(engine, uncached, now, ids);
  }
}
