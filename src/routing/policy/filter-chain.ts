// Running a policy's filters, in order, and the one helper every filter narrows with: `keepEngines`,
// which hands back its input array when every engine passes (the usual case), so a decision allocates no
// arrays; it copies only when an engine is dropped. The filters themselves are plugins
// (plugins/filter-*/, chained by plugins/standard-filters/).
import type { EngineView, FleetSnapshot, RequestView } from "./views.js";
import type { Filter } from "./policy.js";

// Predicates are module-level with their argument passed in, so no closure is made per decision either.
export function keepEngines<A>(
  engines: readonly EngineView[],
  pass: (engine: EngineView, arg: A) => boolean,
  arg: A,
): readonly EngineView[] {
  for (let i = 0; i < engines.length; i++) {
    if (pass(engines[i]!, arg)) continue;
    const out = engines.slice(0, i);
    for (let j = i + 1; j < engines.length; j++) if (pass(engines[j]!, arg)) out.push(engines[j]!);
    return out;
  }
  return engines;
}

/** the filters in order; `emptiedAt` tells which stage emptied the set (-1: none) */
export function applyFilters(
  filters: readonly Filter[],
  req: RequestView,
  fleet: FleetSnapshot,
): { candidates: readonly EngineView[]; emptiedAt: number } {
  let set = fleet.engines;
  for (let i = 0; i < filters.length; i++) {
    set = filters[i]!(req, set, fleet);
    if (set.length === 0) return { candidates: set, emptiedAt: i };
  }
  return { candidates: set, emptiedAt: -1 };
}
