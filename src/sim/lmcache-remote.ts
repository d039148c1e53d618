// The sim's side of a shared LMCache server: prefix lookups before a request enters the engine
// (pipelined EXIST, then GET of the hit chunks with their bytes checked), and stores of computed
// chunks through a bounded queue drained in fenced batches (PUT has no reply; a HEALTH after the batch
// proves the server took it). One lm:// connection carries every TP rank's keys. Any failure, a
// timeout included, counts as an error and the request is computed instead: the engine keeps serving.
import { LmClient } from "../cacheserver/client.js";
import type { ObjectMeta } from "../cacheserver/protocol.js";
import type { Logger } from "../obs/log.js";
import { chunkKey, chunkPayload, digestAt, payloadMatches, type ChunkKeyScheme } from "./lmcache-keys.js";

/** Chunks waiting to be stored at most; beyond it the oldest are dropped (a slow server must not grow us). */
export const MAX_STORE_QUEUE = 4096;
/** Chunks per fenced PUT batch. */
const STORE_BATCH = 64;
/** After a failed connect, lookups skip the server this long instead of paying a connect per request. */
const RECONNECT_AFTER_MS = 1000;

export interface RemoteCounters {
  lookups: number;
  /** chunks found (whole prefix, verified) by lookups */
  lookupHitChunks: number;
  storedChunks: number;
  droppedChunks: number;
  bytesSent: number;
  bytesReceived: number;
  /** lookups or store batches that failed: connection refused or lost, timeout, bad bytes */
  errors: number;
  verifyFailures: number;
}

interface StoreItem {
  digests: Buffer;
  chunk: number;
}

class TimeoutError extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return p;
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/** end() waits for the peer's FIN; a hung server never sends it, so do not wait for long */
async function closeSoon(c: LmClient): Promise<void> {
  await withTimeout(c.close(), 1000, "LMCache close").catch(() => {});
}

export class LmcacheRemote {
  readonly counters: RemoteCounters = {
    lookups: 0,
    lookupHitChunks: 0,
    storedChunks: 0,
    droppedChunks: 0,
    bytesSent: 0,
    bytesReceived: 0,
    errors: 0,
    verifyFailures: 0,
  };
  private client: LmClient | null = null;
  private connecting: Promise<LmClient | null> | null = null;
  private downUntil = 0;
  private down = false;
  private readonly queue: (StoreItem | undefined)[] = [];
  private head = 0;
  private draining = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    readonly url: string,
    private readonly scheme: ChunkKeyScheme,
    private readonly meta: ObjectMeta,
    /** bytes actually sent per rank per chunk (modelled bytes × payload scale) */
    readonly payloadBytes: number,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Leading chunks of `digests` (first `numChunks`) the server holds for every rank; 0 on any failure. */
  async lookup(digests: Buffer, numChunks: number): Promise<number> {
    if (numChunks === 0 || this.closed) return 0;
    this.counters.lookups++;
    try {
      const hit = await withTimeout(this.lookupOnce(digests, numChunks), this.timeoutMs, "LMCache lookup");
      this.counters.lookupHitChunks += hit;
      return hit;
    } catch (err) {
      this.fail(err);
      return 0;
    }
  }

  private async lookupOnce(digests: Buffer, numChunks: number): Promise<number> {
    const client = await this.connection();
    if (!client) throw new Error("LMCache server unreachable");
    const ranks = this.scheme.worldSize;
    const keys: string[] = [];
    for (let c = 0; c < numChunks; c++)
      for (let r = 0; r < ranks; r++) keys.push(chunkKey(this.scheme, r, digestAt(digests, c)));
    const present = await Promise.all(keys.map((k) => client.exist(k)));
    let hit = 0;
    while (hit < numChunks && present.slice(hit * ranks, (hit + 1) * ranks).every(Boolean)) hit++;
    if (hit === 0) return 0;
    const objects = await Promise.all(keys.slice(0, hit * ranks).map((k) => client.get(k)));
    for (let i = 0; i < objects.length; i++) {
      const o = objects[i];
      // evicted between EXIST and GET, or not what we wrote: the prefix ends before that chunk
      if (!o || !payloadMatches(keys[i]!, o.payload, this.payloadBytes)) {
        if (o) this.counters.verifyFailures++;
        hit = Math.min(hit, Math.floor(i / ranks));
        break;
      }
      this.counters.bytesReceived += o.payload.length;
    }
    return hit;
  }

