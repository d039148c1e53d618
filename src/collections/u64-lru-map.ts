// A least-recently-used map for unsigned 64-bit keys, kept in typed arrays: each key as its two 32-bit
// halves, open addressing with linear probing, the order as index links. A lookup in a Map of 200,000
// keys reads the hash bucket, the entry, the key's heap number or bigint and the value's entry object,
// a cache miss each on a busy host; here it reads the key's slot and the value beside it. Touching an
// entry writes two integers, not pointers into old objects for the collector to track, and a table of
// a million keys is a few arrays for it to mark, not millions of objects. Learning a 256-block prompt
// at the cap took 46-60 µs with LruMap, 9-13 µs here (a micro benchmark).
//
// Its users see it through a key type: NumberLruMap (integers below 2^53) and BigIntLruMap (uint64
// bigints, vLLM's block hashes); this class keeps the slots and speaks in halves.
//
// Deletion shifts the entries after it back (no tombstones, so no stop-the-world rebuild at the cap);
// the table doubles when half full, its entries re-inserted oldest first (at most log2 of the cap
// times).

const EMPTY = -1;

export class U64LruMap<V> {
  // the halves as int32 (lo | 0), so that V8 keeps them small integers
  private los!: Int32Array;
  private his!: Int32Array;
  private vals!: (V | undefined)[];
  private used!: Uint8Array;
  private older!: Int32Array;
  private newer!: Int32Array;
  private mask = 0;
  private oldestSlot = EMPTY;
  private newestSlot = EMPTY;
  private count = 0;

  constructor(private readonly initialSlots = 1024) {
    this.empty(pow2(initialSlots));
  }

  /** an empty table of `n` slots (a power of two) */
  private empty(n: number): void {
    this.mask = n - 1;
    this.los = new Int32Array(n);
    this.his = new Int32Array(n);
    this.vals = new Array<V | undefined>(n).fill(undefined);
    this.used = new Uint8Array(n);
    this.older = new Int32Array(n);
    this.newer = new Int32Array(n);
    this.oldestSlot = this.newestSlot = EMPTY;
    this.count = 0;
  }

  get size(): number {
    return this.count;
  }

  /** The slots the table holds (each costs 25 bytes and a value reference): for a bytes estimate. */
  get slots(): number {
    return this.mask + 1;
  }

  /**
   * The slot of the key whose halves are `lo` and `hi` (each as an int32: `half | 0`), or -1; valid until
   * the next add, delete or shift.
   */
  findHalves(lo: number, hi: number): number {
    const mask = this.mask;
    for (let i = home(lo, hi) & mask; this.used[i] === 1; i = (i + 1) & mask)
      if (this.los[i] === lo && this.his[i] === hi) return i;
    return EMPTY;
  }

  /** Adds the key whose halves are `lo` and `hi`, known to be absent, as the most recently used. */
  addHalves(lo: number, hi: number, value: V): void {
    if (2 * (this.count + 1) > this.mask + 1) this.grow();
    const mask = this.mask;
    let i = home(lo, hi) & mask;
    while (this.used[i] === 1) i = (i + 1) & mask;
    this.used[i] = 1;
    this.los[i] = lo;
    this.his[i] = hi;
    this.vals[i] = value;
    this.count++;
    this.append(i);
  }

  /**
   * Each entry's value replaced by `change`'s answer, the entry dropped where it answers undefined: one
   * pass in slot order, allocating nothing and leaving the order as it was (a pass in LRU order needed
   * every slot listed first, as a removal moves later entries back). `change` may be handed an entry
   * twice (one moved back across the table's end), so the second answer must be the value unchanged.
   */
  rewriteValues(change: (value: V) => V | undefined): void {
    this.rewriteValuesIn(0, this.mask + 1, change);
  }

  /**
   * `rewriteValues` over slots `from` to `to` (exclusive) only, for a pass spread over several turns of
   * the event loop. Between two parts the table may change: a removal elsewhere can move an entry from
   * ahead of the pass to behind it, so a spread pass may miss an entry, and a table that grew (`slots`
   * changed) has moved every entry. A caller that must see every entry passes all slots at once.
   */
  rewriteValuesIn(from: number, to: number, change: (value: V) => V | undefined): void {
    const end = Math.min(to, this.mask + 1);
    for (let s = Math.max(0, from); s < end; s++) {
      // a removal may move a later entry into s: look at it again
      while (this.used[s] === 1) {
        const next = change(this.vals[s] as V);
        if (next !== undefined) {
          this.vals[s] = next;
          break;
        }
        this.removeAt(s);
      }
    }
  }

