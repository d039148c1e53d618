// `vllm-router-program`'s scorer: the most free logical KV-token capacity first (vllm-router's program
// scheduling among the engines its pool let through); requests without a program by fewest in flight.
import type { Scorer } from "../../policy/policy.js";
import type { ProgramBook } from "./programs.js";

/** scores in [0, 1] over `book`'s occupancy */
export function programScorer(book: ProgramBook): Scorer {
  return {
    name: "vllm-router-program",
    weight: 1,
    score(req, engines, out, fleet) {
      const now = fleet.now ?? 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < engines.length; i++) {
        const engine = engines[i]!;
        const freeScore =
          req.sessionKey === undefined
            ? -engine.inFlight
            : Math.min(1e12, book.freeOf(engine, now, undefined));
        out[i] = freeScore;
        if (freeScore < lo) lo = freeScore;
        if (freeScore > hi) hi = freeScore;
      }
      for (let i = 0; i < engines.length; i++) out[i] = hi > lo ? (out[i]! - lo) / (hi - lo) : 1;
    },
  };
}
