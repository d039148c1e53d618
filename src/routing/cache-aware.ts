// Cache- and load-aware scoring for the `prefix`, `kv` and `hybrid` policies. The caller's CacheOracle
// says how much of the prompt each candidate holds; this file turns that and the load into one cost
// per engine, lowest wins (the picker takes the highest score = −cost; exact ties rotate by seq).
//
//   cost(e) = (P − credit(e)) / prefillTokensPerUnit  +  (runWeight · busy(e) + waitWeight · waiting(e)) / weight(e)
//
// P = prompt tokens, credit(e) = predicted cached tokens (tier credits applied by the oracle),
// busy = max(router in-flight, scraped running + waiting), waiting = scraped queue. This is Dynamo's
// overlap-credited prefill cost (prefill work left after the cache + the work already on the engine),
// expressed in "load units". The saturation guard: an engine whose busy count exceeds the least busy
// candidate's by ≥ balanceAbs AND is > balanceRel × it gets no cache credit, so a hot prefix never
// piles onto one engine: it spills to the next, which then caches it too (SGLang's balance rule).
import type { CacheOracle, CachePrediction, CacheSource, EngineView, Policy, Scorer } from "./types.js";
import { RequestMemo } from "./memo.js";

export interface CacheAwareOptions {
  /** prompt tokens whose prefill costs one load unit */
  prefillTokensPerUnit?: number;
  /** load units per request busy on the engine (running or queued) */
  runWeight?: number;
  /** extra load units per request in the engine's waiting queue */
  waitWeight?: number;
  /** saturation guard: busy − min(busy) at least this many requests … */
  balanceAbs?: number;
  /** … and busy above this multiple of min(busy) → the engine's cache credit is ignored */
  balanceRel?: number;
}

export const CACHE_AWARE_DEFAULTS: Required<CacheAwareOptions> = {
  prefillTokensPerUnit: 2048,
  runWeight: 0.1,
  waitWeight: 0.5,
  balanceAbs: 4,
  balanceRel: 1.5,
};

/** What the scorer worked out for one request, kept for the pick's explanation. */
interface Scored {
  engines: readonly EngineView[];
  pred: CachePrediction;
  guarded: Uint8Array;
}

function busyOf(e: EngineView): number {
  const scraped = e.running + e.waiting;
  return e.inFlight > scraped ? e.inFlight : scraped;
}

export function createCacheAwarePolicy(
  name: string,
  oracle: CacheOracle,
  filters: Policy["filters"],
  picker: Policy["picker"],
  options: CacheAwareOptions = {},
): Policy {
  const o = { ...CACHE_AWARE_DEFAULTS, ...options };
  // a request's candidates and prediction, for onPicked
  const last = new RequestMemo<Scored>("cache-aware.scored");
  const scorer: Scorer = {
    name: "cache-load",
    weight: 1,
    score(req, engines, out) {
      const pred = oracle.predict(req, engines);
      let minBusy = Infinity;
      for (const e of engines) minBusy = Math.min(minBusy, busyOf(e));
      const guarded = new Uint8Array(engines.length);
      const P = pred.promptTokens;
      for (let i = 0; i < engines.length; i++) {
        const e = engines[i]!;
        const busy = busyOf(e);
        let credit = Math.min(P, Math.max(0, pred.cachedTokens[i]!));
        if (credit > 0 && busy - minBusy >= o.balanceAbs && busy > o.balanceRel * minBusy) {
          guarded[i] = 1;
          credit = 0;
        }
        const w = e.weight > 0 ? e.weight : 1;
        const cost =
          (P - credit) / o.prefillTokensPerUnit + (o.runWeight * busy + o.waitWeight * e.waiting) / w;
        // KV free space as a tie-break between otherwise equal engines
        out[i] = -cost + 0.001 * (1 - Math.min(1, Math.max(0, e.kvUsage)));
      }
      last.set(req, { engines, pred, guarded });
    },
  };
  return {
    name,
    filters,
    scorers: [scorer],
    picker,
    onPicked(req, engine) {
      const s = last.get(req);
      if (!s || !oracle.onPicked) return;
      const i = s.engines.indexOf(engine);
      if (i < 0) return;
      const cached = s.pred.cachedTokens[i]!;
      const source: CacheSource = s.pred.source[i] ?? "none";
      let best = 0;
      for (let k = 0; k < s.engines.length; k++) best = Math.max(best, s.pred.cachedTokens[k]!);
      let reason: string;
      if (s.guarded.some((g) => g === 1) && cached < best) reason = "saturation-guard";
      else if (cached > 0 && cached >= best) reason = `${source}-hit`;
      else if (best > 0) reason = "load-over-hit";
      else reason = "least-cost";
      oracle.onPicked(req, engine, cached, source, reason);
    },
  };
}

/** An oracle that knows nothing: cache-aware policies then route by load alone (fleet simulator default). */
export const NO_CACHE: CacheOracle = {
  predict(req, engines) {
    return {
      promptTokens: 0,
      cachedTokens: new Float64Array(engines.length),
      source: engines.map(() => "none" as const),
    };
  },
};
