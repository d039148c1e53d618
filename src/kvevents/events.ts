// Typed KV-cache events, as the engine model produces them and as vLLM publishes them.
// Pure types: the wire codec (msgpack, ZMQ) lives beside this file and maps to and from these.

/** Where a block lives. vLLM uses "GPU" for HBM and the offload medium (e.g. "CPU") for offload tiers. */
export type KvMedium = "GPU" | "CPU" | "LMCACHE" | (string & {});

export interface BlockStored {
  type: "BlockStored";
  /** uint64 form of each block's digest (low 64 bits read big-endian), in chain order */
  blockHashes: bigint[];
  parentBlockHash: bigint | null;
  /** blockHashes.length × blockSize token ids */
  tokenIds: number[];
  blockSize: number;
  loraId: number | null;
  medium: KvMedium | null;
  /** newer vLLM builds append the adapter name */
  loraName?: string | null;
}

export interface BlockRemoved {
  type: "BlockRemoved";
  blockHashes: bigint[];
  medium: KvMedium | null;
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
