// Typed KV-cache events, as the engine model produces them and as vLLM publishes them.
// Pure types: the wire codec (msgpack, ZMQ) lives beside this file and maps to and from these.

/** Where a block lives. vLLM uses "GPU" for HBM and the offload medium (e.g. "CPU") for offload tiers. */
export type KvMedium = "GPU" | "CPU" | "LMCACHE" | (string & {});

/** A plain msgpack value: what vLLM's free-form fields (extra_keys) hold. */
export type MsgValue = null | boolean | number | bigint | string | Uint8Array | MsgValue[];

export interface BlockStored {
  type: "BlockStored";
  /** uint64 form of each block's digest (low 64 bits read big-endian), in chain order */
  blockHashes: bigint[];
  /** null for the first block of a chain (a published 0 is read as null: vLLM treats a falsy parent so) */
  parentBlockHash: bigint | null;
  /** blockHashes.length × blockSize token ids */
  tokenIds: number[];
  blockSize: number;
  loraId: number | null;
  medium: KvMedium | null;
  /** newer vLLM builds append the adapter name */
  loraName?: string | null;
  /** vLLM ≥ 0.20: per block, the extra keys that entered its hash (null for a block without any) */
  extraKeys?: (MsgValue[] | null)[];
  /** vLLM ≥ 0.20: the KV-cache group (hybrid-attention models have several; single-group models send 0) */
  groupIdx?: number;
  /** vLLM ≥ 0.22: the group's attention kind, e.g. "full_attention", "sliding_window", "mamba" */
  kvCacheSpecKind?: string;
  kvCacheSpecSlidingWindow?: number;
  /** vLLM ≥ 0.28: "LOCAL" or "REMOTE" relative to the publisher */
  locality?: string;
}

export interface BlockRemoved {
  type: "BlockRemoved";
  blockHashes: bigint[];
  medium: KvMedium | null;
  groupIdx?: number;
  locality?: string;
}

export interface AllBlocksCleared {
  type: "AllBlocksCleared";
}

export type KvEvent = BlockStored | BlockRemoved | AllBlocksCleared;

/** One scheduler step's events: vLLM's KVEventBatch [ts, events, data_parallel_rank]. */
export interface KvEventBatch {
  ts: number;
  events: KvEvent[];
  dataParallelRank: number | null;
}

/**
 * How events are laid out on the wire. vLLM ≤ 0.23 wrote each event as a tagged array
 * (`["BlockStored", ...]`, msgspec `array_like`); vLLM ≥ 0.24 writes a tagged map (`{"type": ...}`).
 * The batch around them is an array in both.
 */
export type KvEventLayout = "array" | "map";

/** The first vLLM release whose events are tagged maps (0.23.0 still wrote arrays). */
export const MAP_LAYOUT_SINCE = "0.24.0";
