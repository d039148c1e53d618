// The `predictive` policy: the time to first token each candidate would give the request, predicted
// from the engine model, and the lowest wins.
//
//   ttft(e) = prefill(queued(e) + others(e) + P − credit(e)) on e's GPU and model, at e's batch
//   cost(e) = ttft(e) + missWeight · prefill(P − credit(e)) + busyWeightS · busy(e) / weight(e)
//
// queued(e): prefill tokens of the router's requests on e with no first token yet (PrefillLedger),
// drained as e works through them at its predicted rate; others(e): the engine's queue beyond the
// router's own requests, at the router's mean prompt; P − credit(e): what e must compute for this prompt
// given the prefix it holds (the caller's CacheOracle, as for `kv`/`hybrid`). prefill(): the engine's
// timing (timing.ts): the roofline step time of its GPU and model with its decoding batch in every step,
// or learned from the engine's own metrics when its profile is unknown. missWeight prices the work a
// miss adds to the fleet, as in cache-aware.ts; busyWeightS keeps decode batches level.
//
// With a TTFT SLO (x-slo-ttft-ms, or the model's default) engines predicted over it lose to any under
// it, and when none is under it the decision is `over-slo`: the router answers 429 with a Retry-After of
// how far over the best engine is (or queues the request), instead of sending it to miss its SLO.
import type { CacheOracle, CachePrediction, EngineView, Policy, Scorer } from "./types.js";
import { RequestMemo } from "./memo.js";
import { busyOf, waitingOf } from "./load.js";
import { PrefillLedger } from "./ledger.js";
import { explainPick, type Scored } from "./cache-aware.js";
import type { EngineTiming } from "./timing.js";
import { LEARNED_DEFAULT_TOKENS_PER_S } from "./timing.js";
import { sloFor, type SloOptions } from "./slo.js";
import { PrefixHomes } from "./homes.js";

export interface PredictiveOptions {
  /** each engine's timing for a model; undefined (or none given): a default speed */
  timing?: (engine: EngineView, model: string) => EngineTiming | undefined;
  /** the extra fleet work of a miss, as a fraction of its prefill time (0 = TTFT alone) */
  missWeight?: number;
  /** seconds of cost per request busy on the engine (decode batch balance) */
  busyWeightS?: number;
  /** TTFT SLOs: a default and per-model values (a request's own header wins) */
  slo?: SloOptions;
}

export const PREDICTIVE_DEFAULTS = {
  missWeight: Number(process.env.MW ?? 1),
  busyWeightS: Number(process.env.BW ?? 0.001),
};

/** tokens whose prefill time gives an engine's current prefill rate (one full step of a large budget) */
const RATE_PROBE_TOKENS = 8192;

/** the speed assumed for an engine with no timing: a fixed rate, no decode term */
const DEFAULT_TIMING: EngineTiming = {
  kvCapacityTokens: 0,
  prefillSeconds: (tokens) => (tokens > 0 ? tokens / LEARNED_DEFAULT_TOKENS_PER_S : 0),
};

interface Predicted extends Scored {
  /** per candidate: predicted TTFT, ms */
  ttftMs: Float64Array;
  sloMs: number | undefined;
}

