// The session-affinity picker: a request's session key to its engine by weighted rendezvous hashing with
// bounded load, so a hot session spills to its next engine; a request with no key, the highest score.
import { unitHash } from "../../policy/hash.js";
import type { Picker } from "../../policy/policy.js";
import { maxScorePicker } from "../pick-max-score/picker.js";

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
