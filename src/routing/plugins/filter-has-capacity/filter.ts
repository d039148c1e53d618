// The `hasCapacity` filter: engines under their in-flight cap (plus the request's `headroom`, the
// router's top band). It waits for room: its stage emptying the set means `saturated`, and the caller's
// waiting room holds the request.
import { keepEngines } from "../../policy/filter-chain.js";
import type { Filter } from "../../policy/policy.js";
import type { EngineView, RequestView } from "../../policy/views.js";

const hasRoom = (e: EngineView, req: RequestView): boolean =>
  e.maxInFlight <= 0 || e.inFlight < e.maxInFlight + (req.headroom ?? 0);

export const hasCapacity: Filter = Object.assign(
  (req: RequestView, engines: readonly EngineView[]) => keepEngines(engines, hasRoom, req),
  { waitsForRoom: true },
);
