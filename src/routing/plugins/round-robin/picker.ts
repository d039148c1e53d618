// The round-robin picker: the request's seq taken round the candidates, weighted by a low-discrepancy
// sequence when their weights differ (over many requests engine i gets w_i / Σw).
import type { Picker } from "../../policy/policy.js";
import type { EngineView } from "../../policy/views.js";

/** the golden ratio's fractional part: seq × it mod 1 spreads evenly over [0, 1) */
const GOLDEN = 0.6180339887498949;

function allWeightsEqual(engines: readonly EngineView[]): boolean {
  const firstWeight = engines[0]!.weight;
  for (let i = 1; i < engines.length; i++) if (engines[i]!.weight !== firstWeight) return false;
  return true;
}

/** Weighted choice by a deterministic low-discrepancy sequence: over many requests engine i gets w_i / Σw. */
function weightedBySeq(seq: number, engines: readonly EngineView[]): EngineView {
  let totalWeight = 0;
  for (const engine of engines) totalWeight += engine.weight;
  const point = ((seq * GOLDEN) % 1) * totalWeight;
  let weightBelow = 0;
  for (const engine of engines) {
    weightBelow += engine.weight;
    if (point < weightBelow) return engine;
  }
  return engines[engines.length - 1]!;
}

export const roundRobinPicker: Picker = (req, engines) => {
  if (engines.length === 0) return undefined;
  if (allWeightsEqual(engines)) return engines[req.seq % engines.length];
  return weightedBySeq(req.seq, engines);
};
