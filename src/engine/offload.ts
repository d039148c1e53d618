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
   * Stores a run of consecutive blocks of one chain (parent = hash before the first); returns how many
   * were new. Evicts least recently used blocks to make room.
   */
  store(
    ids: readonly bigint[],
    parent: bigint | null,
    tokenIds: number[],
    blockSize: number,
    loraName: string | null,
  ): number {
    if (this.capacity === 0) return 0;
    let stored = 0;
    const fresh: bigint[] = [];
    const freshTokens: number[] = [];
    let freshParent: bigint | null = null;
    let prev = parent;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (this.lru.has(id)) {
        this.touch(id);
        // a gap splits the run: publish what we have so each BlockStored stays a contiguous chain
        this.flush(fresh, freshParent, freshTokens, blockSize, loraName);
        fresh.length = 0;
        freshTokens.length = 0;
      } else {
        while (this.lru.size >= this.capacity) this.evictOldest();
        this.lru.set(id, true);
        if (fresh.length === 0) freshParent = prev;
        fresh.push(id);
        stored++;
        for (let t = i * blockSize; t < (i + 1) * blockSize; t++) freshTokens.push(tokenIds[t]!);
      }
      prev = id;
    }
    this.flush(fresh, freshParent, freshTokens, blockSize, loraName);
    return stored;
  }

  private flush(
    ids: bigint[],
    parent: bigint | null,
    tokens: number[],
    blockSize: number,
    loraName: string | null,
  ): void {
    if (ids.length === 0 || !this.enableEvents) return;
    this.events.push({
      type: "BlockStored",
      blockHashes: ids.slice(),
      parentBlockHash: parent,
      tokenIds: tokens.slice(),
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
    if (this.enableEvents) this.events.push({ type: "BlockRemoved", blockHashes: [e.key], medium: "CPU" });
  }

  clear(): void {
    this.lru.clear();
  }
}
