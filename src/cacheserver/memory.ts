// The memory tier: a byte-budgeted LRU over stored objects, on a JS Map's insertion order (not O(1) on
// V8, src/collections/lru-map.ts, but a tier holds thousands of megabyte chunks at most, so the walk
// costs far less than copying one payload). The budget counts payloads, a per-object overhead, evicted
// payloads whose disk write is in flight (a slice set aside for them) and the reservations of PUTs in
// progress, so the total never exceeds it; each namespace is capped to its share and evicts only its
// own. See docs/cache-server.md#memory-and-eviction and the sections after it.
import { namespaceOfKey } from "./namespace.js";
import type { Payload } from "./payload.js";
import type { ObjectMeta } from "./protocol.js";

export interface StoredObject {
  key: string;
  payload: Payload;
  meta: ObjectMeta;
  /** GET replies still in the socket's queue with this payload (its buffer is not reused before 0) */
  sending?: number;
  /** no tier holds it any more */
  retired?: boolean;
}

/** Map entry, key and meta bookkeeping, charged per object so that millions of tiny objects stay bounded. */
export const PER_OBJECT_OVERHEAD = 256;

export function objectCost(obj: StoredObject): number {
  return obj.payload.heldBytes + obj.key.length + PER_OBJECT_OVERHEAD;
}

/**
 * Where an evicted object goes. Returns true when it took the object; it must then call `released`
 * once the payload is no longer held (disk write done or abandoned).
 */
export type EvictionSink = (obj: StoredObject, released: () => void) => boolean;

export interface MemoryStats {
  objects: number;
  usedBytes: number;
  pendingOffloadBytes: number;
  budgetBytes: number;
}

export function defaultPendingOffload(budgetBytes: number): number {
  return Math.min(Math.floor(budgetBytes / 8), 256 * 2 ** 20);
}

/** One namespace's share of the resident budget: what its objects hold, and what its PUTs reserved. */
interface NamespaceUse {
  resident: number;
  reserved: number;
}

export class MemoryTier {
  private readonly objects = new Map<string, StoredObject>();
  private resident = 0;
  private pendingOffload = 0;
  /** bytes promised to PUTs in progress (their receive buffers), released at commit or abandon */
  private reserved = 0;
  /**
   * per namespace that has stored or reserved; namespaces come from the server's own listeners and
   * address rules (never from clients), so this holds the configured few and is never pruned
   */
  private readonly byNamespace = new Map<string, NamespaceUse>();
  /** the most a namespace may hold (bytes of the resident budget); the whole of it by default */
  namespaceCap: (ns: string) => number = () => Infinity;

  constructor(
    readonly budgetBytes: number,
    private readonly sink: EvictionSink | undefined,
    private readonly onEvict: (outcome: "offloaded" | "dropped", obj: StoredObject) => void,
    /** bytes of evicted payloads that may wait for the disk at once; beyond it victims are dropped */
    readonly maxPendingOffload = sink ? defaultPendingOffload(budgetBytes) : 0,
    /** called once an object has left memory and no disk write holds it */
    private readonly onRetire: (obj: StoredObject) => void = () => {},
  ) {
    this.residentBudget = budgetBytes - maxPendingOffload;
  }

  /** what resident objects may take: the budget less the slice kept for disk writes */
  readonly residentBudget: number;

  get usedBytes(): number {
    return this.resident + this.pendingOffload + this.reserved;
  }

  get reservedBytes(): number {
    return this.reserved;
  }

  /**
   * Reserves `bytes` for a PUT in progress, evicting least recently used objects to make room.
   * Returns false (and evicts nothing) when reservations already made leave no room: those cannot be
   * evicted, and granting it would put receive buffers beyond the budget.
   */
  reserve(bytes: number, ns = ""): boolean {
    if (this.reserved + bytes > this.residentBudget) return false;
    const use = this.use(ns);
    if (!this.makeRoomIn(ns, use, bytes)) return false;
    while (this.resident + this.reserved + bytes > this.residentBudget) {
      if (!this.evictOldest()) return false; // unreachable: resident > 0 whenever this loops
    }
    this.reserved += bytes;
    use.reserved += bytes;
    return true;
  }

