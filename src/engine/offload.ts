// The native CPU offload tier (vLLM's OffloadingConnector, --kv-offloading-backend native): a bounded
// LRU of block hashes in host memory. Blocks are stored write-through as they become full and computed
// on the GPU (what the OffloadingConnector does), so a block evicted from HBM later is still on the host.
// Loads bring a prefix back at the host-link rate instead of recomputing it.
import type { KvEvent } from "../kvevents/events.js";
import { LruMap } from "../collections/lru-map.js";

export class CpuTier {
  readonly capacity: number;
  /** block hashes, least recently used first */
  private readonly lru = new LruMap<bigint, true>();
  enableEvents = true;
  evicted = 0;
  /**
   * bumped whenever an entry leaves (eviction, clear): a run of keys found present at the same value is
   * still present, so a blocked queue head need not look its prefix up again every step
   */
  epoch = 0;

  /** `events` is the engine's per-step sink, shared with the GPU pool so the order is kept */
  constructor(
    capacityBlocks: number,
    readonly events: KvEvent[] = [],
  ) {
    this.capacity = Math.max(0, Math.floor(capacityBlocks));
  }

  get size(): number {
    return this.lru.size;
  }

  has(id: bigint): boolean {
    return this.lru.has(id);
  }

  touch(id: bigint): void {
    this.lru.touch(id);
  }

  /**
   * Stores blocks [from, to) of one chain (`ids` is the request's whole chain, `tokens` its token ids);
   * returns how many were new. Evicts least recently used blocks to make room. Reads the request's own
   * arrays: a fleet stores millions of blocks, and only the KV events need copies.
   */
  store(
    ids: readonly bigint[],
    from: number,
    to: number,
    tokens: ArrayLike<number>,
    blockSize: number,
    loraName: string | null,
  ): number {
    if (this.capacity === 0) return 0;
    let stored = 0;
    // a run of new blocks starts at runStart; a block already present splits it, so each BlockStored
    // stays a contiguous chain
    let runStart = -1;
    for (let i = from; i < to; i++) {
      const id = ids[i]!;
      if (this.lru.has(id)) {
        this.touch(id);
        if (runStart >= 0) this.publish(ids, runStart, i, tokens, blockSize, loraName);
        runStart = -1;
      } else {
        while (this.lru.size >= this.capacity) this.evictOldest();
        this.lru.set(id, true);
        if (runStart < 0) runStart = i;
        stored++;
      }
    }
    if (runStart >= 0) this.publish(ids, runStart, to, tokens, blockSize, loraName);
    return stored;
  }

  private publish(
    ids: readonly bigint[],
    start: number,
    end: number,
    tokens: ArrayLike<number>,
    blockSize: number,
    loraName: string | null,
  ): void {
    if (!this.enableEvents) return;
    const tokenIds: number[] = [];
    for (let t = start * blockSize; t < end * blockSize; t++) tokenIds.push(tokens[t]!);
    this.events.push({
      type: "BlockStored",
      blockHashes: ids.slice(start, end),
      parentBlockHash: start > 0 ? ids[start - 1]! : null,
      tokenIds,
      blockSize,
      loraId: null,
      medium: "CPU",
      loraName,
    });
  }

  private evictOldest(): void {
    const e = this.lru.shift();
    if (!e) return;
    this.evicted++;
    this.epoch++;
    if (this.enableEvents) this.events.push({ type: "BlockRemoved", blockHashes: [e.key], medium: "CPU" });
  }

  clear(): void {
    this.epoch++;
    this.lru.clear();
  }
}
