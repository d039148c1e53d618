// The engine model's public surface. See README.md in this folder and docs/engine-model.md.
export type * from "./types.js";
export { defaultEngineConfig, validateEngineConfig, vllmBatchDefaults } from "./config.js";
export { kvCapacity, reserveBytesPerGpu, type KvCapacity } from "./capacity.js";
export { Engine, type QueuedRequest } from "./engine.js";
export { VirtualDriver } from "./drivers.js";
export {
  StepTimer,
  COMPUTE_EFFICIENCY,
  MEMORY_EFFICIENCY,
  STEP_OVERHEAD_S,
  type StepWork,
} from "./timing.js";
export { ChunkTier, LMCACHE_LOCAL_CPU_BPS } from "./lmcache.js";
export {
  LoraCache,
  loraAdapterBytes,
  loraSlotBytes,
  LORA_DISK_BPS,
  LORA_LOAD_OVERHEAD_S,
  DEFAULT_LORA_MODULES,
  type LoraResidency,
} from "./lora.js";