  /** Gives back what `reserve(bytes, ns)` took: the PUT was committed (first) or abandoned. */
  unreserve(bytes: number, ns = ""): void {
    this.reserved = Math.max(0, this.reserved - bytes);
    const use = this.byNamespace.get(ns);
    if (use) use.reserved = Math.max(0, use.reserved - bytes);
  }

  /** bytes namespace `ns` holds now: its objects and its reservations */
  namespaceBytes(ns: string): number {
    const use = this.byNamespace.get(ns);
    return use ? use.resident + use.reserved : 0;
  }

  /**
   * Evicts `ns`'s own least recently used objects until `bytes` more fit under its cap; false (nothing
   * more evicted) when its reservations alone leave no room.
   */
  private makeRoomIn(ns: string, use: NamespaceUse, bytes: number): boolean {
    const cap = this.namespaceCap(ns);
    if (use.reserved + bytes > cap) return false;
    if (use.resident + use.reserved + bytes <= cap) return true;
    for (const obj of this.objects.values()) {
      if (namespaceOfKey(obj.key) !== ns) continue;
      this.evict(obj);
      if (use.resident + use.reserved + bytes <= cap) return true;
    }
    return use.resident + use.reserved + bytes <= cap;
  }

  private use(ns: string): NamespaceUse {
    let use = this.byNamespace.get(ns);
    if (!use) this.byNamespace.set(ns, (use = { resident: 0, reserved: 0 }));
    return use;
  }

  stats(): MemoryStats {
    return {
      objects: this.objects.size,
      usedBytes: this.usedBytes,
      pendingOffloadBytes: this.pendingOffload,
      budgetBytes: this.budgetBytes,
    };
  }

  /** A hit: returns the object and marks it most recently used. */
  get(key: string): StoredObject | undefined {
    const obj = this.objects.get(key);
    if (obj) {
      this.objects.delete(key);
      this.objects.set(key, obj);
    }
    return obj;
  }

  has(key: string): boolean {
    return this.objects.has(key);
  }

  /**
   * Stores `obj`, evicting least recently used objects until it fits. Returns false (and stores
   * nothing) when it cannot fit even then: larger than the budget less what PUTs in progress reserved.
   * A PUT's own reservation is given back just before its object is put, so it fits without eviction.
   */
  put(obj: StoredObject): boolean {
    const cost = objectCost(obj);
    this.delete(obj.key);
    if (cost > this.residentBudget - this.reserved) return false;
    const ns = namespaceOfKey(obj.key);
    const use = this.use(ns);
    if (!this.makeRoomIn(ns, use, cost)) return false;
    while (this.resident + this.reserved + cost > this.residentBudget) {
      if (!this.evictOldest()) return false;
    }
    this.objects.set(obj.key, obj);
    this.resident += cost;
    use.resident += cost;
    return true;
  }

  delete(key: string): boolean {
    const old = this.objects.get(key);
    if (!old) return false;
    this.remove(old);
    this.onRetire(old);
    return true;
  }

  /** Takes `obj` out of the map and out of its namespace's count. */
  private remove(obj: StoredObject): number {
    const cost = objectCost(obj);
    this.objects.delete(obj.key);
    this.resident -= cost;
    const use = this.byNamespace.get(namespaceOfKey(obj.key));
    if (use) use.resident -= cost;
    return cost;
  }

  keys(): IterableIterator<string> {
    return this.objects.keys();
  }

  private evictOldest(): boolean {
    const first = this.objects.values().next();
    if (first.done) return false;
    this.evict(first.value);
    return true;
  }

  /** Evicts `victim`: to the disk tier when it takes it, else dropped. */
  private evict(victim: StoredObject): void {
    const cost = this.remove(victim);
    if (this.sink && this.pendingOffload + cost <= this.maxPendingOffload) {
      this.pendingOffload += cost;
      let released = false;
      const took = this.sink(victim, () => {
        if (released) return;
        released = true;
        this.pendingOffload -= cost;
        this.onRetire(victim);
      });
      if (took) {
        this.onEvict("offloaded", victim);
        return;
      }
      if (!released) this.pendingOffload -= cost;
    }
    this.onEvict("dropped", victim);
    this.onRetire(victim);
  }
}
