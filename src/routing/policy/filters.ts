// Filters shared by every policy: the engine must serve the model, be healthy, not be excluded
// (tried already), carry weight, and have room under its in-flight cap.
import type { EngineView, FleetSnapshot, RequestView } from "./views.js";
import type { Filter } from "./policy.js";

// Each filter hands back its input array when every engine passes (the usual case), so a decision
// allocates no arrays; it copies only when an engine is dropped. Predicates are module-level with
// their argument passed in, so no closure is made per decision either.
function keep<A>(
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

// a registry adapter may go to any engine serving its base model: the caller loads it there
const serves = (e: EngineView, req: RequestView): boolean =>
  e.models.has(req.model) || (req.lora !== undefined && e.models.has(req.lora.base));
const isHealthy = (e: EngineView): boolean => e.healthy && e.weight > 0;
const notIn = (e: EngineView, exclude: ReadonlySet<string>): boolean => !exclude.has(e.id);
const hasRoom = (e: EngineView, req: RequestView): boolean =>
  e.maxInFlight <= 0 || e.inFlight < e.maxInFlight + (req.headroom ?? 0);

export const servesModel: Filter = (req, engines) => keep(engines, serves, req);
export const healthyOnly: Filter = (_req, engines) => keep(engines, isHealthy, undefined);
export const notExcluded: Filter = (req, engines) =>
  req.exclude && req.exclude.size > 0 ? keep(engines, notIn, req.exclude) : engines;
export const hasCapacity: Filter = Object.assign(
  (req: RequestView, engines: readonly EngineView[]) => keep(engines, hasRoom, req),
  { waitsForRoom: true },
);

/** The standard chain, in order; `decide` tells which stage emptied the set. */
export const standardFilters: readonly Filter[] = [servesModel, healthyOnly, notExcluded, hasCapacity];

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
