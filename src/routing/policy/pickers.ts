// The pickers the policies share: round-robin (weighted by a low-discrepancy sequence), the highest
// score with ties going round-robin's way, and session affinity by weighted rendezvous hashing with
// bounded load. Each is one function of the candidates and their summed scores.
import { unitHash } from "./hash.js";
import type { Picker } from "./policy.js";
import type { EngineView } from "./views.js";

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

/** Highest score wins; exact ties go round-robin's way (below). */
export const maxScorePicker: Picker = (req, engines, scores) => {
  const count = engines.length;
  if (count === 0) return undefined;
  let best = -Infinity;
  for (let i = 0; i < count; i++) if (scores[i]! > best) best = scores[i]!;
  // among the tied, the one round-robin would pick, or the next after it: equal engines share the work
  // as round-robin shares it, and a policy never breaks a tie against where round-robin would go
  const start = req.seq % count;
  for (let offset = 0; offset < count; offset++) {
    const i = (start + offset) % count;
    if (best - scores[i]! <= 1e-12) return engines[i];
  }
  return engines[0];
};

/**
 * Consistent hashing with bounded loads, done as weighted rendezvous hashing: engines are ranked by
 * −w / ln(u(key, engine)) and the first whose in-flight is under ⌈c · (total + 1) · w / Σw⌉ wins, so a
 * hot session spills to its next engine instead of overloading one. No key → least-load.
 */
export function sessionPicker(loadFactor: number): Picker {
  return (req, engines, scores, fleet) => {
    if (engines.length === 0) return undefined;
    const key = req.sessionKey;
    if (key === undefined || key === "") return maxScorePicker(req, engines, scores, fleet);
    let totalInFlight = 0;
    let totalWeight = 0;
    for (const engine of engines) {
      totalInFlight += engine.inFlight;
      totalWeight += engine.weight;
    }
    const ranked = engines.map((engine) => ({
      engine,
      rank: -engine.weight / Math.log(unitHash(key, engine.id)),
    }));
    ranked.sort((a, b) => b.rank - a.rank);
    for (const { engine } of ranked) {
      const cap = Math.ceil((loadFactor * (totalInFlight + 1) * engine.weight) / totalWeight);
      if (engine.inFlight < cap) return engine;
    }
    return ranked[0]!.engine;
  };
}
