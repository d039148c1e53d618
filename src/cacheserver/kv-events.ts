// The cache server's KV events (`--kv-events-port`): what it holds of LMCache's chunks, announced in
// vLLM's KV-event wire format (src/kvevents), so that a router can price a prompt's prefix by what
// every engine wired to this server could load from it. A chunk's hash is announced once its first
// chunk is loadable (every TP rank's shard held) and removed when its last one goes; the changes of
// one turn of the event loop go out as one batch. Bounded: the keys followed are capped (the oldest
// forgotten and announced removed: a router then under-estimates, never over-estimates).
// See docs/cache-server.md#kv-events.
import type { BlockRemoved, BlockStored, KvEvent } from "../kvevents/events.js";
import type { KvEventPublisher } from "../kvevents/publisher.js";
import { parseChunkKey } from "../protocol/lmcache-chunks.js";
import { keyIn } from "./namespace.js";
import { LMCACHE_CHUNK_TOKENS } from "../config/vllm-defaults.js";

/** The medium of the cache server's events: LMCache chunks on a server every wired engine loads from. */
export const SHARED_TIER_MEDIUM = "LMCACHE_SHARED";
/** LMCache's default chunk_size */
export const DEFAULT_EVENT_CHUNK_TOKENS = LMCACHE_CHUNK_TOKENS;
/** shard keys followed at most (each costs its key string and a small record) */
export const DEFAULT_MAX_EVENT_KEYS = 1_000_000;
/** keys waiting for a look before they are looked at without waiting for the turn to end */
const MAX_DIRTY = 65_536;
/**
 * Keys looked at per turn of the event loop when a start announces what its disk tier kept: a few
 * milliseconds of work, so that requests are answered between slices however large the disk.
 */
export const ANNOUNCE_SLICE = 1024;

export interface ChunkEventsOptions {
  publisher: KvEventPublisher;
  /** whether a (namespace-scoped) key is held in memory or on disk now */
  held: (scopedKey: string) => boolean;
  /** tokens per chunk (LMCache's chunk_size), written as each event's block_size */
  chunkTokens: number;
  /** the namespace whose keys are announced (DEFAULT_NAMESPACE: the unnamed one) */
  namespace: string;
  maxKeys?: number;
}

export interface ChunkEventStats {
  /** chunk hashes announced stored, removed */
  stored: number;
  removed: number;
  batches: number;
  /** keys forgotten at the cap while still held */
  forgotten: number;
}

interface Followed {
  /** the chunk this shard belongs to */
  chunk: string;
  hash: bigint;
  worldSize: number;
}

export class ChunkAnnouncer {
  readonly stats: ChunkEventStats = { stored: 0, removed: 0, batches: 0, forgotten: 0 };
  private readonly maxKeys: number;
  /** scoped keys that may have changed since the last look */
  private readonly dirty = new Set<string>();
  /** the shard keys held, oldest first */
  private readonly keys = new Map<string, Followed>();
  /** chunk → shards held */
  private readonly shards = new Map<string, number>();
  /** hash → loadable chunks holding it (those announced) */
  private readonly loadable = new Map<bigint, number>();
  /** this look's net change per hash: true stored, false removed */
  private readonly changes = new Map<bigint, boolean>();
  private scheduled: NodeJS.Immediate | undefined;
  private closed = false;

  constructor(private readonly o: ChunkEventsOptions) {
    this.maxKeys = o.maxKeys ?? DEFAULT_MAX_EVENT_KEYS;
  }

  /** keys followed now */
  get size(): number {
    return this.keys.size;
  }

  /** The store says `scopedKey` may have been stored or gone. */
  touched(scopedKey: string): void {
    if (this.closed || keyIn(this.o.namespace, scopedKey) === undefined) return;
    this.dirty.add(scopedKey);
    if (this.dirty.size >= MAX_DIRTY) this.flush();
    else this.scheduled ??= setImmediate(() => this.flush());
  }

  /**
   * Announces `scopedKeys` (what the disk tier kept from an earlier run) a slice per turn of the event
   * loop, each slice published as one batch, so that a large disk does not hold up the requests the
   * server answers meanwhile. Resolves once every key has been looked at (or the announcer closed).
   */
  async announceAll(scopedKeys: readonly string[]): Promise<void> {
    let i = 0;
    while (i < scopedKeys.length && !this.closed) {
      const end = Math.min(scopedKeys.length, i + ANNOUNCE_SLICE);
      for (; i < end; i++) this.touched(scopedKeys[i]!);
      this.flush();
      if (i < scopedKeys.length) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Looks at every touched key and publishes what changed, as one batch. */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    for (const scoped of this.dirty) {
      const held = this.o.held(scoped);
      const followed = this.keys.get(scoped);
      if (held && !followed) this.follow(scoped);
      else if (!held && followed) this.unfollow(scoped, followed);
    }
    this.dirty.clear();
    this.publish();
  }

  private follow(scoped: string): void {
    const k = parseChunkKey(keyIn(this.o.namespace, scoped)!);
    if (!k) return;
    while (this.keys.size >= this.maxKeys) {
      const [oldest, f] = this.keys.entries().next().value!;
      this.unfollow(oldest, f);
      this.stats.forgotten++;
    }
    const f: Followed = { chunk: k.chunk, hash: k.hash, worldSize: k.worldSize };
    this.keys.set(scoped, f);
    const n = (this.shards.get(f.chunk) ?? 0) + 1;
    this.shards.set(f.chunk, n);
    if (n === f.worldSize) this.loadableBy(f.hash, +1);
  }

  private unfollow(scoped: string, f: Followed): void {
    this.keys.delete(scoped);
    const n = (this.shards.get(f.chunk) ?? 1) - 1;
    if (n > 0) this.shards.set(f.chunk, n);
    else this.shards.delete(f.chunk);
    if (n === f.worldSize - 1) this.loadableBy(f.hash, -1);
  }

  private loadableBy(hash: bigint, d: 1 | -1): void {
    const before = this.loadable.get(hash) ?? 0;
    const after = before + d;
    if (after > 0) this.loadable.set(hash, after);
    else this.loadable.delete(hash);
    if ((before === 0) === (after === 0)) return;
    // stored then removed in one look (or the reverse) is no change at all
    if (this.changes.has(hash)) this.changes.delete(hash);
    else this.changes.set(hash, after > 0);
  }

  private publish(): void {
    if (this.changes.size === 0) return;
    const stored: bigint[] = [];
    const removed: bigint[] = [];
    for (const [h, s] of this.changes) (s ? stored : removed).push(h);
    this.changes.clear();
    const events: KvEvent[] = [];
    if (removed.length > 0) {
      const ev: BlockRemoved = { type: "BlockRemoved", blockHashes: removed, medium: SHARED_TIER_MEDIUM };
      events.push(ev);
    }
    if (stored.length > 0) {
      const ev: BlockStored = {
        type: "BlockStored",
        blockHashes: stored,
        parentBlockHash: null,
        tokenIds: [],
        blockSize: this.o.chunkTokens,
        loraId: null,
        medium: SHARED_TIER_MEDIUM,
      };
      events.push(ev);
    }
    this.stats.stored += stored.length;
    this.stats.removed += removed.length;
    this.stats.batches++;
    this.o.publisher.publish({ ts: Date.now() / 1000, events, dataParallelRank: null });
  }

  /** Publishes what is pending, then stops listening to the store. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }
}
