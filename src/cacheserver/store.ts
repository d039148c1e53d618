// The two tiers behind one face: memory first, then disk (an object being written to disk is still
// served from its RAM copy). A PUT supersedes the key in both tiers before it is stored. Keys here
// are already scoped to their namespace (namespace.ts); only LIST needs to know about namespaces.
import type { Logger } from "../obs/log.js";
import { DiskTier, type DiskEntry } from "./disk.js";
import { MemoryTier, PER_OBJECT_OVERHEAD, type StoredObject } from "./memory.js";
import type { CacheMetrics } from "./metrics.js";
import { keyIn } from "./namespace.js";
import { BufferPool, maxHeldBytes } from "./payload.js";

export type Found = { tier: "memory"; obj: StoredObject } | { tier: "disk"; entry: DiskEntry } | undefined;

/** Receive buffers kept for reuse: min(budget/16, 256 MiB), held outside the budget. */
export function defaultPoolBytes(budgetBytes: number): number {
  return Math.min(Math.floor(budgetBytes / 16), 256 * 2 ** 20);
}

export class TieredStore {
  readonly memory: MemoryTier;
  readonly pool: BufferPool;
  /**
   * hears every (scoped) key that may have been stored or gone from both tiers: a PUT, an object that
   * left memory with no disk write holding it, a disk file dropped (the KV events, kv-events.ts, look
   * again once the turn ends)
   */
  onKey: ((key: string) => void) | undefined;

  constructor(
    budgetBytes: number,
    readonly disk: DiskTier | undefined,
    private readonly metrics: CacheMetrics | undefined,
    private readonly log: Logger,
  ) {
    this.memory = new MemoryTier(
      budgetBytes,
      disk ? (obj, released) => disk.offer(obj, released) : undefined,
      (outcome) => (outcome === "offloaded" ? metrics?.evictOffloaded.inc() : metrics?.evictDropped.inc()),
      undefined,
      (obj) => {
        this.retire(obj);
        this.onKey?.(obj.key);
      },
    );
    this.pool = new BufferPool(defaultPoolBytes(budgetBytes));
    if (disk) disk.onDrop = (key) => this.onKey?.(key);
  }

  /** A GET reply with `obj`'s payload was queued on a socket; `sent` must follow when it is written. */
  sending(obj: StoredObject): void {
    obj.sending = (obj.sending ?? 0) + 1;
  }

  sent(obj: StoredObject): void {
    obj.sending = (obj.sending ?? 1) - 1;
    if (obj.retired && obj.sending === 0) this.recycle(obj);
  }

  private retire(obj: StoredObject): void {
    if (obj.retired) return;
    obj.retired = true;
    if (!obj.sending) this.recycle(obj);
  }

  private recycle(obj: StoredObject): void {
    if (obj.payload.recyclable) this.pool.release(obj.payload.chunks[0]!);
  }

  /** What a PUT of `length` bytes under `key` (scoped) reserves: the most its object can cost. */
  static reservationBytes(key: string, length: number, directReads: boolean): number {
    return maxHeldBytes(length, directReads) + key.length + PER_OBJECT_OVERHEAD;
  }

  /**
   * The largest PUT whose reservation fits in `residentBudget` with the longest scoped key (150 key
   * bytes, a 63-character namespace and its separator): a larger one could never be stored, and is
   * refused at its header.
   */
  static largestObject(residentBudget: number, directReads: boolean): number {
    const key = "k".repeat(150 + 64);
    const fixed = key.length + PER_OBJECT_OVERHEAD + 256;
    // direct: exact; fallback: start from the per-chunk overhead's share, then step down to fit
    let n = directReads
      ? residentBudget - fixed
      : Math.floor(((residentBudget - fixed - 256) * 32768) / (32768 + 512));
    while (n > 0 && TieredStore.reservationBytes(key, n, directReads) > residentBudget) n--;
    return Math.max(0, n);
  }

  /**
   * Reserves room for a PUT whose header just arrived (evicting LRU objects for it); false when PUTs
   * already in progress hold the rest of the budget. `unreserve` must follow exactly once.
   */
  reserve(bytes: number, ns: string): boolean {
    return this.memory.reserve(bytes, ns);
  }

  unreserve(bytes: number, ns: string): void {
    this.memory.unreserve(bytes, ns);
  }

  /** Returns false when the object could not be stored (it did not fit); the key is then absent. */
  put(obj: StoredObject): boolean {
    this.disk?.invalidate(obj.key);
    const ok = this.memory.put(obj);
    this.onKey?.(obj.key);
    if (!ok) {
      this.retire(obj);
      this.metrics?.rejectedPuts.inc();
      this.log.warn({ key: obj.key, bytes: obj.payload.length }, "PUT not stored: no room in memory");
    }
    return ok;
  }

  find(key: string): Found {
    const obj = this.memory.get(key);
    if (obj) return { tier: "memory", obj };
    const d = this.disk?.lookup(key);
    if (!d) return undefined;
    if ("pending" in d) return { tier: "memory", obj: d.pending };
    return { tier: "disk", entry: d.entry };
  }

  /** Removes `key` from both tiers (RESP DEL); true when either held it. */
  delete(key: string): boolean {
    const held = this.has(key);
    this.memory.delete(key);
    this.disk?.invalidate(key);
    return held;
  }

  has(key: string): boolean {
    return this.memory.has(key) || (this.disk?.has(key) ?? false);
  }

  /** The keys of namespace `ns` as its clients wrote them, memory first, up to `maxBytes` of newline-joined text (LIST). */
  listKeys(maxBytes: number, ns: string): string[] {
    const out: string[] = [];
    let bytes = 0;
    const add = (k: string) => {
      if (bytes + k.length + 1 > maxBytes) return false;
      out.push(k);
      bytes += k.length + 1;
      return true;
    };
    const seen = new Set<string>();
    for (const stored of this.memory.keys()) {
      const k = keyIn(ns, stored);
      if (k === undefined) continue;
      if (!add(k)) return out;
      seen.add(stored);
    }
    for (const stored of this.disk?.keys() ?? []) {
      const k = seen.has(stored) ? undefined : keyIn(ns, stored);
      if (k !== undefined && !add(k)) return out;
    }
    return out;
  }
}
