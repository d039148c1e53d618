// The cache-aware policies: `prefix`, `kv`, `hybrid` (which differ only in the caller's CacheOracle: what
// each candidate is predicted to hold) and `predictive` (hybrid's knowledge, plus admission by a TTFT SLO).
// Lowest cost wins (the picker takes the highest score = −cost; exact ties rotate by seq).
//
// When the caller counts, per engine, its requests awaiting their first token (the live router and the
// fleet simulator do), the cost is in seconds: the candidate's predicted time to first token and what a
// miss adds (cost/ttft-model.ts, TtftModel), so a prompt goes where it starts soonest, a tenant's burst on the
// engine holding its prefix is priced for queueing behind itself, and a hot prefix replicates to as many
// engines as its load needs and no more.
//
// Otherwise (a caller with scraped gauges only), the cost is in load units:
//   cost(e) = (P − credit(e)) / prefillTokensPerUnit + (runWeight · busy(e) + waitWeight · waiting(e)) / weight(e)
// with a saturation guard: an engine ≥ balanceAbs busier than the least busy candidate AND > balanceRel ×
// it gets no cache credit, so a hot prefix spills to the next engine rather than piling onto one.
import type { CacheOracle, CachePrediction, CacheSource } from "./policy/cache-oracle.js";
import type { Decision, Policy, Scorer } from "./policy/policy.js";
import type { EngineView } from "./policy/views.js";
import { RequestMemo } from "./policy/memo.js";
import { busyOf, waitingOf } from "./cost/engine-load.js";
import { PrefillLedger } from "./cost/prefill-ledger.js";
import { TtftModel, type PredictiveOptions } from "./cost/ttft-model.js";
import { LateBinding, type LateBindingOptions } from "./cost/late-binding.js";
import { RunningQuantile, sloFor } from "./cost/slo.js";

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

/** What the scorer worked out for one request, kept for the pick's explanation, the ledger, admission. */
interface Scored {
  engines: readonly EngineView[];
  pred: CachePrediction;
  guarded: Uint8Array | null;
  /** per candidate: prefill tokens it would need (prompt less credit) */
  uncached: Float64Array;
  /** per candidate: predicted TTFT, ms (seconds-based cost only) */
  ttftMs: Float64Array | null;
  sloMs: number | undefined;
  /** per candidate: the cost (−score before unitScores), for Policy.explain */
  cost: Float64Array;
  /** when it was scored, ms (the snapshot's clock) */
  at: number | undefined;
  /** when its first token came back, ms after `at` */
  firstTokenMs?: number;
}

/** Why an engine was picked, in the words of the routing metrics and the debug header. */
function explainPick(scored: Scored, i: number): { cached: number; source: CacheSource; reason: string } {
  const cached = scored.pred.cachedTokens[i]!;
  const source: CacheSource = scored.pred.source[i] ?? "none";
  let best = 0;
  for (let k = 0; k < scored.engines.length; k++) best = Math.max(best, scored.pred.cachedTokens[k]!);
  let reason: string;
  if (scored.guarded?.some((g) => g === 1) && cached < best) reason = "saturation-guard";
  else if (cached > 0 && cached >= best) reason = `${source}-hit`;
  else if (best > 0) reason = "load-over-hit";
  else reason = "least-cost";
  return { cached, source, reason };
}

/** The earlier load-unit cost, for callers that do not count first tokens (see the file's comment). */
function loadUnitCost(
  costOptions: Required<CacheAwareOptions>,
  engines: readonly EngineView[],
  pred: CachePrediction,
  now: number | undefined,
  out: Float64Array,
  uncached: Float64Array,
): Uint8Array | null {
  const promptTokens = pred.promptTokens;
  let minBusy = Infinity;
  for (const engine of engines) minBusy = Math.min(minBusy, busyOf(engine, now));
  let guarded: Uint8Array | null = null;
  for (let i = 0; i < engines.length; i++) {
    const candidate = engines[i]!;
    const busy = busyOf(candidate, now);
    let credit = Math.min(promptTokens, Math.max(0, pred.cachedTokens[i]!));
    if (credit > 0 && busy - minBusy >= costOptions.balanceAbs && busy > costOptions.balanceRel * minBusy) {
      (guarded ??= new Uint8Array(engines.length))[i] = 1;
      credit = 0;
    }
    uncached[i] = promptTokens - credit;
    const weight = candidate.weight > 0 ? candidate.weight : 1;
    const cost =
      (promptTokens - credit) / costOptions.prefillTokensPerUnit +
      (costOptions.runWeight * busy + costOptions.waitWeight * waitingOf(candidate, now)) / weight;
    // KV free space as a tie-break between otherwise equal engines
    out[i] = -cost + 0.001 * (1 - Math.min(1, Math.max(0, candidate.kvUsage)));
  }
  return guarded;
}

