// `lora-static` (a baseline): an operator's static placement: each adapter pinned to `replicas`
// engines by rendezvous hashing, the least busy of them picked.
import { busyOf } from "../../cost/engine-load.js";
import { unitHash } from "../../policy/hash.js";
import { hasCapacity } from "../filter-has-capacity/filter.js";
import { healthyOnly } from "../filter-healthy/filter.js";
import { notExcluded } from "../filter-not-excluded/filter.js";
import { servesModel } from "../filter-serves-model/filter.js";
import type { Filter, Picker, Policy } from "../../policy/policy.js";
import type { EngineView, RequestView } from "../../policy/views.js";

/** the `replicas` engines an adapter is pinned to (all of them for a request with no adapter) */
export function pinnedFilter(replicas: number): Filter {
  return (req, engines) => {
    const request = req as RequestView;
    if (!request.lora || engines.length <= replicas) return engines;
    const ranked = [...engines].sort(
      (a, b) => unitHash(request.lora!.name, b.id) - unitHash(request.lora!.name, a.id),
    );
    return ranked.slice(0, replicas);
  };
}

/** the least busy engine, ties rotating by the request's seq */
export const leastBusyPicker: Picker = (req, engines, _s, fleet) => {
  let best: EngineView | undefined;
  let least = Infinity;
  for (let k = 0; k < engines.length; k++) {
    const engine = engines[(k + req.seq) % engines.length]!;
    const busy = busyOf(engine, fleet.now);
    if (busy < least) {
      least = busy;
      best = engine;
    }
  }
  return best;
};

/** each adapter pinned to `replicas` engines (rendezvous hashing), the least busy of them picked */
export function createStaticLoraPolicy(replicas = 2): Policy {
  return {
    name: "lora-static",
    // pinned before the health and capacity stages: an adapter's engines are its engines
    filters: [servesModel, pinnedFilter(replicas), healthyOnly, notExcluded, hasCapacity],
    scorers: [],
    picker: leastBusyPicker,
  };
}
