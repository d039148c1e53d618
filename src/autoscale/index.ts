// The autoscaling decision's public surface: pure code shared by the router and the fleet simulator.
// See README.md in this folder and docs/autoscaling.md.
export type * from "./types.js";
export { Autoscaler, trend, validateAutoscaleConfig } from "./autoscaler.js";
export { EngineCapacity, type EngineProfile } from "./capacity.js";
export {
  DynamoSla,
  FixedFleet,
  HpaGpuUtil,
  KedaWaiting,
  type DynamoOptions,
  type HpaOptions,
} from "./baselines.js";
