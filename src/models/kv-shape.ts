// The KV cache's size per token, from a model's shape, in one place for every layer that sizes, times or
// prices KV (the engine model's capacity and step time, the sim's per-GPU work figures, the router's
// tier prices, the fleet simulator's tiers and report): K and V for every layer, head and head
// dimension, at the model's KV dtype. Under tensor parallelism each GPU holds its share of the KV
// heads, and vLLM replicates the heads when TP exceeds their number, so a GPU never holds less than one.

import type { ModelProfile } from "./types.js";

/** KV heads one GPU holds under `tensorParallelSize` (vLLM replicates them when TP exceeds their number). */
export function kvHeadsPerRank(model: ModelProfile, tensorParallelSize = 1): number {
  return Math.max(1, Math.floor(model.kvHeads / tensorParallelSize));
}

/**
 * KV bytes one token occupies: on one GPU of `tensorParallelSize` (its share of the heads), or in all
 * (every head: what a shared cache server holds and sends) when it is left out.
 */
export function kvBytesPerToken(model: ModelProfile, tensorParallelSize = 1): number {
  return 2 * model.layers * kvHeadsPerRank(model, tensorParallelSize) * model.headDim * model.dtypeBytes;
}
