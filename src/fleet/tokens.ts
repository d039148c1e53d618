// Token ids for simulated prompts without a real tokenizer. The bench's text is built from words that are
// one token each (src/workload/text.ts), so one id per word keeps what matters to a KV cache: lengths, and
// shared prefixes (the same words give the same ids). Ids of repeated texts are cached (bounded).
import { WORDS } from "../workload/text.js";

const WORD_IDS = new Map<string, number>(WORDS.map((w, i) => [w, 1000 + i]));
const MAX_CACHED_TEXTS = 512;
/** texts shorter than this are cheap to split again and would only churn the cache */
const MIN_CACHED_CHARS = 2048;

function wordId(w: string): number {
  const known = WORD_IDS.get(w);
  if (known !== undefined) return known;
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193);
  return 20000 + ((h >>> 0) % 100000);
}

export class VirtualTokenizer {
  private readonly cache = new Map<string, readonly number[]>();

  /** `maxCachedTexts`: a caller replaying one workload many times may keep all of its texts */
  constructor(private readonly maxCachedTexts = MAX_CACHED_TEXTS) {}

  /** ids of `text`, one per whitespace-separated word */
  encode(text: string): readonly number[] {
    const hit = this.cache.get(text);
    if (hit) return hit;
    const ids: number[] = [];
    let start = -1;
    for (let i = 0; i <= text.length; i++) {
      const c = i < text.length ? text.charCodeAt(i) : 32;
      const space = c === 32 || c === 10 || c === 9 || c === 13;
      if (space) {
        if (start >= 0) ids.push(wordId(text.slice(start, i)));
        start = -1;
      } else if (start < 0) start = i;
    }
    if (text.length >= MIN_CACHED_CHARS) {
      if (this.cache.size >= this.maxCachedTexts) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(text, ids);
    }
    return ids;
  }
}

/**
 * Chained 53-bit keys of a token sequence's full chunks, as LMCache chains its chunk keys: key i names
 * the whole prefix up to the end of chunk i. Two 32-bit FNV-style lanes keep collisions negligible.
 */
export function chunkKeys(ids: readonly number[], chunkTokens: number, out: number[] = []): number[] {
  out.length = 0;
  const n = Math.floor(ids.length / chunkTokens);
  let a = 0x811c9dc5;
  let b = 0x9e3779b9;
  for (let c = 0; c < n; c++) {
    for (let i = c * chunkTokens, end = i + chunkTokens; i < end; i++) {
      const t = ids[i]!;
      a = Math.imul(a ^ t, 0x01000193);
      b = Math.imul(b ^ t, 0x85ebca6b) ^ (b >>> 13);
    }
    out.push((a >>> 0) * 0x200000 + ((b >>> 0) & 0x1fffff));
  }
  return out;
}
