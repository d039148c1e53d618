// An admission filter for a cache whose entries cost the collector: a key is admitted on its second
// sighting, so what is seen once never becomes an object. The router's block-hash memo remembered every
// block it hashed, a prompt's unique tail too: at 500 req/s of 4k-token prompts that was some 15,000
// links a second, each living a few seconds in the old generation before the LRU dropped it, for the
// mark-compacts that stall the event loop to sweep. TinyLFU's doorkeeper
// (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy", ACM Transactions
// on Storage 13(4), 2017): a Bloom filter of keys seen once, cleared whenever it has taken as many keys
// as keep its false positives near 5%; a false positive only admits a key early.

/** keys the filter takes before it is cleared, as a share of its bits (two bits a key: about 5% false) */
const KEYS_PER_BIT = 1 / 8;

export class Doorkeeper {
  private readonly words: Uint32Array;
  private readonly mask: number;
  private readonly maxKeys: number;
  private keys = 0;

  /** `bits`: the filter's size, rounded up to a power of two (at least 1,024) */
  constructor(bits = 1 << 20) {
    let n = 1024;
    while (n < bits) n *= 2;
    this.words = new Uint32Array(n / 32);
    this.mask = n - 1;
    this.maxKeys = Math.floor(n * KEYS_PER_BIT);
  }

  /**
   * Whether the key given as two 32-bit lanes (`a`, `b`: independent hashes of it) was offered since the
   * filter was last cleared; it is recorded either way.
   */
  seen(a: number, b: number): boolean {
    const i = mix(a) & this.mask;
    const j = mix(b ^ 0x5bd1e995) & this.mask;
    const w = this.words;
    const bi = 1 << (i & 31);
    const bj = 1 << (j & 31);
    if ((w[i >>> 5]! & bi) !== 0 && (w[j >>> 5]! & bj) !== 0) return true;
    if (++this.keys > this.maxKeys) {
      w.fill(0);
      this.keys = 1;
    }
    w[i >>> 5] = w[i >>> 5]! | bi;
    w[j >>> 5] = w[j >>> 5]! | bj;
    return false;
  }
}

function mix(x: number): number {
  let h = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