/**
 * −cost (seconds, or load units) → the scorer contract's [0, 1]: the cheapest candidate 1, one
 * COST_HALF_SCORE dearer ½, far dearer → 0. Monotone, so alone it picks as the cost does; beside other
 * scorers a weight-w scorer's full range is worth as much as w·COST_HALF_SCORE/(1 − w·…) of cost, about
 * w seconds for small w.
 */
const COST_HALF_SCORE = 1;

function negated(out: Float64Array, count: number): Float64Array {
  const negatedScores = new Float64Array(count);
  for (let i = 0; i < count; i++) negatedScores[i] = -out[i]!;
  return negatedScores;
}
function unitScores(out: Float64Array, count: number): void {
  let best = -Infinity;
  for (let i = 0; i < count; i++) if (out[i]! > best) best = out[i]!;
  for (let i = 0; i < count; i++) out[i] = 1 / (1 + (best - out[i]!) / COST_HALF_SCORE);
}

export interface CacheAwarePolicyOptions {
  /** the load-unit cost's constants (callers that do not count first tokens) */
  cacheAware?: CacheAwareOptions | undefined;
  /** the seconds-based cost: engine timing, constants, SLOs */
  predictive?: PredictiveOptions | undefined;
  /** refuse (over-slo) a request no engine is predicted to start within its SLO: the predictive policy */
  admitBySlo?: boolean;
  /**
   * hold a request in the router while the engine it picked has prompts enough queued, cheapest first
   * (cost/late-binding.ts): the predictive policy; needs a caller that counts first tokens
   */
  lateBinding?: LateBindingOptions | undefined;
}

const SATURATED: Decision = { kind: "saturated" };
/** held requests are decided again at least this often (ms): one whose turn came needs no event to go */
const LATE_BINDING_RECHECK_MS = 250;
/** a step's budget when the timing does not say: vLLM's max_num_batched_tokens on most GPUs */
const DEFAULT_STEP_TOKENS = 2048;