  /** the low half of the key in `slot` (as an int32) */
  loAt(slot: number): number {
    return this.los[slot]!;
  }

  /** the high half of the key in `slot` (as an int32) */
  hiAt(slot: number): number {
    return this.his[slot]!;
  }

  valueAt(slot: number): V {
    return this.vals[slot] as V;
  }

  setValueAt(slot: number, value: V): void {
    this.vals[slot] = value;
  }

  /** The least recently used entry's value, left in place (for expiry by age: check, then shift). */
  oldestValue(): V | undefined {
    return this.oldestSlot === EMPTY ? undefined : this.vals[this.oldestSlot];
  }

  /** Makes the entry in `slot` the most recently used. */
  touch(slot: number): void {
    if (slot === this.newestSlot) return;
    this.unlink(slot);
    this.append(slot);
  }

  /** Removes the least recently used entry and hands back its value (undefined when empty). */
  shift(): V | undefined {
    const s = this.oldestSlot;
    if (s === EMPTY) return undefined;
    const v = this.vals[s];
    this.removeAt(s);
    return v;
  }

  /** The slots in use from the least to the most recently used, as they are now (read, then change). */
  slotsOldestFirst(): number[] {
    const out: number[] = [];
    for (let s = this.oldestSlot; s !== EMPTY; s = this.newer[s]!) out.push(s);
    return out;
  }

  *values(): Generator<V> {
    for (let s = this.oldestSlot; s !== EMPTY; s = this.newer[s]!) yield this.vals[s] as V;
  }

  clear(): void {
    this.empty(pow2(this.initialSlots));
  }

  /** empties slot `s`, then shifts back the entries after it that it kept from their home slots */
  removeAt(s: number): void {
    this.unlink(s);
    this.used[s] = 0;
    this.vals[s] = undefined;
    this.count--;
    const mask = this.mask;
    let gap = s;
    for (let j = (s + 1) & mask; this.used[j] === 1; j = (j + 1) & mask) {
      const h = home(this.los[j]!, this.his[j]!) & mask;
      // the entry stays where its home lies cyclically in (gap, j]: probing from there never crosses the gap
      const stays = gap <= j ? h > gap && h <= j : h > gap || h <= j;
      if (stays) continue;
      this.move(j, gap);
      gap = j;
    }
  }

  private move(from: number, to: number): void {
    this.los[to] = this.los[from]!;
    this.his[to] = this.his[from]!;
    this.vals[to] = this.vals[from];
    this.used[to] = 1;
    const o = this.older[from]!;
    const n = this.newer[from]!;
    this.older[to] = o;
    this.newer[to] = n;
    if (o === EMPTY) this.oldestSlot = to;
    else this.newer[o] = to;
    if (n === EMPTY) this.newestSlot = to;
    else this.older[n] = to;
    this.used[from] = 0;
    this.vals[from] = undefined;
  }

  private unlink(s: number): void {
    const o = this.older[s]!;
    const n = this.newer[s]!;
    if (o === EMPTY) this.oldestSlot = n;
    else this.newer[o] = n;
    if (n === EMPTY) this.newestSlot = o;
    else this.older[n] = o;
  }

  private append(s: number): void {
    this.older[s] = this.newestSlot;
    this.newer[s] = EMPTY;
    if (this.newestSlot !== EMPTY) this.newer[this.newestSlot] = s;
    else this.oldestSlot = s;
    this.newestSlot = s;
  }

  /** twice the slots, the entries re-inserted oldest first (so their order is kept) */
  private grow(): void {
    const { los, his, vals, newer } = this;
    let s = this.oldestSlot;
    this.empty(2 * (this.mask + 1));
    for (; s !== EMPTY; s = newer[s]!) this.addHalves(los[s]!, his[s]!, vals[s] as V);
  }
}

function pow2(n: number): number {
  let p = 16;
  while (p < n) p *= 2;
  return p;
}

/** a 32-bit mix of the key's two halves */
function home(lo: number, hi: number): number {
  let h = Math.imul(lo, 0x9e3779b1) ^ hi;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return h ^ (h >>> 13);
}
