// LMCache's local CPU backend as the engine sees it: KV kept in chunks of `chunk_size` tokens
// (default 256) in an LRU bounded by max_local_cpu_size, looked up by prefix (a chunk is usable only if
// every chunk before it is), stored when a prompt chunk is computed. A chunk's identity is the vLLM
// block hash of its last block: block hashes chain, so it names the whole prefix up to the chunk end,
// exactly as LMCache's chained chunk keys do. No I/O: the engine charges the copy time to its steps.

import { LruMap } from "../collections/lru-map.js";

/** LMCache logs ≈ 41–44 GiB/s for local CPU store/retrieve; we take the low end. */
export const LMCACHE_LOCAL_CPU_BPS = 41 * 2 ** 30;

export class ChunkTier {
  readonly capacity: number;
  /** chunk keys, least recently used first */
  private readonly lru = new LruMap<bigint, true>();
  evicted = 0;
  /**
   * bumped whenever an entry leaves (eviction, clear): a run of keys found present at the same value is
   * still present, so a blocked queue head need not look its prefix up again every step
   */
  epoch = 0;

  constructor(capacityChunks: number) {
    this.capacity = Math.max(0, Math.floor(capacityChunks));
  }

  get size(): number {
    return this.lru.size;
  }

  has(key: bigint): boolean {
    return this.lru.has(key);
  }

  touch(key: bigint): void {
    this.lru.touch(key);
  }

  /** stores one chunk; false when it was already there (then it is only touched) */
  store(key: bigint): boolean {
    if (this.capacity === 0) return false;
    if (this.lru.has(key)) {
      this.touch(key);
      return false;
    }
    while (this.lru.size >= this.capacity) {
      if (!this.lru.shift()) break;
      this.evicted++;
      this.epoch++;
      this.epoch++;
    }
    this.lru.set(key, true);
    return true;
  }

  clear(): void {
    this.epoch++;
    this.lru.clear();
  }
}
