// Small, allocation-free string hashing for consistent hashing and tie-breaks (FNV-1a 32-bit,
// then a murmur3 finaliser so that similar keys land far apart).
import { fmix } from "../../random/rng.js";

export function hash32(text: string, seed = 0): number {
  let hash = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return fmix(hash);
}

/** Hash of a pair mapped to (0, 1), for rendezvous hashing. */
export function unitHash(key: string, id: string): number {
  const mixed = hash32(id, hash32(key));
  return (mixed + 0.5) / 4294967296;
}