export function createPredictivePolicy(
  oracle: CacheOracle,
  filters: Policy["filters"],
  picker: Policy["picker"],
  options: PredictiveOptions = {},
  ledger = new PrefillLedger(),
): Policy {
  const o = { ...PREDICTIVE_DEFAULTS, ...options };
  const memo = new RequestMemo<Predicted>("predictive.scored");
  /** mean uncached tokens of the router's picks: the size assumed for other clients' queued requests */
  let meanUncached = 1024;
  let lastNow: number | undefined;
  const homes = new PrefixHomes();
  const scorer: Scorer = {
    name: "predicted-ttft",
    weight: 1,
    score(req, engines, out, fleet) {
      const now = fleet.now;
      lastNow = now;
      const pred: CachePrediction = oracle.predict(req, engines);
      const P = pred.promptTokens;
      const n = engines.length;
      const uncached = new Float64Array(n);
      const ttftMs = new Float64Array(n);
      const sloMs = sloFor(req, o.slo);
      const home = new Float64Array(n);
      homes.credit(req, engines, home);
      for (let i = 0; i < n; i++) {
        const e = engines[i]!;
        const t = o.timing?.(e, req.model) ?? DEFAULT_TIMING;
        const busy = busyOf(e, now);
        const queue = waitingOf(e, now);
        const own = e.awaitingFirstToken;
        const decoding = Math.max(0, busy - (own ?? queue));
        const kvTokens = Math.min(1, Math.max(0, e.kvUsage)) * t.kvCapacityTokens;
        const probe = t.prefillSeconds(RATE_PROBE_TOKENS, 0, decoding, kvTokens);
        const tokensPerMs = probe > 0 ? RATE_PROBE_TOKENS / (probe * 1000) : undefined;
        const queued = ledger.pending(e, now, tokensPerMs) ?? queue * meanUncached;
        const others = own !== undefined ? Math.max(0, queue - own) * meanUncached : 0;
        const credit = Math.min(P, Math.max(0, pred.cachedTokens[i]!));
        const u = P - credit;
        uncached[i] = u;
        const ttft = t.prefillSeconds(queued + others + u, credit, decoding, kvTokens);
        ttftMs[i] = ttft * 1000;
        const w = e.weight > 0 ? e.weight : 1;
        // the work a miss adds, less what a home of the prefix is worth keeping it on
        const miss = Math.max(0, u - home[i]! * P);
        let cost =
          ttft +
          o.missWeight * t.prefillSeconds(miss, credit, decoding, kvTokens) +
          (o.busyWeightS * busy) / w;
        // an engine over the SLO loses to any under it
        if (sloMs !== undefined && ttft * 1000 > sloMs) cost += 1e6;
        // KV free space as a tie-break between otherwise equal engines
        out[i] = -cost + 1e-6 * (1 - Math.min(1, Math.max(0, e.kvUsage)));
      }
      memo.set(req, { engines, pred, guarded: null, uncached, ttftMs, sloMs });
    },
  };
  return {
    name: "predictive",
    filters,
    scorers: [scorer],
    picker,
    admit(req, engine) {
      const s = memo.get(req);
      if (!s || s.sloMs === undefined) return undefined;
      const i = s.engines.indexOf(engine);
      const ttft = i >= 0 ? s.ttftMs[i]! : Infinity;
      if (ttft <= s.sloMs) return undefined;
      return { kind: "over-slo", predictedTtftMs: ttft, sloTtftMs: s.sloMs, retryAfterMs: ttft - s.sloMs };
    },
    onPicked(req, engine) {
      const s = memo.get(req);
      if (!s) return;
      const i = s.engines.indexOf(engine);
      if (i < 0) return;
      const u = s.uncached[i]!;
      if (process.env.PDBG) {
        let best = 0;
        for (let k = 0; k < s.engines.length; k++) best = Math.max(best, s.pred.cachedTokens[k]!);
        const c = s.pred.cachedTokens[i]!;
        const g = globalThis as unknown as { pdbg?: Record<string, number> };
        g.pdbg ??= {};
        const key = best === 0 ? "cold-everywhere" : c >= best ? "hit-best" : c > 0 ? "partial" : "replicate";
        g.pdbg[key] = (g.pdbg[key] ?? 0) + 1;
      }
      meanUncached += (u - meanUncached) * 0.05;
      homes.learn(req, engine, s.engines);
      if (engine.awaitingFirstToken !== undefined) ledger.add(engine, u, lastNow);
      const why = oracle.onPicked ? explainPick(s, engine) : undefined;
      if (why) oracle.onPicked!(req, engine, why.cached, why.source, why.reason);
    },
  };
}
