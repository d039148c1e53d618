// The shared tiers the engines load KV from: each configured cache server (`routing.cacheServers`,
// `switchyard cache-server --kv-events-port`) announces the LMCache chunks it holds and loses as KV
// events (medium LMCACHE_SHARED, one chunk hash per block, block_size the chunk size). Per server the
// router keeps the chunk hashes it holds (bounded: at most `maxChunks`, least recently stored evicted
// first, as the engines' block index) and knows which engines load from it, so that a prompt's prefix
// can be priced on each engine by where it is: the engine's GPU, its own offload tier, or this server
// (tier-pricing.ts). A gap in the events or a restarted server drops the server's index: what it
// holds is then under-estimated, never over-estimated.
import { LruMap } from "../../collections/lru-map.js";
import type { KvEvent } from "../../kvevents/events.js";
import type { StreamOptions } from "../../kvevents/sequencer.js";
import { curveClientFor, endpointIsLocal, type CurveClient, type CurveKeys } from "../../kvevents/curve.js";
import { KvEventSubscriber } from "../../kvevents/subscriber.js";
import { logger } from "../../obs/log.js";
import type { CacheServerConfig } from "../config/kv.js";

const log = logger("router.cache");

/** Bytes one chunk hash costs in V8 (an LruMap entry with a bigint key: 109 measured at a million). */
export const TIER_BYTES_PER_CHUNK = 120;

/** The chunk hashes one cache server holds, LRU-capped. */
export class TierIndex {
  private readonly chunks = new LruMap<bigint, true>();
  evictions = 0;
  /** events whose block_size is not the configured chunk size: dropped (their hashes cannot match) */
  mismatchedEvents = 0;

  constructor(
    readonly maxChunks: number,
    readonly chunkTokens: number,
  ) {}

  get size(): number {
    return this.chunks.size;
  }

  approxBytes(): number {
    return this.chunks.size * TIER_BYTES_PER_CHUNK;
  }

  capBytes(): number {
    return this.maxChunks * TIER_BYTES_PER_CHUNK;
  }

  has(hash: bigint): boolean {
    return this.chunks.has(hash);
  }

  apply(ev: KvEvent): void {
    switch (ev.type) {
      case "BlockStored":
        if (ev.blockSize !== this.chunkTokens) {
          this.mismatchedEvents++;
          return;
        }
        for (const h of ev.blockHashes) this.chunks.set(h, true);
        while (this.chunks.size > this.maxChunks) {
          this.chunks.shift();
          this.evictions++;
        }
        return;
      case "BlockRemoved":
        for (const h of ev.blockHashes) this.chunks.delete(h);
        return;
      case "AllBlocksCleared":
        this.purge();
        return;
    }
  }

  /** Forgets every chunk (a gap in the events, a restarted server). */
  purge(): number {
    const n = this.chunks.size;
    this.chunks.clear();
    return n;
  }

  /** Leading chunks of `hashes` the server holds (a chunk counts only if every one before it does). */
  match(hashes: ArrayLike<bigint>): number {
    let n = 0;
    while (n < hashes.length && this.chunks.has(hashes[n]!)) n++;
    return n;
  }
}

/** One configured cache server: its index, its subscription, and who loads from it over what. */
export interface SharedTier {
  readonly name: string;
  config: CacheServerConfig;
  readonly index: TierIndex;
  /** engines that load from it; null: every engine */
  engines: ReadonlySet<string> | null;
  /** bytes/s over the engines' link to it */
  bandwidth: number;
  sub: KvEventSubscriber | undefined;
  /** the router's CURVE keys it was subscribed with (null: plain); new keys subscribe it afresh */
  keys: CurveKeys | null;
  /** at least one batch delivered since subscribing */
  flowing: boolean;
  /** chunks dropped by purges (gaps, restarts) */
  purgedChunks: number;
}

/** The configured cache servers, subscribed to and followed as the config changes. */
export class SharedTiers {
  private readonly servers = new Map<string, SharedTier>();
  private closed = false;
  /** config changes applied one after another (each may wait on sockets) */
  private applying: Promise<void> = Promise.resolve();

  constructor(
    private readonly maxMessageBytes: () => number,
    /** routing.kvEvents.plain: events from beyond this host taken in plain on purpose, unwarned */
    private readonly plainMeant: () => boolean = () => false,
    /** the router's CURVE keys (routing.kvEvents.curve), null: plain */
    private readonly curveKeys: () => CurveKeys | null = () => null,
  ) {}

  /** every configured server (metrics, tests) */
  all(): Iterable<SharedTier> {
    return this.servers.values();
  }

  get(name: string): SharedTier | undefined {
    return this.servers.get(name);
  }

  /** The server `engine` loads from, if any is configured for it. */
  serverFor(engine: string): SharedTier | undefined {
    for (const s of this.servers.values()) if (s.engines === null || s.engines.has(engine)) return s;
    return undefined;
  }

  /**
   * Follows the configured list: a server whose engines or bandwidth changed keeps its index; one whose
   * events, replay, chunk size or cap changed is subscribed to afresh (its index started over); one no
   * longer configured is closed, a new one subscribed to.
   */
  apply(configs: readonly CacheServerConfig[]): Promise<void> {
    // one failed apply (a socket that would not close) must not stop the ones after it
    const next = () =>
      this.follow(configs).catch((err: unknown) =>
        log.error({ err: String(err) }, "cache servers: applying the configuration failed"),
      );
    this.applying = this.applying.then(next, next);
    return this.applying;
  }

