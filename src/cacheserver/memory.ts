// The memory tier: a byte-budgeted LRU over stored objects. A JS Map keeps insertion order, so
// "delete then set" on a hit moves a key to the young end and eviction takes from the old end. That is
// not O(1) on V8: eviction walks past the slots earlier hits deleted, and the walk grows with the
// number of objects (src/collections/lru-map.ts). Objects here are KV chunks of megabytes, so a tier
// holds thousands at most and the walk costs far less than copying one payload.
// The budget counts the memory a payload holds (see payload.ts) plus a fixed per-object overhead, and also the payloads of evicted
// objects whose disk write has not finished yet (they are still in RAM). With a disk tier, a slice of
// the budget (default min(1/8, 256 MiB)) is set aside for those writes: resident objects get the rest,
// and a victim that finds the slice full is dropped rather than queued, so the total never exceeds
// the budget and eviction never takes more than the incoming object needs.
// A PUT reserves its object's cost when its header arrives, before its receive buffer exists:
// reservations count against the resident part of the budget like stored objects (LRU objects are
// evicted to make room for them), so receive buffers of PUTs in progress stay inside the budget too,
// and a reservation that other reservations leave no room for is refused rather than granted.
// Each namespace may hold at most its cap of the resident budget (stored objects and reservations
// together): a namespace over its cap evicts its own least recently used objects, never another's, and
// a reservation its own reservations leave no room for is refused. So one namespace's clients — a
// trickle of large PUTs included — cannot empty the cache of every other namespace.
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
