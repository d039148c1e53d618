// The least-recently-used map of u64-lru-map.ts for number keys: integers from 0 to 2^53 - 1 (the
// prefix index's block ids, the session tracker's prompt ends), each split into its two 32-bit halves.
// Any other number is never found, and adding one is an error.
import { U64LruMap } from "./u64-lru-map.js";

const TWO_32 = 4294967296;

export class NumberLruMap<V> extends U64LruMap<V> {
  /** `key`'s slot, or -1; valid until the next add, delete or shift. */
  find(key: number): number {
    const hi = (key / TWO_32) | 0;
    // NaN, fractions, negatives and keys past 2^53 do not survive the split
    if (hi * TWO_32 + (key >>> 0) !== key) return -1;
    return this.findHalves(key | 0, hi);
  }

  has(key: number): boolean {
    return this.find(key) !== -1;
  }

  /** The value, without making the key more recent. */
  get(key: number): V | undefined {
    const s = this.find(key);
    return s === -1 ? undefined : this.valueAt(s);
  }

  /** The value, making `key` the most recently used. */
  use(key: number): V | undefined {
    const s = this.find(key);
    if (s === -1) return undefined;
    this.touch(s);
    return this.valueAt(s);
  }

  /** Adds `key`, known to be absent, as the most recently used. */
  add(key: number, value: V): void {
    const hi = (key / TWO_32) | 0;
    if (hi * TWO_32 + (key >>> 0) !== key)
      throw new RangeError(`a NumberLruMap key is an integer from 0 to 2^53 - 1, not ${key}`);
    this.addHalves(key | 0, hi, value);
  }

  /** Sets the value and makes `key` the most recently used. */
  set(key: number, value: V): void {
    const s = this.find(key);
    if (s === -1) this.add(key, value);
    else {
      this.setValueAt(s, value);
      this.touch(s);
    }
  }

  delete(key: number): boolean {
    const s = this.find(key);
    if (s === -1) return false;
    this.removeAt(s);
    return true;
  }

  /** The keys from the least to the most recently used, as they are now (the map may then change). */
  keysOldestFirst(): number[] {
    return this.slotsOldestFirst().map((s) => (this.hiAt(s) >>> 0) * TWO_32 + (this.loAt(s) >>> 0));
  }
}
