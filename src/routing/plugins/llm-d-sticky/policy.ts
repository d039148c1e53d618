// `llm-d-sticky`: llm-d's "sticky until saturated" token-aware routing for prefill-bound work, as its
// blog post "Sticky Until Saturated: Token-Aware Routing in llm-d" (llm-d.ai, 2026-08-17) gives it: an
// affinity filter keeps only engines that hold most of the prompt, overridden once the best warm engine's
// uncached tokens in flight exceed the best cold one's by τ, then the candidate with the fewest uncached
// tokens in flight plus this prompt's wins. No session table: affinity is the cache's. The parameters and
// what is not modelled: docs/routing.md#agent-aware-baselines.
import { standardFilters } from "../standard-filters/filters.js";
import { RequestMemo } from "../../policy/memo.js";
import { NO_CACHE, tellPicked, type CacheOracle, type CachePrediction } from "../../policy/cache-oracle.js";
import type { EngineView } from "../../policy/views.js";
import type { Picker, Policy, Scorer } from "../../policy/policy.js";
import { maxScorePicker } from "../pick-max-score/picker.js";
import { QueuedPrefill } from "./queued-prefill.js";

export interface LlmdStickyOptions {
  /** the share of the prompt an engine must hold to be warm */
  affinityThreshold?: number;
  /**
   * τ: the lead in uncached tokens in flight of the best warm engine over the best cold one past which
   * every engine is a candidate (llm-d main's form of the override, as the post describes it; the
   * interface its runs used let back only the cold engines at least τ below the warm one)
   */
  saturationTokens?: number;
}

/** the post's values for its Qwen3-32B TP 2 / H100 runs */
export const LLM_D_STICKY_DEFAULTS: Required<LlmdStickyOptions> = {
  affinityThreshold: 0.8,
  saturationTokens: 35 * 8192,
};

/** the token load one unit of the score's spread stands for: one prefill chunk */
const STICKY_LOAD_UNIT = 8192;

/** `picker`: the library's highest-score picker (exact ties rotate with the request's seq) */
export function createLlmdStickyPolicy(
  name: string,
  oracle: CacheOracle,
  picker: Picker,
  options: LlmdStickyOptions = {},
): Policy {
  const settings = { ...LLM_D_STICKY_DEFAULTS, ...options };
  const queued = new QueuedPrefill();
  /** per request: the candidates scored and each one's uncached tokens, for onPicked */
  const last = new RequestMemo<{
    engines: readonly EngineView[];
    pred: CachePrediction;
    uncached: Float64Array;
    reason: string;
  }>("llm-d-sticky.scored");
  const scorer: Scorer = {
    name: "llm-d-sticky",
    weight: 1,
    score(req, engines, out) {
      const pred = oracle.predict(req, engines);
      const count = engines.length;
      const uncached = new Float64Array(count);
      const promptTokens = pred.promptTokens;
      // warm: holds affinityThreshold of the prompt (an empty prompt is warm nowhere)
      const warmAt = promptTokens > 0 ? settings.affinityThreshold * promptTokens : Infinity;
      let minWarm = Infinity;
      let minCold = Infinity;
      for (let i = 0; i < count; i++) {
        uncached[i] = Math.max(0, promptTokens - pred.cachedTokens[i]!);
        const load = queued.of(engines[i]!);
        out[i] = load;
        if (pred.cachedTokens[i]! >= warmAt) minWarm = Math.min(minWarm, load);
        else minCold = Math.min(minCold, load);
      }
      // every engine competes when none is warm, or when the warm ones are saturated against a cold one
      const open = minWarm === Infinity || minWarm - minCold > settings.saturationTokens;
      const reason = minWarm === Infinity ? "no-warm" : open ? "saturated" : "warm";
      let minCost = Infinity;
      for (let i = 0; i < count; i++) minCost = Math.min(minCost, out[i]! + uncached[i]!);
      for (let i = 0; i < count; i++) {
        const candidate = open || pred.cachedTokens[i]! >= warmAt;
        // candidates above every other engine; among them, fewest uncached tokens in flight with this one's
        out[i] = (candidate ? 0.5 : 0) + 0.5 / (1 + (out[i]! + uncached[i]! - minCost) / STICKY_LOAD_UNIT);
      }
      last.set(req, { engines, pred, uncached, reason });
    },
  };
  return {
    name,
    filters: standardFilters,
    scorers: [scorer],
    picker,
    onPicked(req, engine) {
      const scored = last.get(req);
      const i = tellPicked(oracle, scored, req, engine);
      if (i >= 0) queued.add(req, engine, scored!.uncached[i]!);
    },
    onUnpicked: (req) => queued.release(req),
    onFirstToken: (req) => queued.release(req),
    onDone: (req) => queued.release(req),
    onAbandoned: (req) => queued.release(req),
  };
}

/** `llm-d-sticky` from the config's options: the library's highest-score picker */
export function llmdStickyPolicy(
  name: string,
  opts: { cache?: CacheOracle; llmdSticky?: LlmdStickyOptions },
): Policy {
  return createLlmdStickyPolicy(name, opts.cache ?? NO_CACHE, maxScorePicker, opts.llmdSticky);
}
