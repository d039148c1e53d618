// An under-sized plan's way out: the fewest engines of the planned shape that meet the SLO, else the
// cheapest fleet of any GPU and TP the model fits on.
import type { OffloadMode } from "../fleet/build.js";
import { GPUS } from "../models/index.js";
import { candidateShapes, type FleetChoice } from "./input.js";
import { fleetJson, type Alternative } from "./plan-json.js";
import type { PriceTable } from "./prices.js";
import { Evaluator, label, MAX_ENGINES, searchFleet } from "./search.js";

/** the fleet that meets the SLO where the planned one misses, and how it was found */
export interface RightSize {
  meets_slo_with: Alternative | null;
  note: string;
}

/**
 * The fewest engines of the same shape that meet the SLO, else the cheapest fleet of any shape. Searched
 * without offload: the option chosen for an overloaded fleet answers its pressure, which a fleet sized
 * to the load does not have (its own plan decides again).
 */
export async function rightSize(ev: Evaluator, f: FleetChoice, prices: PriceTable): Promise<RightSize> {
  ev.pool.progress.set(`under-sized: sizing ${f.gpu.toUpperCase()} TP ${f.tp} fleets`);
  const shape = {
    gpu: f.gpu,
    tp: f.tp,
    ...(f.maxModelLen !== undefined ? { maxModelLen: f.maxModelLen } : {}),
  };
  // any count, any cost, no offload
  const open = {
    prices,
    budget: null,
    engines: null,
    maxEngines: ev.base.scenario.ops.kubernetes ? MAX_ENGINES : 1,
    mode: "none" as OffloadMode,
  };
  const same = await searchFleet(ev, [shape], open);
  const found = same.found;
  if (found && found.fleet.engines > f.engines)
    return {
      meets_slo_with: {
        fleet: fleetJson(found.fleet),
        cost_usd_per_hour: found.cost,
        predicted: found.at.predicted,
      },
      note: `${label(found.fleet)} meet it without offload (${found.fleet.engines - f.engines} more engines)`,
    };
  const why = same.shapes[0]?.note ?? "";
  // no count of this shape will do: search every GPU and TP the model fits on
  ev.pool.progress.set("under-sized: searching other GPUs and TP sizes");
  const { shapes } = candidateShapes(
    { r: ev.base, open: { gpu: true, engines: true, tensorParallelSize: true } },
    GPUS.map((g) => g.id),
  );
  const other = await searchFleet(
    ev,
    shapes.filter((x) => x.gpu !== f.gpu || x.tp !== f.tp),
    open,
  );
  const alt = other.found;
  return {
    meets_slo_with: alt
      ? { fleet: fleetJson(alt.fleet), cost_usd_per_hour: alt.cost, predicted: alt.at.predicted }
      : null,
    note: `no count of ${f.gpu.toUpperCase()} TP ${f.tp} engines meets it${why ? ` (${why})` : ""}; ${alt ? `the cheapest fleet that does is ${label(alt.fleet)}` : "no GPU and TP searched does either"}`,
  };
}
