// Seeded randomness for everything that must be reproducible: workloads, arrival schedules, the
// sim's sampled text, fuzz tests. No Math.random anywhere a seed should decide. The same seed gives
// the same requests in the live bench and in the fleet simulator's virtual time. On the ground floor,
// so that the sim and routing's hashes reach the PRNG and the hash mixes without importing the
// workload library.

/** mulberry32: a 32-bit state PRNG, fast and good enough for workload generation. Returns [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Hash of a string to a 32-bit seed (FNV-1a), to derive per-request streams from ids. */
export function seedFromString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** One FNV-1a-style fold of a 32-bit value (a token id) into a hash state. */
export function fold(h: number, id: number): number {
  return Math.imul(h ^ id, 0x01000193) >>> 0;
}

/** murmur3's finaliser: spreads every state bit over the output. */
export function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A seeded random source with the helpers workloads need. */
export interface Rng {
  /** uniform in [0, 1) */
  next(): number;
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number;
  /** exponential with the given mean (a Poisson process's gap at rate 1/mean) */
  exp(mean: number): number;
}

/** Mixes a seed and a stream name into one 32-bit state, so that sub-generators do not correlate. */
export function seedOf(seed: number, stream = ""): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < stream.length; i++) {
    h = Math.imul(h ^ stream.charCodeAt(i), 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
  }
  h = Math.imul(h ^ (h >>> 16), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export function makeRng(seed: number, stream = ""): Rng {
  const next = mulberry32(seedOf(seed, stream));
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    exp: (mean) => -Math.log(1 - next()) * mean,
  };
}

/** One standard normal draw from two uniforms (Box-Muller), for log-normal lengths and pauses. */
export function standardNormal(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
}

/** Fisher-Yates shuffle in place. */
export function shuffle<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  }
  return items;
}
