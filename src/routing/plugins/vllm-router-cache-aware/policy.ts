// `vllm-router-cache-aware`: vllm-router's default policy (`--policy cache_aware`, 0.1.x, inherited from
// the SGLang router), as its source describes it:
//   - load is the router's in-flight requests per engine; the fleet is imbalanced when
//     max − min > balance_abs_threshold (64) AND max > balance_rel_threshold (1.5) × min: then the least
//     loaded engine, whatever it holds;
//   - else the best prefix match of an approximate per-engine tree of the requests' text (learned from the
//     router's own picks, never from the engines): match rate = matched / prompt length; above
//     cache_threshold (0.3) the engine with the best match, otherwise the least loaded;
//   - ties go to the first engine in list order (Rust's min_by_key), not round-robin's way.
// The tree here is the `prefix` policy's character-block index (prefix/prefix-index.ts), the same kind of
// approximation at 64-character granularity instead of single characters: for prompts thousands of
// characters long the match rates differ by at most one block.
import { standardFilters } from "../standard-filters/filters.js";
import { RequestMemo } from "../../policy/memo.js";
import { NO_CACHE, tellPicked, type CacheOracle, type CachePrediction } from "../../policy/cache-oracle.js";
import type { EngineView } from "../../policy/views.js";
import type { Policy, Scorer } from "../../policy/policy.js";
import { firstMaxPicker } from "../pick-first-max/picker.js";

export interface VllmRouterCacheAwareOptions {
  /** minimum prefix match rate for the best-match engine (vllm-router's --cache-threshold) */
  cacheThreshold?: number;
  /** in-flight spread above which the fleet counts as imbalanced (--balance-abs-threshold) … */
  balanceAbs?: number;
  /** … when the busiest also has more than this multiple of the least busy's (--balance-rel-threshold) */
  balanceRel?: number;
}

/** vllm-router 0.1.17's command-line defaults */
export const VLLM_ROUTER_CACHE_AWARE_DEFAULTS: Required<VllmRouterCacheAwareOptions> = {
  cacheThreshold: 0.3,
  balanceAbs: 64,
  balanceRel: 1.5,
};

export function createVllmRouterCacheAwarePolicy(
  name: string,
  oracle: CacheOracle,
  options: VllmRouterCacheAwareOptions = {},
): Policy {
  const settings = { ...VLLM_ROUTER_CACHE_AWARE_DEFAULTS, ...options };
  const last = new RequestMemo<{ engines: readonly EngineView[]; pred: CachePrediction; reason: string }>(
    "vllm-router-cache-aware.scored",
  );
  const scorer: Scorer = {
    name: "vllm-router-cache-aware",
    weight: 1,
    score(req, engines, out) {
      let min = Infinity;
      let max = 0;
      for (const engine of engines) {
        min = Math.min(min, engine.inFlight);
        max = Math.max(max, engine.inFlight);
      }
      const pred = oracle.predict(req, engines);
      let reason = "least-load";
      if (!(max - min > settings.balanceAbs && max > min * settings.balanceRel)) {
        let best = 0;
        for (let i = 0; i < engines.length; i++) best = Math.max(best, pred.cachedTokens[i]!);
        if (pred.promptTokens > 0 && best / pred.promptTokens > settings.cacheThreshold) {
          for (let i = 0; i < engines.length; i++) out[i] = pred.cachedTokens[i]!;
          last.set(req, { engines, pred, reason: `${pred.source[0] ?? "prefix"}-hit` });
          return;
        }
      } else reason = "imbalance";
      for (let i = 0; i < engines.length; i++) out[i] = -engines[i]!.inFlight;
      last.set(req, { engines, pred, reason });
    },
  };
  return {
    name,
    filters: standardFilters,
    scorers: [scorer],
    picker: firstMaxPicker,
    onPicked(req, engine) {
      tellPicked(oracle, last.get(req), req, engine);
    },
  };
}

/** `vllm-router-cache-aware` from the config's options (no cache oracle: by load alone) */
export function vllmRouterCacheAwarePolicy(
  name: string,
  opts: { cache?: CacheOracle; vllmRouterCacheAware?: VllmRouterCacheAwareOptions },
): Policy {
  return createVllmRouterCacheAwarePolicy(name, opts.cache ?? NO_CACHE, opts.vllmRouterCacheAware);
}