  private async follow(configs: readonly CacheServerConfig[]): Promise<void> {
    const wanted = new Map(configs.map((c) => [c.name, c]));
    for (const [name, s] of this.servers) {
      const c = wanted.get(name);
      if (c && sameFeed(c, s.config) && s.keys === this.curveKeys()) {
        s.config = c;
        s.engines = c.engines ? new Set(c.engines) : null;
        s.bandwidth = (c.bandwidthGbps * 1e9) / 8;
        wanted.delete(name);
        continue;
      }
      this.servers.delete(name);
      await s.sub?.close();
      log.info({ cacheServer: name }, "cache server's KV events unsubscribed");
    }
    for (const c of wanted.values()) {
      if (this.closed) return;
      const s: SharedTier = {
        name: c.name,
        config: c,
        index: new TierIndex(c.maxChunks, c.chunkTokens),
        engines: c.engines ? new Set(c.engines) : null,
        bandwidth: (c.bandwidthGbps * 1e9) / 8,
        sub: undefined,
        keys: this.curveKeys(),
        flowing: false,
        purgedChunks: 0,
      };
      this.servers.set(c.name, s);
      const curve = this.security(c, s.keys);
      if (curve === undefined) continue;
      try {
        s.sub = await KvEventSubscriber.create({
          endpoint: c.events,
          label: `cache-server:${c.name}`,
          curve,
          ...this.streamOptions(s),
        });
        log.info(
          {
            cacheServer: c.name,
            endpoint: c.events,
            replay: c.replay ?? null,
            engines: c.engines ?? "every",
          },
          "subscribed to a cache server's KV events",
        );
      } catch (err) {
        log.error(
          { cacheServer: c.name, endpoint: c.events, err: (err as Error).message },
          "cannot subscribe to a cache server's KV events; its tier is not priced",
        );
      }
      if (this.closed) await s.sub?.close();
    }
  }

  /**
   * How to reach a server's events: CURVE with its key (its own serverKey, else the router's server.key),
   * plain (the router has no keys, or the server is marked plain), or undefined when the router has
   * keys but none for this server (not subscribed: taking it in plain would undo the keys).
   */
  private security(c: CacheServerConfig, keys: CurveKeys | null): CurveClient | null | undefined {
    const choice = curveClientFor(keys, c);
    if (choice.mode === "curve") return choice.curve;
    if (choice.mode === "no-key") {
      log.error(
        { cacheServer: c.name, endpoint: c.events, keys: keys?.source },
        "not subscribed to a cache server's KV events: the router has CURVE keys but no key for this server (its serverKey, or server.key; plain: true for a server without keys); its tier is not priced",
      );
      return undefined;
    }
    // whoever reaches a plain events port could announce chunks
    if (!endpointIsLocal(c.events) && !this.plainMeant() && !c.plain)
      log.warn(
        { cacheServer: c.name, endpoint: c.events },
        "a cache server's KV events are taken in plain from beyond this host: forged events would misprice routing. " +
          "Keep its events port on a private network (the chart's NetworkPolicy admits only the router) and set routing.kvEvents.plain: true to say so, " +
          "or give the server and the router CURVE keys (cache-server --kv-events-curve-dir, the server's serverKey)",
      );
    return null;
  }

  private streamOptions(s: SharedTier): StreamOptions {
    const purge = (reason: string) => {
      s.flowing = false;
      const n = s.index.purge();
      s.purgedChunks += n;
      log.warn({ cacheServer: s.name, reason, chunks: n }, "cache server's tier index dropped");
    };
    return {
      replayEndpoint: s.config.replay ?? null,
      maxMessageBytes: this.maxMessageBytes(),
      // what the server announced before the router joined, as far as its replay buffer reaches
      initialSeq: s.config.replay ? 0 : undefined,
      onBatch: (_seq, batch) => {
        s.flowing = true;
        const mismatched = s.index.mismatchedEvents;
        for (const ev of batch.events) s.index.apply(ev);
        // chunks of another size than configured match no prompt: say so once, or nothing is priced
        if (mismatched === 0 && s.index.mismatchedEvents > 0)
          log.warn(
            { cacheServer: s.name, chunkTokens: s.index.chunkTokens },
            "cache server announces chunks of another size than chunkTokens: none of them is priced",
          );
      },
      onGap: (from) => {
        // joining late without replay: what came before is simply unknown, nothing to drop
        if (from === 0 && s.index.size === 0) return;
        purge("gap");
      },
      onRestart: () => purge("restart"),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const subs = [...this.servers.values()].map((s) => s.sub?.close());
    this.servers.clear();
    await Promise.allSettled(subs);
  }
}

/** whether two settings of a server describe the same event feed and index (the rest can change in place) */
function sameFeed(a: CacheServerConfig, b: CacheServerConfig): boolean {
  return (
    a.events === b.events &&
    a.replay === b.replay &&
    a.chunkTokens === b.chunkTokens &&
    a.maxChunks === b.maxChunks &&
    a.serverKey === b.serverKey &&
    a.plain === b.plain
  );
}
