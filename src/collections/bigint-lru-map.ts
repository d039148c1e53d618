// The least-recently-used map of u64-lru-map.ts for bigint keys from 0 to 2^64 - 1 (vLLM's block
// hashes as its KV events carry them), each split into its halves through a shared eight-byte view:
// no bigint arithmetic, so a lookup allocates nothing.
import { U64LruMap } from "./u64-lru-map.js";

const WIDE = new BigUint64Array([1n]);
const HALVES = new Int32Array(WIDE.buffer);
/** which of HALVES is the low half (the platform's byte order) */
const LO = HALVES[0] === 1 ? 0 : 1;

/** `key` into HALVES */
function split(key: bigint): void {
  WIDE[0] = key;
}

export class BigIntLruMap<V> extends U64LruMap<V> {
  /** `key`'s slot, or -1 (a key outside 0..2^64-1 is stored and found modulo 2^64); valid until the next change */
  find(key: bigint): number {
    split(key);
    return this.findHalves(HALVES[LO]!, HALVES[1 - LO]!);
  }

  has(key: bigint): boolean {
    return this.find(key) !== -1;
  }

  /** The value, without making the key more recent. */
  get(key: bigint): V | undefined {
    const s = this.find(key);
    return s === -1 ? undefined : this.valueAt(s);
  }

  /** Adds `key`, known to be absent, as the most recently used. */
  add(key: bigint, value: V): void {
    split(key);
    this.addHalves(HALVES[LO]!, HALVES[1 - LO]!, value);
  }

  delete(key: bigint): boolean {
    const s = this.find(key);
    if (s === -1) return false;
    this.removeAt(s);
    return true;
  }

  /** the key in `slot` */
  keyAt(slot: number): bigint {
    HALVES[LO] = this.loAt(slot);
    HALVES[1 - LO] = this.hiAt(slot);
    return WIDE[0]!;
  }
}
