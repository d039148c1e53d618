// The tenancy library's surface: what the router (and the fleet simulator) import.
export { parseTenancyConfig, readKeysDir, tenancyConfigSchema, TenancyConfigError } from "./config.js";
export type { TenancyConfig, TenancyConfigInput, TenantConfig, TenantLimits } from "./config.js";
export { hashKey } from "./keys.js";
export { TenancyState, type Admission, type Tenant } from "./state.js";
export type { Usage } from "./limiter.js";
export {
  FairQueue,
  type EnqueueResult,
  type FairQueueLimits,
  type FlowParams,
  type Ticket,
} from "./fair-queue.js";
export { deriveCacheSalt } from "./salt.js";
