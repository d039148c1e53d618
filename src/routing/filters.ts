// Filters shared by every policy: the engine must serve the model, be healthy, not be excluded
// (tried already), carry weight, and have room under its in-flight cap.
import type { EngineView, Filter, RequestView } from "./types.js";

export const servesModel: Filter = (req, engines) => engines.filter((e) => e.models.has(req.model));
export const healthyOnly: Filter = (_req, engines) => engines.filter((e) => e.healthy && e.weight > 0);
export const notExcluded: Filter = (req, engines) =>
  req.exclude && req.exclude.size > 0 ? engines.filter((e) => !req.exclude!.has(e.id)) : engines;
export const hasCapacity: Filter = (_req, engines) =>
  engines.filter((e) => e.maxInFlight <= 0 || e.inFlight < e.maxInFlight);

/** The standard chain, in order; `decide` tells which stage emptied the set. */
export const standardFilters: readonly Filter[] = [servesModel, healthyOnly, notExcluded, hasCapacity];

export function applyFilters(
  filters: readonly Filter[],
  req: RequestView,
  engines: readonly EngineView[],
): { candidates: readonly EngineView[]; emptiedAt: number } {
  let set = engines;
  for (let i = 0; i < filters.length; i++) {
    set = filters[i]!(req, set);
    if (set.length === 0) return { candidates: set, emptiedAt: i };
  }
  return { candidates: set, emptiedAt: -1 };
}
