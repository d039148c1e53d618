// The state of one cache-aware policy (plugin `cache-aware`): its cost constants, the TTFT model and
// its prefill ledger, SLO admission's calibration, late binding, and per request what the scorer worked
// out (for the pick's explanation, the ledger and admission). Its scorer, admission and hooks (this
// folder's other files) read and write it.
import { RequestMemo } from "../../policy/memo.js";
import type { CacheOracle } from "../../policy/cache-oracle.js";
import { PrefillLedger } from "../../cost/prefill-ledger.js";
import { TtftModel, type PredictiveOptions } from "../../cost/ttft-model.js";
import { LateBinding, type LateBindingOptions } from "../../cost/late-binding.js";
import { RunningQuantile } from "../../cost/slo.js";
import { CACHE_AWARE_DEFAULTS, type CacheAwareOptions, type Scored } from "./cost.js";

export interface CacheAwarePolicyOptions {
  /** the load-unit cost's constants (callers that do not count first tokens) */
  cacheAware?: CacheAwareOptions | undefined;
  /** the seconds-based cost: engine timing, constants, SLOs */
  predictive?: PredictiveOptions | undefined;
  /** refuse (over-slo) a request no engine is predicted to start within its SLO: the predictive policy */
  admitBySlo?: boolean;
  /**
   * hold a request in the router while the engine it picked has prompts enough queued, cheapest first
   * (cost/late-binding.ts): the predictive policy; needs a caller that counts first tokens
   */
  lateBinding?: LateBindingOptions | undefined;
}

/** One policy's books; `lastNow` is the clock of its latest scoring. */
export class CacheAwareBook {
  readonly costOptions: Required<CacheAwareOptions>;
  readonly model: TtftModel;
  readonly admitBySlo: boolean;
  readonly late: LateBinding | undefined;
  readonly sloOptions: PredictiveOptions["slo"];
  /** a request's candidates and prediction, for onPicked and admit */
  readonly last = new RequestMemo<Scored>("cache-aware.scored");
  /**
   * how the TTFTs of admitted requests came out against their predictions: admission asks that the
   * prediction times this (the ratio's p90) meet the SLO, so admitted requests meet it at p90 whatever
   * the model does not know (HTTP, tokenizing, the host)
   */
  readonly calibration = new RunningQuantile(0.9);
  lastNow: number | undefined;

  constructor(
    readonly oracle: CacheOracle,
    readonly options: CacheAwarePolicyOptions,
    readonly ledger: PrefillLedger,
  ) {
    this.costOptions = { ...CACHE_AWARE_DEFAULTS, ...options.cacheAware };
    this.model = new TtftModel(options.predictive ?? {}, ledger);
    this.admitBySlo = options.admitBySlo === true;
    this.late = options.lateBinding?.queuedPrompts ? new LateBinding(options.lateBinding) : undefined;
    this.sloOptions = options.predictive?.slo;
  }
}
