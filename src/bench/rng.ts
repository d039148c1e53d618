// A small seeded PRNG (mulberry32) so that every workload and arrival schedule is a pure function
// of its options and seed: the same seed gives the same requests in the live bench and the fleet
// simulator's virtual time. The generator is the engine's; the seed mixing by stream name is ours.
import { mulberry32 } from "../engine/rng.js";

export interface Rng {
  /** uniform in [0, 1) */
  next(): number;
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number;
  /** exponential with the given mean */
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
