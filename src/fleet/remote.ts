// The shared LMCache server of a fleet (`remote_url: lm://...`, our cache server) in virtual time: an
// LRU of chunk keys bounded by its memory, shared by every engine, or one such server per group of
// engines (one per node, as LMCache's multiprocess server runs). Puts are asynchronous in LMCache's
// remote backend, so they cost the engines nothing; gets are charged by the engine at `bandwidth`.
import { kvBytesPerToken, type ModelProfile } from "../models/index.js";
import { chunkKeys } from "./tokens.js";
import { InvalidConfigError } from "../errors/index.js";

/**
 * Default network rate for lm:// gets: the line rate of 100 GbE (12.5 GB/s). It is an upper bound:
 * the lm:// protocol runs one TCP connection per worker with requests served strictly in order
 * (LMCache's `lmcache.v1.server`), and LMCache's own local CPU path logs only ≈ 41–44 GiB/s over
 * PCIe (docs/engine-model.md). Scenarios set `shared_server.bandwidth_gbps` to what their network measures.
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

  /** leading keys present, as matchPrefix counts them, without touching them or the counters */
  peekPrefix(keys: readonly number[]): number {
    let n = 0;
    while (n < keys.length && this.lru.has(keys[n]!)) n++;
    return n;
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

export interface SharedServerOptions {
  /** memory of the shared cache server, bytes */
  bytes: number;
  /** bytes/s an engine gets from it */
  bandwidth: number;
  /** LMCache chunk_size, tokens */
  chunkTokens: number;
  /**
   * engines per server: one server, of `bytes`, for each run of this many engines in engine order (a
   * server per node); absent: one server for every engine
   */
  enginesPerServer?: number | undefined;
}

/** The server each engine loads from and stores to, by engine index: one for all, or one per group. */
export function cacheServersFor(
  o: SharedServerOptions,
  model: ModelProfile,
  engines: number,
): SharedCacheServer[] {
  const per = o.enginesPerServer ?? engines;
  if (!Number.isInteger(per) || per < 1)
    throw new InvalidConfigError(`engines per server: expected ≥ 1, got ${per}`);
  const servers: SharedCacheServer[] = [];
  const byEngine: SharedCacheServer[] = [];
  for (let e = 0; e < engines; e++)
    byEngine.push((servers[Math.floor(e / per)] ??= new SharedCacheServer(o, model)));
  return byEngine;
}

/** the servers' counters summed, each server once */
export function cacheServersStats(
  byEngine: readonly SharedCacheServer[],
): ReturnType<SharedCacheServer["stats"]> {
  const sum = { lookups: 0, hitTokens: 0, storedChunks: 0, evictedChunks: 0 };
  for (const s of new Set(byEngine)) {
    const t = s.stats();
    sum.lookups += t.lookups;
    sum.hitTokens += t.hitTokens;
    sum.storedChunks += t.storedChunks;
    sum.evictedChunks += t.evictedChunks;
  }
  return sum;
}

/** The shared server as the fleet's engines use it: chunk keys of a prompt, lookups, stores. */
export class SharedCacheServer {
  readonly store: RemoteStore;
  readonly chunkTokens: number;

  constructor(o: SharedServerOptions, model: ModelProfile) {
    const chunkBytes = o.chunkTokens * kvBytesPerToken(model);
    this.store = new RemoteStore(o.bytes, chunkBytes, o.bandwidth);
    this.chunkTokens = o.chunkTokens;
  }

  /** the prompt's chunk keys and the prefix tokens the server holds (looked up before admission) */
  lookup(prompt: readonly number[]): { keys: number[]; tokens: number } {
    const keys = chunkKeys(prompt, this.chunkTokens);
    return { keys, tokens: this.store.matchPrefix(keys) * this.chunkTokens };
  }

  /** the prefix tokens the server holds for the prompt, looked at only (what a router's tier index says) */
  held(prompt: readonly number[]): number {
    return this.store.peekPrefix(chunkKeys(prompt, this.chunkTokens)) * this.chunkTokens;
  }

  /** seconds to load `tokens` of KV from the server over its link */
  loadSeconds(tokens: number): number {
    return ((tokens / this.chunkTokens) * this.store.chunkBytes) / this.store.bandwidth;
  }

  stats(): { lookups: number; hitTokens: number; storedChunks: number; evictedChunks: number } {
    const s = this.store;
    return {
      lookups: s.lookups,
      hitTokens: s.hitChunks * this.chunkTokens,
      storedChunks: s.storedChunks,
      evictedChunks: s.evictedChunks,
    };
  }
}
