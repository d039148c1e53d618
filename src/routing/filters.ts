// Filters shared by every policy: the engine must serve the model, be healthy, not be excluded
// (tried already), carry weight, and have room under its in-flight cap.
import type { EngineView, Filter, RequestView } from "./types.js";

// Each filter hands back its input array when every engine passes (the usual case), so a decision
// allocates no arrays; it copies only when an engine is dropped.
function keep(engines: readonly EngineView[], pass: (e: EngineView) => boolean): readonly EngineView[] {
  for (let i = 0; i < engines.length; i++) {
    if (pass(engines[i]!)) continue;
    const out = engines.slice(0, i);
    for (let j = i + 1; j < engines.length; j++) if (pass(engines[j]!)) out.push(engines[j]!);
    return out;
  }
  return engines;
}

export const servesModel: Filter = (req, engines) => {
  // the common case without a closure: every engine serves the model
  let all = true;
  for (let i = 0; i < engines.length; i++) if (!engines[i]!.models.has(req.model)) all = false;
  return all ? engines : engines.filter((e) => e.models.has(req.model));
};
const isHealthy = (e: EngineView): boolean => e.healthy && e.weight > 0;
export const healthyOnly: Filter = (_req, engines) => keep(engines, isHealthy);
export const notExcluded: Filter = (req, engines) =>
  req.exclude && req.exclude.size > 0 ? engines.filter((e) => !req.exclude!.has(e.id)) : engines;
const hasRoom = (e: EngineView): boolean => e.maxInFlight <= 0 || e.inFlight < e.maxInFlight;
export const hasCapacity: Filter = (_req, engines) => keep(engines, hasRoom);

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