export function createCacheAwarePolicy(
  name: string,
  oracle: CacheOracle,
  filters: Policy["filters"],
  picker: Policy["picker"],
  options: CacheAwarePolicyOptions = {},
  ledger = new PrefillLedger(),
): Policy {
  const costOptions = { ...CACHE_AWARE_DEFAULTS, ...options.cacheAware };
  const model = new TtftModel(options.predictive ?? {}, ledger);
  const admitBySlo = options.admitBySlo === true;
  const late = options.lateBinding?.queuedPrompts ? new LateBinding(options.lateBinding) : undefined;
  const sloOptions = options.predictive?.slo;
  // a request's candidates and prediction, for onPicked and admit
  const last = new RequestMemo<Scored>("cache-aware.scored");
  // how the TTFTs of admitted requests came out against their predictions: admission asks that the
  // prediction times this (the ratio's p90) meet the SLO, so admitted requests meet it at p90 whatever
  // the model does not know (HTTP, tokenizing, the host)
  const calibration = new RunningQuantile(0.9);
  let lastNow: number | undefined;
  const scorer: Scorer = {
    name: "cache-load",
    weight: 1,
    score(req, engines, out, fleet) {
      const now = fleet.now;
      lastNow = now;
      const pred = oracle.predict(req, engines);
      const count = engines.length;
      const uncached = new Float64Array(count);
      // the seconds-based cost needs every candidate's first tokens counted (or, for predictive, none)
      let tracked = true;
      for (let i = 0; i < count && tracked; i++) tracked = engines[i]!.awaitingFirstToken !== undefined;
      if (tracked || admitBySlo) {
        const ttftMs = new Float64Array(count);
        const sloMs = admitBySlo ? sloFor(req, sloOptions) : undefined;
        model.score(req, engines, pred, now, sloMs, out, uncached, ttftMs);
        last.set(req, {
          engines,
          pred,
          guarded: null,
          uncached,
          ttftMs,
          sloMs,
          cost: negated(out, count),
          at: now,
        });
      } else {
        const guarded = loadUnitCost(costOptions, engines, pred, now, out, uncached);
        last.set(req, {
          engines,
          pred,
          guarded,
          uncached,
          ttftMs: null,
          sloMs: undefined,
          cost: negated(out, count),
          at: now,
        });
      }
      unitScores(out, count);
    },
  };
  return {
    name,
    filters,
    scorers: [scorer],
    picker,
    // each engine's cost is its own queue, prefix and load (the time model or the load-unit cost)
    loadElsewhereKeepsPick: true,
    explain(req) {
      const scored = last.get(req);
      if (!scored) return undefined;
      const promptTokens = scored.pred.promptTokens;
      const cachedTokens = scored.uncached.map((u) => promptTokens - u);
      return {
        engines: scored.engines,
        cachedTokens,
        ttftMs: scored.ttftMs,
        cost: scored.cost,
        promptTokens: promptTokens,
      };
    },
    admit:
      admitBySlo || late
        ? (req, engine, fleet): Decision | undefined => {
            const scored = last.get(req);
            const i = scored ? scored.engines.indexOf(engine) : -1;
            if (admitBySlo && scored?.ttftMs && scored.sloMs !== undefined) {
              const ttft = (i >= 0 ? scored.ttftMs[i]! : Infinity) * calibration.value;
              if (ttft > scored.sloMs) {
                late?.left(req);
                return {
                  kind: "over-slo",
                  predictedTtftMs: ttft,
                  sloTtftMs: scored.sloMs,
                  retryAfterMs: ttft - scored.sloMs,
                };
              }
            }
            // held in the router until the engine can start it soon; but a request with a TTFT SLO was
            // admitted by a prediction that binds it now, and is bound now
            if (late && i >= 0 && scored!.sloMs === undefined) {
              const step = options.predictive?.timing?.(engine, req.model)?.stepTokens ?? DEFAULT_STEP_TOKENS;
              if (late.holds(req, engine, scored!.uncached[i]!, fleet.now, step)) return SATURATED;
            }
            return undefined;
          }
        : undefined,
    // room a held request waits for is freed by a first token, or by time (a held request decided again)
    roomAtFirstToken: late !== undefined,
    recheckMs: late ? LATE_BINDING_RECHECK_MS : undefined,
    onLeftQueue: late ? (req) => late.left(req) : undefined,
    onFirstToken(req, engine, ttftMs) {
      const scored = last.get(req);
      if (scored?.at !== undefined) {
        scored.firstTokenMs = ttftMs;
        model.firstToken(req, engine, scored.at + ttftMs);
      }
      if (!scored?.ttftMs) return;
      const i = scored.engines.indexOf(engine);
      if (i >= 0 && scored.ttftMs[i]! > 0) calibration.add(ttftMs / scored.ttftMs[i]!);
    },
    onDone(req, engine, elapsedMs) {
      const scored = last.get(req);
      if (scored?.at === undefined) return;
      const first = scored.firstTokenMs;
      model.done(req, engine, scored.at + elapsedMs, first !== undefined ? elapsedMs - first : undefined);
    },
    onAbandoned(req, engine, elapsedMs) {
      const scored = last.get(req);
      if (scored?.at !== undefined) model.unpicked(req, engine, scored.at + elapsedMs);
    },
    queuedPrefillTokens: (engine) => ledger.pending(engine, undefined) ?? 0,
    onUnpicked(req, engine) {
      const scored = last.get(req);
      const i = scored ? scored.engines.indexOf(engine) : -1;
      if (i >= 0 && engine.awaitingFirstToken !== undefined) ledger.withdraw(engine, scored!.uncached[i]!);
      if (i >= 0) model.unpicked(req, engine, scored!.at);
    },
    onPicked(req, engine) {
      const scored = last.get(req);
      if (!scored) return;
      const i = scored.engines.indexOf(engine);
      if (i < 0) return;
      model.picked(
        req,
        engine,
        scored.pred.promptTokens,
        scored.uncached[i]!,
        lastNow,
        scored.pred.blocks?.ids,
      );
      late?.picked(scored.pred.promptTokens - scored.uncached[i]!, scored.pred.promptTokens);
      if (!oracle.onPicked) return;
      const why = explainPick(scored, i);
      let other = Infinity;
      if (scored.ttftMs)
        for (let k = 0; k < scored.ttftMs.length; k++)
          if (k !== i) other = Math.min(other, scored.ttftMs[k]!);
      oracle.onPicked(req, engine, why.cached, why.source, why.reason, scored.ttftMs?.[i], other);
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
