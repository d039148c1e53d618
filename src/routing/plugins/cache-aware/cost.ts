// The cache-aware policies' cost (plugin `cache-aware`): the load-unit cost for callers that do not
// count first tokens, with its saturation guard, and the map of −cost onto the scorer contract's [0, 1].
// The seconds-based cost is cost/ttft-model.ts's TtftModel.
import type { CachePrediction, CacheSource } from "../../policy/cache-oracle.js";
import type { EngineView } from "../../policy/views.js";
import { busyOf, waitingOf } from "../../cost/engine-load.js";

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
export interface Scored {
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
export function explainPick(
  scored: Scored,
  i: number,
): { cached: number; source: CacheSource; reason: string } {
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
export function loadUnitCost(
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

export function negated(out: Float64Array, count: number): Float64Array {
  const negatedScores = new Float64Array(count);
  for (let i = 0; i < count; i++) negatedScores[i] = -out[i]!;
  return negatedScores;
}
export function unitScores(out: Float64Array, count: number): void {
  let best = -Infinity;
  for (let i = 0; i < count; i++) if (out[i]! > best) best = out[i]!;
  for (let i = 0; i < count; i++) out[i] = 1 / (1 + (best - out[i]!) / COST_HALF_SCORE);
}
