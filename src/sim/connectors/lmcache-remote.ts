// The sim's side of a shared LMCache server: prefix lookups before a request enters the engine
// (pipelined EXIST, then GET of the hit chunks with their bytes checked), and stores of computed
// chunks through a bounded queue drained in batches. PUT has no reply, and no probe follows it: the
// server handles a connection's requests in order, so the next lookup's replies prove the stores
// before it were taken, and a server that stops reading shows as a write that does not finish in time.
// One lm:// connection carries every TP rank's keys. Any failure, a timeout included, counts as an
// error and the request is computed instead: the engine keeps serving. A lost connection is
// reopened after a backoff that doubles up to 30 s (with jitter), never once per request.
import { LmClient } from "../../cacheserver/client.js";
import type { ObjectMeta } from "../../cacheserver/protocol.js";
import type { Logger } from "../../obs/log.js";
import { chunkKey, chunkPayload, payloadMatches, type ChunkKeyScheme } from "./lmcache-keys.js";
import { PeerError } from "../../errors/index.js";

/** Chunks waiting to be stored at most; beyond it the oldest are dropped (a slow server must not grow us). */
export const MAX_STORE_QUEUE = 4096;
/** Chunks per PUT batch. */
const STORE_BATCH = 64;
/** After a failure the server is left alone this long, doubling per failure up to the max. */
export const RECONNECT_MIN_MS = 250;
export const RECONNECT_MAX_MS = 30_000;

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
  hashes: BigUint64Array;
  chunk: number;
}

class TimeoutError extends PeerError {}

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
  /** the next wait after a failure */
  private backoffMs = RECONNECT_MIN_MS;
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

  /** Leading chunks of `hashes` (first `numChunks`) the server holds for every rank; 0 on any failure. */
  async lookup(hashes: BigUint64Array, numChunks: number): Promise<number> {
    if (numChunks === 0 || this.closed) return 0;
    this.counters.lookups++;
    try {
      const hit = await withTimeout(this.lookupOnce(hashes, numChunks), this.timeoutMs, "LMCache lookup");
      this.counters.lookupHitChunks += hit;
      this.backoffMs = RECONNECT_MIN_MS;
      return hit;
    } catch (err) {
      this.fail(err);
      return 0;
    }
  }

  private async lookupOnce(hashes: BigUint64Array, numChunks: number): Promise<number> {
    const client = await this.connection();
    if (!client) throw new PeerError("LMCache server unreachable");
    const ranks = this.scheme.worldSize;
    const keys: string[] = [];
    for (let c = 0; c < numChunks; c++)
      for (let r = 0; r < ranks; r++) keys.push(chunkKey(this.scheme, r, hashes[c]!));
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
  store(hashes: BigUint64Array, from: number, to: number): void {
    if (this.closed) return;
    for (let c = from; c < to; c++) {
      if (this.queued >= MAX_STORE_QUEUE) {
        this.queue[this.head++] = undefined;
        this.counters.droppedChunks++;
      }
      this.queue.push({ hashes, chunk: c });
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
          this.backoffMs = RECONNECT_MIN_MS;
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
      const hash = item.hashes[item.chunk]!;
      for (let r = 0; r < this.scheme.worldSize; r++) {
        const key = chunkKey(this.scheme, r, hash);
        puts.push(client.put(key, chunkPayload(key, this.payloadBytes), this.meta));
        bytes += this.payloadBytes;
      }
    }
    // written, not acknowledged: lm:// has no reply to PUT, and a probe per batch would double the
    // round trips; a server that drops them shows as an error on the connection
    await Promise.all(puts);
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
        this.backOff();
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

  /** Leaves the server alone for the current backoff (± 20 %), then doubles it. */
  private backOff(): void {
    const jitter = 0.8 + 0.4 * Math.random();
    this.downUntil = Date.now() + Math.round(this.backoffMs * jitter);
    this.backoffMs = Math.min(RECONNECT_MAX_MS, this.backoffMs * 2);
  }

  private fail(err: unknown): void {
    this.counters.errors++;
    this.backOff();
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
