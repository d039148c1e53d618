// The cache-aware policies' one scorer, `cache-load` (plugin `cache-aware`): lowest cost wins. The cost
// is in seconds (predicted TTFT and what a miss adds: cost/ttft-model.ts) when the caller counts every
// candidate's first tokens, or for `predictive`; else in load units (cost.ts). Either way −cost maps onto
// [0, 1], and what was worked out is kept on the request for the pick, admission and the explanation.
import type { Scorer } from "../../policy/policy.js";
import { sloFor } from "../../cost/slo.js";
import type { CacheAwareBook } from "./book.js";
import { loadUnitCost, negated, unitScores } from "./cost.js";

export function cacheLoadScorer(book: CacheAwareBook): Scorer {
  return {
    name: "cache-load",
    weight: 1,
    score(req, engines, out, fleet) {
      const now = fleet.now;
      book.lastNow = now;
      const pred = book.oracle.predict(req, engines);
      const count = engines.length;
      const uncached = new Float64Array(count);
      // the seconds-based cost needs every candidate's first tokens counted (or, for predictive, none)
      let tracked = true;
      for (let i = 0; i < count && tracked; i++) tracked = engines[i]!.awaitingFirstToken !== undefined;
      if (tracked || book.admitBySlo) {
        const ttftMs = new Float64Array(count);
        const sloMs = book.admitBySlo ? sloFor(req, book.sloOptions) : undefined;
        book.model.score(req, engines, pred, now, sloMs, out, uncached, ttftMs);
        book.last.set(req, {
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
        const guarded = loadUnitCost(book.costOptions, engines, pred, now, out, uncached);
        book.last.set(req, {
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
}
