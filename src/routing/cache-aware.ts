// Cache- and load-aware scoring for the `prefix`, `kv` and `hybrid` policies. The caller's CacheOracle
// says how much of the prompt each candidate holds; this file turns that and the load into one cost
// per engine, lowest wins (the picker takes the highest score = −cost; exact ties rotate by seq).
//
//   cost(e) = (queued(e) + P − credit(e) + missWeight · (P − credit(e))) / prefillTokensPerUnit
//             + (runWeight · busy(e) + waitWeight · othersQueued(e)) / weight(e)
//
// P = prompt tokens, credit(e) = predicted cached tokens (tier credits applied by the oracle), queued(e)
// = prefill tokens of the router's requests on e that have no first token yet (PrefillLedger): the
// prompt waits for all of them, so a tenant's burst is priced for queueing behind itself on the engine
// holding its prefix and spills to a second engine (which then caches it too) once that is faster; a
// hot prefix spreads over as many engines as its load needs and no more. missWeight counts the uncached
// part once more: the work a miss adds to the fleet (an evicted prefix, a longer queue for the next).
// busy = requests on e (load.ts), othersQueued = the engine's queue beyond the router's own requests.
//
// A caller that does not count requests awaiting their first token gets the earlier rule: cost =
// (P − credit)/unit + (runWeight · busy + waitWeight · waiting)/weight, with a saturation guard (an
// engine ≥ balanceAbs busier than the least busy candidate AND > balanceRel × it gets no cache credit).
import type { CacheOracle, CachePrediction, CacheSource, EngineView, Policy, Scorer } from "./types.js";
import { RequestMemo } from "./memo.js";
import { busyOf, waitingOf } from "./load.js";
import { PrefillLedger } from "./ledger.js";

export interface CacheAwareOptions {
  /** prompt tokens whose prefill costs one load unit */
  prefillTokensPerUnit?: number;
  /** load units per request busy on the engine (running or queued) */
  runWeight?: number;
  /** extra load units per request in the engine's waiting queue (beyond the router's own) */
  waitWeight?: number;
  /** how much more than its queueing a miss costs: its uncached tokens again, times this */
  missWeight?: number;
  /** saturation guard (callers that do not count first tokens): busy − min(busy) at least this … */
  balanceAbs?: number;
  /** … and busy above this multiple of min(busy) → the engine's cache credit is ignored */
  balanceRel?: number;
}

export const CACHE_AWARE_DEFAULTS: Required<CacheAwareOptions> = {
  prefillTokensPerUnit: 2048,
  runWeight: 0.1,
  waitWeight: 0.5,
  missWeight: 1,
  balanceAbs: 4,
  balanceRel: 1.5,
};

/** What the scorer worked out for one request, kept for the pick's explanation and the ledger. */
export interface Scored {
  engines: readonly EngineView[];
  pred: CachePrediction;
  guarded: Uint8Array | null;
  /** per candidate: prefill tokens it would need (prompt less credit) */
  uncached: Float64Array;
}

/** Why an engine was picked, in the words of the routing metrics and the debug header. */
export function explainPick(
  s: Scored,
  engine: EngineView,
): { cached: number; source: CacheSource; reason: string } | undefined {
  const i = s.engines.indexOf(engine);
  if (i < 0) return undefined;
  const cached = s.pred.cachedTokens[i]!;
  const source: CacheSource = s.pred.source[i] ?? "none";
  let best = 0;
  for (let k = 0; k < s.engines.length; k++) best = Math.max(best, s.pred.cachedTokens[k]!);
  let reason: string;
  if (s.guarded?.some((g) => g === 1) && cached < best) reason = "saturation-guard";
  else if (cached > 0 && cached >= best) reason = `${source}-hit`;
  else if (best > 0) reason = "load-over-hit";
  else reason = "least-cost";
  return { cached, source, reason };
}

export function createCacheAwarePolicy(
  name: string,
  oracle: CacheOracle,
  filters: Policy["filters"],
  picker: Policy["picker"],
  options: CacheAwareOptions = {},
  ledger = new PrefillLedger(),
): Policy {
  const o = { ...CACHE_AWARE_DEFAULTS, ...options };
  // a request's candidates and prediction, for onPicked
  const last = new RequestMemo<Scored>("cache-aware.scored");
  let lastNow: number | undefined;
  const scorer: Scorer = {
    name: "cache-load",
    weight: 1,
    score(req, engines, out, fleet) {
      const now = fleet.now;
      lastNow = now;
      const pred = oracle.predict(req, engines);
      const P = pred.promptTokens;
      const uncached = new Float64Array(engines.length);
      let minBusy = Infinity;
      for (const e of engines) minBusy = Math.min(minBusy, busyOf(e, now));
      let guarded: Uint8Array | null = null;
      for (let i = 0; i < engines.length; i++) {
        const e = engines[i]!;
        const busy = busyOf(e, now);
        let credit = Math.min(P, Math.max(0, pred.cachedTokens[i]!));
        const w = e.weight > 0 ? e.weight : 1;
        const queued = ledger.pending(e, now);
        let cost: number;
        if (queued !== undefined) {
          const own = e.awaitingFirstToken!;
          const others = Math.max(0, waitingOf(e, now) - own);
          uncached[i] = P - credit;
          cost =
            (queued + (1 + o.missWeight) * (P - credit)) / o.prefillTokensPerUnit +
            (o.runWeight * busy + o.waitWeight * others) / w;
        } else {
          if (credit > 0 && busy - minBusy >= o.balanceAbs && busy > o.balanceRel * minBusy) {
            (guarded ??= new Uint8Array(engines.length))[i] = 1;
            credit = 0;
          }
          uncached[i] = P - credit;
          cost =
            (P - credit) / o.prefillTokensPerUnit +
            (o.runWeight * busy + o.waitWeight * waitingOf(e, now)) / w;
        }
        // KV free space as a tie-break between otherwise equal engines
        out[i] = -cost + 0.001 * (1 - Math.min(1, Math.max(0, e.kvUsage)));
      }
      last.set(req, { engines, pred, guarded, uncached });
    },
  };
  return {
    name,
    filters,
    scorers: [scorer],
    picker,
    onPicked(req, engine) {
      const s = last.get(req);
      if (!s) return;
      const i = s.engines.indexOf(engine);
      if (i < 0) return;
      if (engine.awaitingFirstToken !== undefined) ledger.add(engine, s.uncached[i]!, lastNow);
      const why = oracle.onPicked ? explainPick(s, engine) : undefined;
      if (why) oracle.onPicked!(req, engine, why.cached, why.source, why.reason);
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
