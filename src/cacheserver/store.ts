// The two tiers behind one face: memory first, then disk (an object being written to disk is still
// served from its RAM copy). A PUT supersedes the key in both tiers before it is stored.
import type { Logger } from "../obs/log.js";
import { DiskTier, type DiskEntry } from "./disk.js";
import { MemoryTier, type StoredObject } from "./memory.js";
import type { CacheMetrics } from "./metrics.js";
import { BufferPool } from "./payload.js";

export type Found = { tier: "memory"; obj: StoredObject } | { tier: "disk"; entry: DiskEntry } | undefined;

/** Receive buffers kept for reuse: min(budget/16, 256 MiB), held outside the budget. */
export function defaultPoolBytes(budgetBytes: number): number {
  return Math.min(Math.floor(budgetBytes / 16), 256 * 2 ** 20);
}

export class TieredStore {
  readonly memory: MemoryTier;
  readonly pool: BufferPool;

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
      (obj) => this.retire(obj),
    );
    this.pool = new BufferPool(defaultPoolBytes(budgetBytes));
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

  /** Returns false when the object could not be stored (it did not fit); the key is then absent. */
  put(obj: StoredObject): boolean {
    this.disk?.invalidate(obj.key);
    const ok = this.memory.put(obj);
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

  has(key: string): boolean {
    return this.memory.has(key) || (this.disk?.has(key) ?? false);
  }

  /** Every key, memory first, up to `maxBytes` of newline-joined text (LIST). */
  listKeys(maxBytes: number): string[] {
    const out: string[] = [];
    let bytes = 0;
    const add = (k: string) => {
      if (bytes + k.length + 1 > maxBytes) return false;
      out.push(k);
      bytes += k.length + 1;
      return true;
    };
    const seen = new Set<string>();
    for (const k of this.memory.keys()) {
      if (!add(k)) return out;
      seen.add(k);
    }
    for (const k of this.disk?.keys() ?? []) if (!seen.has(k) && !add(k)) return out;
    return out;
  }
}
