// The shared LMCache server of a fleet (`remote_url: lm://...`, our cache server) in virtual time: an
// LRU of chunk keys bounded by its memory, shared by every engine. Puts are asynchronous in LMCache's
// remote backend, so they cost the engines nothing; gets are charged by the engine at `bandwidth`.

/**
 * Default network rate for lm:// gets: the line rate of 100 GbE (12.5 GB/s). It is an upper bound:
 * the lm:// protocol runs one TCP connection per worker with requests served strictly in order
 * (LMCache's `lmcache.v1.server`), and LMCache's own local CPU path logs only ≈ 41–44 GiB/s over
 * PCIe (benchmarks.md). Scenarios set `shared_server.bandwidth_gbps` to what their network measures.
 */
export const REMOTE_BANDWIDTH_BPS = 100e9 / 8;

export class RemoteStore {
  private readonly lru = new Map<number, true>();
  readonly capacityChunks: number;
  lookups = 0;
  hitChunks = 0;
  storedChunks = 0;
  evictedChunks = 0;

  constructor(
    capacityBytes: number,
    readonly chunkBytes: number,
    readonly bandwidth: number,
  ) {
    this.capacityChunks = Math.max(0, Math.floor(capacityBytes / chunkBytes));
  }

  get size(): number {
    return this.lru.size;
  }

  /** leading keys present (a chunk counts only if every one before it does); touches them */
  matchPrefix(keys: readonly number[]): number {
    this.lookups++;
    let n = 0;
    while (n < keys.length && this.lru.has(keys[n]!)) n++;
    for (let i = 0; i < n; i++) {
      this.lru.delete(keys[i]!);
      this.lru.set(keys[i]!, true);
    }
    this.hitChunks += n;
    return n;
  }

  put(keys: readonly number[], from: number, to: number): void {
    if (this.capacityChunks === 0) return;
    for (let i = from; i < to && i < keys.length; i++) {
      const k = keys[i]!;
      if (this.lru.delete(k)) {
        this.lru.set(k, true);
        continue;
      }
      while (this.lru.size >= this.capacityChunks) {
        this.lru.delete(this.lru.keys().next().value!);
        this.evictedChunks++;
      }
      this.lru.set(k, true);
      this.storedChunks++;
    }
  }
}
