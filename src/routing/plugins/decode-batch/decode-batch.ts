// `decode-batch`: the worked example of a scorer added by one file plus config (docs/routing.md, "Adding
// a scorer"). It prefers the engine with the fewest requests on it — its decode batch, which sets every
// one of their inter-token gaps — so a router that weighs it beside `predictive`'s time to first token
// trades a little TTFT for steadier output speed:
//   scorers: [{ name: decode-batch, weight: 0.3 }]
// Scores in [0, 1] as every scorer's: 1 for the least busy candidate, 0 for the busiest.
import { busyOf } from "../../cost/engine-load.js";
import type { Scorer } from "../../policy/policy.js";

/** the `decode-batch` scorer at the weight the config gives it */
export const decodeBatchScorer = (weight: number): Scorer => ({
  name: "decode-batch",
  weight,
  score(_req, engines, out, fleet) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < engines.length; i++) {
      const engine = engines[i]!;
      const busyPerWeight = busyOf(engine, fleet.now) / (engine.weight > 0 ? engine.weight : 1);
      out[i] = busyPerWeight;
      if (busyPerWeight < lo) lo = busyPerWeight;
      if (busyPerWeight > hi) hi = busyPerWeight;
    }
    for (let i = 0; i < engines.length; i++) out[i] = hi > lo ? (hi - out[i]!) / (hi - lo) : 1;
  },
});