  /** Queues chunks [from, to) of a request for storing; drops the oldest queued chunks beyond the cap. */
  store(digests: Buffer, from: number, to: number): void {
    if (this.closed) return;
    for (let c = from; c < to; c++) {
      if (this.queued >= MAX_STORE_QUEUE) {
        this.queue[this.head++] = undefined;
        this.counters.droppedChunks++;
      }
      this.queue.push({ digests, chunk: c });
    }
    this.compact();
    void this.drain();
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  private async drain(): Promise<void> {
    if (this.draining || this.closed) return;
    this.draining = true;
    try {
      while (this.queued > 0 && !this.closed) {
        const client = await this.connection();
        if (!client) {
          this.retryLater();
          return;
        }
        const batch: StoreItem[] = [];
        while (batch.length < STORE_BATCH && this.queued > 0) {
          batch.push(this.queue[this.head]!);
          this.queue[this.head++] = undefined;
        }
        this.compact();
        try {
          await withTimeout(this.putBatch(client, batch), this.timeoutMs, "LMCache store");
          this.counters.storedChunks += batch.length;
        } catch (err) {
          this.fail(err);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async putBatch(client: LmClient, batch: StoreItem[]): Promise<void> {
    const puts: Promise<void>[] = [];
    let bytes = 0;
    for (const item of batch) {
      const digest = digestAt(item.digests, item.chunk);
      for (let r = 0; r < this.scheme.worldSize; r++) {
        const key = chunkKey(this.scheme, r, digest);
        puts.push(client.put(key, chunkPayload(key, this.payloadBytes), this.meta));
        bytes += this.payloadBytes;
      }
    }
    await Promise.all(puts);
    if (!(await client.health())) throw new Error("LMCache server answered HEALTH with a failure");
    this.counters.bytesSent += bytes;
  }

  private retryLater(): void {
    if (this.retryTimer || this.closed) return;
    const wait = Math.max(10, this.downUntil - Date.now());
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.drain();
    }, wait);
    this.retryTimer.unref();
  }

  private async connection(): Promise<LmClient | null> {
    if (this.client) return this.client;
    if (Date.now() < this.downUntil) return null;
    this.connecting ??= LmClient.connectUrl(this.url)
      .then((c) => {
        if (this.closed) {
          void c.close();
          return null;
        }
        this.client = c;
        if (this.down) this.log.info({ url: this.url }, "LMCache server reachable again");
        this.down = false;
        return c;
      })
      .catch((err: unknown) => {
        this.downUntil = Date.now() + RECONNECT_AFTER_MS;
        this.noteDown(err);
        return null;
      })
      .finally(() => {
        this.connecting = null;
      });
    return this.connecting;
  }

  private noteDown(err: unknown): void {
    if (this.down) return;
    this.down = true;
    this.log.warn(
      { url: this.url, err: (err as Error).message },
      "LMCache server unavailable: requests are computed, stores dropped, until it is back",
    );
  }

  private fail(err: unknown): void {
    this.counters.errors++;
    // a timed-out or broken connection may still owe replies: start over on a fresh one
    const c = this.client;
    this.client = null;
    if (c) void closeSoon(c);
    this.noteDown(err);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.queue.length = 0;
    this.head = 0;
    const c = this.client;
    this.client = null;
    if (c) await closeSoon(c);
  }
}
