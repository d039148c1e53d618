// `vllm-router-program`: vllm-router 0.1.17's program scheduling, as its `docs/program_scheduling.md`
// describes it, as a baseline beside ours, composed of this folder's plugins: the standard filters, then
// the pool filter (pool-filter.ts), which holds a program's request until an engine has logical
// KV-token capacity for it; the free-capacity scorer (scorer.ts); vllm-router's first-max picker; and
// the hooks (hooks.ts) that keep the programs' books (programs.ts). The document's rules as modelled,
// our reading where it gives no formula, and what is not modelled: docs/routing.md#agent-aware-baselines.
import { standardFilters } from "../standard-filters/filters.js";
import { firstMaxPicker } from "../pick-first-max/picker.js";
import { NO_CACHE, type CacheOracle } from "../../policy/cache-oracle.js";
import type { PredictiveOptions } from "../../cost/ttft-model.js";
import type { Policy } from "../../policy/policy.js";
import { onProgramEnded, onProgramPicked, onProgramUnpicked } from "./hooks.js";
import { programPoolFilter } from "./pool-filter.js";
import { ProgramBook, VLLM_ROUTER_PROGRAM_DEFAULTS, type VllmRouterProgramOptions } from "./programs.js";
import { programScorer } from "./scorer.js";

/** how often a caller decides waiting requests again (vllm-router's `metrics_interval_seconds`) */
export const PROGRAM_RECHECK_MS = 1000;

export function createVllmRouterProgramPolicy(
  name: string,
  oracle: CacheOracle,
  options: VllmRouterProgramOptions = {},
): Policy {
  const book = new ProgramBook({ ...VLLM_ROUTER_PROGRAM_DEFAULTS, ...options }, oracle);
  return {
    name,
    filters: [...standardFilters, programPoolFilter(book)],
    scorers: [programScorer(book)],
    picker: firstMaxPicker,
    recheckMs: PROGRAM_RECHECK_MS,
    onPicked: (req, engine) => onProgramPicked(book, req, engine),
    onUnpicked: (req) => onProgramUnpicked(book, req),
    onDone: (req, _engine, elapsedMs) => onProgramEnded(book, req, elapsedMs, true),
    onAbandoned: (req, _engine, elapsedMs) => onProgramEnded(book, req, elapsedMs, false),
  };
}

/**
 * `vllm-router-program` from the config's options: each engine's token capacity defaults to the KV
 * capacity of `predictive.timing` (what an operator would set `token_capacity_per_target` to)
 */
export function vllmRouterProgramPolicy(
  name: string,
  opts: {
    cache?: CacheOracle;
    predictive?: Pick<PredictiveOptions, "timing">;
    vllmRouterProgram?: VllmRouterProgramOptions;
  },
): Policy {
  const timing = opts.predictive?.timing;
  return createVllmRouterProgramPolicy(name, opts.cache ?? NO_CACHE, {
    tokenCapacity: timing
      ? (engine) => {
          const model = engine.models.values().next().value;
          return model === undefined ? undefined : timing(engine, model)?.kvCapacityTokens;
        }
      : undefined,
    ...opts.vllmRouterProgram,
  });
}
