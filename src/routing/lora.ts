// LoRA placement by name, for the live router's `lora.policy` and the fleet simulator: the three
// policies are plugins of their own (plugins/lora-placement: `lora`, ours, priced in seconds;
// plugins/gie-lora-affinity and plugins/lora-static: the baselines), over the adapter books their
// callers keep (lora-books/). This file names them and re-exports what callers use, so a caller imports
// one file for LoRA placement.
import { createRegisteredPolicy } from "./plugins/index.js";
import type { Policy } from "./policy/policy.js";

export * from "./lora-books/index.js";
export {
  createGieLoraAffinityPolicy,
  createLoraPolicy,
  createStaticLoraPolicy,
  GIE_LORA_AFFINITY_THRESHOLD,
  GIE_QUEUEING_THRESHOLD_LORA,
  type LoraPolicyOptions,
} from "./plugins/index.js";

export type LoraPolicyName = "lora" | "gie-lora-affinity" | "lora-static";
export const LORA_POLICY_NAMES: readonly LoraPolicyName[] = ["lora", "gie-lora-affinity", "lora-static"];

/** a LoRA placement by name, by its plugin's factory (`lora` with no cache oracle) */
export function createLoraPolicyByName(name: LoraPolicyName): Policy {
  return createRegisteredPolicy(name, {});
}
