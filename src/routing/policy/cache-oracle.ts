// What a cache-aware policy asks of the caller's cache knowledge (KV events, a prefix index, a shared
// tier): the cached part of a request's prompt on each candidate, and word of each pick.
import type { EngineView, RequestView } from "./views.js";

/** Where a cache prediction for one engine came from. */
export type CacheSource = "kv" | "prefix" | "none";

/**
 * What a cache-aware policy knows about a request's prefix on each candidate: the caller owns the
 * indexes (KV events, approximate prefix) and answers for a given candidate list.
 */
export interface CachePrediction {
  /** the request's prompt length, in tokens (estimated when no tokenizer is used) */
  promptTokens: number;
  /** per candidate: prompt tokens the engine is predicted to hold, tier credits applied */
  cachedTokens: Float64Array;
  /** per candidate: how the prediction was made */
  source: CacheSource[];
  /**
   * the prompt's chained block ids (equal ids: equal prefixes) and the tokens one block stands for: a
   * prompt queued on an engine behind another that shares its prefix finds the prefix computed
   */
  blocks?: { ids: readonly number[]; tokensPerBlock: number } | undefined;
  /**
   * per candidate: tokens its GPU KV cache holds, in use or cached and free (vLLM evicts a cached block
   * only when it needs the room), from its KV events (blocks stored less removed, times the block
   * size); NaN where its events do not flow. What `kvUsage` cannot tell: whether a new prompt's blocks
   * go to empty room or push cached work out (cost/ttft-model.ts prices a miss by that)
   */
  heldTokens?: Float64Array | undefined;
  /**
   * per candidate: prompt tokens beyond `cachedTokens` that a tier the engine loads from holds (a shared
   * cache server), and the seconds that load takes over the engine's link (bytes / bandwidth); absent
   * where no tier is known. The prompt's price there is the load, not a prefill of those tokens.
   */
  tierTokens?: Float64Array | undefined;
  tierLoadSeconds?: Float64Array | undefined;
}

export interface CacheOracle {
  predict(req: RequestView, engines: readonly EngineView[]): CachePrediction;
  /**
   * the policy picked `engine` for `req` (its prediction was `cachedTokens`, `source`; with the
   * seconds-based cost, `ttftMs` is the TTFT it predicted there and `bestOtherTtftMs` the best
   * other candidate's)
   */
  onPicked?(
    req: RequestView,
    engine: EngineView,
    cachedTokens: number,
    source: CacheSource,
    reason: string,
    ttftMs?: number,
    bestOtherTtftMs?: number,
  ): void;
}

/**
 * Tells `oracle` of a pick made on a remembered prediction: the picked engine's predicted tokens and
 * source. Returns the engine's index in the prediction, or -1 when there was none for it.
 */
export function tellPicked(
  oracle: CacheOracle,
  scored: { engines: readonly EngineView[]; pred: CachePrediction; reason: string } | undefined,
  req: RequestView,
  engine: EngineView,
): number {
  const i = scored ? scored.engines.indexOf(engine) : -1;
  if (!scored || i < 0) return -1;
  oracle.onPicked?.(
    req,
    engine,
    scored.pred.cachedTokens[i]!,
    scored.pred.source[i] ?? "none",
    scored.reason,
  );
  return i;
}

/** An oracle that knows nothing: cache-aware policies then route by load alone (fleet simulator default). */
export const NO_CACHE: CacheOracle = {
  predict(req, engines) {
    return {
      promptTokens: 0,
      cachedTokens: new Float64Array(engines.length),
      source: engines.map(() => "none" as const),
    };
  },
};
