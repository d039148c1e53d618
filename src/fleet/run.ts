// One simulated run of a scenario under one offload option, timed.
import { performance } from "node:perf_hooks";
import { fleetOptionsFor, type OffloadMode } from "./build.js";
import { simulateFleet } from "./fleet.js";
import { fleetReport, type FleetReport } from "./report.js";
import type { ResolvedScenario } from "./scenario.js";

export function runScenario(
  r: ResolvedScenario,
  mode: OffloadMode,
  opts: { kvScale?: number; requests?: number; recordItl?: boolean } = {},
): FleetReport {
  const o = fleetOptionsFor(r, mode, opts);
  const t0 = performance.now();
  const res = simulateFleet(o);
  return fleetReport(o, res, (performance.now() - t0) / 1000);
}
