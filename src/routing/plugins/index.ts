// Every plugin the config may name, registered by name: each plugin is a folder of its own
// (`<name>/`, with a README and a test under test/routing/plugins/); a new one is its folder plus its
// line here. The shared filters and pickers are folders too, named by the policies that use them.
import { registerPolicy, registerScorer } from "./registry.js";
import { kvFreeScorer, loadScorer } from "./least-load/least-load.js";
import { decodeBatchScorer } from "./decode-batch/decode-batch.js";
import { roundRobinPolicy } from "./round-robin/policy.js";
import { leastLoadPolicy } from "./least-load/policy.js";
import { sessionPolicy } from "./session-affinity/policy.js";
import { cacheAwarePolicy } from "./cache-aware/policy.js";
import { vllmRouterCacheAwarePolicy } from "./vllm-router-cache-aware/policy.js";
import { llmdStickyPolicy } from "./llm-d-sticky/policy.js";
import { vllmRouterProgramPolicy } from "./vllm-router-program/policy.js";
import { loraPlacementPolicy } from "./lora-placement/policy.js";
import { createGieLoraAffinityPolicy } from "./gie-lora-affinity/policy.js";
import { createStaticLoraPolicy } from "./lora-static/policy.js";

registerScorer("decode-batch", decodeBatchScorer);
// least-load's two scorers, at the weight the config gives them
registerScorer("load", (weight) => ({ ...loadScorer, weight }));
registerScorer("kv-free", (weight) => ({ ...kvFreeScorer, weight }));

registerPolicy("round-robin", roundRobinPolicy);
registerPolicy("least-load", leastLoadPolicy);
registerPolicy("session", sessionPolicy);
for (const name of ["prefix", "kv", "hybrid", "predictive"]) registerPolicy(name, cacheAwarePolicy);
registerPolicy("vllm-router-cache-aware", vllmRouterCacheAwarePolicy);
registerPolicy("llm-d-sticky", llmdStickyPolicy);
registerPolicy("vllm-router-program", vllmRouterProgramPolicy);
// LoRA placement, for registry adapters' requests (src/routing/lora.ts names them)
registerPolicy("lora", loraPlacementPolicy);
registerPolicy("gie-lora-affinity", () => createGieLoraAffinityPolicy());
registerPolicy("lora-static", () => createStaticLoraPolicy());

export {
  createRegisteredPolicy,
  createScorer,
  registerPolicy,
  registeredPolicyNames,
  registerScorer,
  scorerNames,
  type ScorerFactory,
} from "./registry.js";
export type { PolicyFactory, PolicyOptions } from "./policy-options.js";
export { SESSION_LOAD_FACTOR_DEFAULT } from "./session-affinity/policy.js";
export { kvFreeScorer, loadScorer } from "./least-load/least-load.js";
export { decodeBatchScorer } from "./decode-batch/decode-batch.js";
export { createVllmRouterProgramPolicy, PROGRAM_RECHECK_MS } from "./vllm-router-program/policy.js";
export {
  VLLM_ROUTER_PROGRAM_DEFAULTS,
  type VllmRouterProgramOptions,
} from "./vllm-router-program/programs.js";
export { createCacheAwarePolicy } from "./cache-aware/policy.js";
export { CACHE_AWARE_DEFAULTS, type CacheAwareOptions } from "./cache-aware/cost.js";
export type { CacheAwarePolicyOptions } from "./cache-aware/book.js";
export { createLoraPolicy } from "./lora-placement/policy.js";
export type { LoraPolicyOptions } from "./lora-placement/book.js";
export {
  createGieLoraAffinityPolicy,
  GIE_LORA_AFFINITY_THRESHOLD,
  GIE_QUEUEING_THRESHOLD_LORA,
} from "./gie-lora-affinity/policy.js";
export { createStaticLoraPolicy } from "./lora-static/policy.js";
export {
  createLlmdStickyPolicy,
  LLM_D_STICKY_DEFAULTS,
  type LlmdStickyOptions,
} from "./llm-d-sticky/policy.js";
export {
  createVllmRouterCacheAwarePolicy,
  VLLM_ROUTER_CACHE_AWARE_DEFAULTS,
  type VllmRouterCacheAwareOptions,
} from "./vllm-router-cache-aware/policy.js";
export { firstMaxPicker } from "./pick-first-max/picker.js";
export { servesModel } from "./filter-serves-model/filter.js";
export { healthyOnly } from "./filter-healthy/filter.js";
export { notExcluded } from "./filter-not-excluded/filter.js";
export { hasCapacity } from "./filter-has-capacity/filter.js";
export { standardFilters } from "./standard-filters/filters.js";
export { maxScorePicker } from "./pick-max-score/picker.js";
export { roundRobinPicker } from "./round-robin/picker.js";
export { sessionPicker } from "./session-affinity/picker.js";
