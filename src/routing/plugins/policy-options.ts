// What a policy may be made with, the one options type every policy plugin's factory reads its part of
// (each folder's factory names only the fields it reads), and the factory's shape the registry keeps.
import type { CacheOracle } from "../policy/cache-oracle.js";
import type { Policy, Scorer } from "../policy/policy.js";
import type { PredictiveOptions } from "../cost/ttft-model.js";
import type { CacheAwareOptions } from "./cache-aware/cost.js";
import type { LlmdStickyOptions } from "./llm-d-sticky/policy.js";
import type { VllmRouterCacheAwareOptions } from "./vllm-router-cache-aware/policy.js";
import type { VllmRouterProgramOptions } from "./vllm-router-program/programs.js";

export interface PolicyOptions {
  /** session: how far above the average in-flight an engine may go before a session spills (≥ 1) */
  sessionLoadFactor?: number;
  /** cache-aware policies: what each engine holds (none given: they route by load alone) */
  cache?: CacheOracle;
  /** cache-aware policies: the cost function's constants */
  cacheAware?: CacheAwareOptions;
  /** predictive: engine timing, cost constants, TTFT SLOs */
  predictive?: PredictiveOptions;
  /** vllm-router-cache-aware: its thresholds */
  vllmRouterCacheAware?: VllmRouterCacheAwareOptions;
  /** llm-d-sticky: its affinity threshold and saturation override (τ) */
  llmdSticky?: LlmdStickyOptions;
  /**
   * vllm-router-program: its settings; each engine's token capacity defaults to the KV capacity of
   * `predictive.timing` (what an operator would set `token_capacity_per_target` to)
   */
  vllmRouterProgram?: VllmRouterProgramOptions;
  /**
   * scorers added to the policy's own (weight 1): the config's `scorers` by name (plugins/registry.ts),
   * or made already; every policy but round-robin picks by the weighted sum
   */
  scorers?: readonly ({ name: string; weight: number } | Scorer)[];
}

/** makes the policy `name` from the config's options (a factory may serve several names) */
export type PolicyFactory = (name: string, opts: PolicyOptions) => Policy;
