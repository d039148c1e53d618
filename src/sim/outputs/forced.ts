// An answer whose text is decided before the engine runs: structured outputs (JSON, a choice, a regex
// match) and tool calls. The text is tokenised with the model's tokenizer, the engine is asked for
// exactly those tokens and then EOS, so `usage.completion_tokens`, `token_ids`, pacing and max_tokens
// truncation (finish_reason "length", the JSON cut short, as in vLLM) all follow from real tokens.
//
// The text is drawn from a PRNG seeded by the context (--seed, the LoRA adapter, every prompt token,
// the choice, the request's `seed`), so the same request gives the same answer.
import { fold, mulberry32 } from "../../random/rng.js";
import type { Tokenizer } from "../../tokenizer/types.js";

/** The hash of --seed (with the LoRA adapter) and a prompt: once per prompt, shared by its choices. */
export function contextState(prompt: readonly number[], seed: number): number {
  let h = (0x3c6ef372 ^ seed) >>> 0;
  for (let i = 0; i < prompt.length; i++) h = fold(h, prompt[i]!);
  return h;
}

/** The seeded uniform [0, 1) stream of one choice's forced answer (`state`: contextState). */
export function contextRandom(state: number, choiceSalt: number, requestSeed: number | null): () => number {
  let h = fold(state, choiceSalt);
  if (requestSeed !== null) h = fold(fold(h, requestSeed | 0), Math.floor(requestSeed / 4294967296) | 0);
  return mulberry32(h);
}

/** per tokenizer (a handful per process): its pool's words */
const WORDS = new WeakMap<Tokenizer, string[]>();

/** The words string values are made of: the tokenizer's output pool, without the leading spaces. */
export function wordsOf(tokenizer: Tokenizer): string[] {
  let words = WORDS.get(tokenizer);
  if (!words) {
    words = tokenizer.outputPool.texts.map((t) => t.trim()).filter((t) => t.length > 0);
    WORDS.set(tokenizer, words);
  }
  return words;
}

/** Tokens per slice when a long answer's pieces are decoded between turns of the event loop. */
const SLICE = 1024;
/** decoded tokens kept per tokenizer; the cache starts afresh when full */
const DECODED_CAP = 65536;
const DECODED = new WeakMap<Tokenizer, Map<number, string>>();

/** One token's text, cached: decided answers reuse few tokens (punctuation, digits, the pool's words). */
function decodeOne(tokenizer: Tokenizer, id: number): string {
  let cache = DECODED.get(tokenizer);
  if (!cache) DECODED.set(tokenizer, (cache = new Map()));
  let s = cache.get(id);
  if (s === undefined) {
    if (cache.size >= DECODED_CAP) cache.clear();
    s = tokenizer.decode([id], true);
    cache.set(id, s);
  }
  return s;
}
/** Characters a token spans at most in a decided answer (JSON, words, digits): bounds the prefix tokenised */
const MAX_TOKEN_CHARS = 64;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class ForcedText {
  private constructor(
    readonly text: string,
    readonly ids: number[],
    /** pieces[i]: the text token i completes (a character split over tokens shows with its last one) */
    private readonly pieces: string[],
    private readonly eosId: number,
  ) {}

  /**
   * Tokenises `text` (between turns of the event loop when long). With `maxTokens` only the prefix
   * those tokens can reach is tokenised; should it give fewer (a token longer than MAX_TOKEN_CHARS),
   * the whole text is.
   */
  static async create(
    text: string,
    tokenizer: Tokenizer,
    eosId: number,
    maxTokens: number,
  ): Promise<ForcedText> {
    const reach = (maxTokens + 1) * MAX_TOKEN_CHARS;
    let ids = await tokenizer.encodeAsync(text.length > reach ? text.slice(0, reach) : text, false);
    if (text.length > reach && ids.length <= maxTokens) ids = await tokenizer.encodeAsync(text, false);
    const pieces = new Array<string>(ids.length);
    // decode from the last clean cut: a token ending inside a multi-byte character decodes to U+FFFD
    // and shows nothing until the token that completes it, as vLLM's incremental detokenizer does
    let from = 0;
    for (let i = 0; i < ids.length; i++) {
      if (i > 0 && i % SLICE === 0) await nextTurn();
      if (from === i) {
        const one = decodeOne(tokenizer, ids[i]!);
        if (!one.includes("\uFFFD")) {
          pieces[i] = one;
          from = i + 1;
          continue;
        }
      }
      const s = tokenizer.decode(ids.slice(from, i + 1), true);
      if (s.endsWith("\uFFFD") && i - from < 3 && i + 1 < ids.length) {
        pieces[i] = "";
        continue;
      }
      pieces[i] = s;
      from = i + 1;
    }
    return new ForcedText(text, ids, pieces, eosId);
  }

  /** The i-th output token: the text's, then EOS. */
  token(i: number): number {
    return this.ids[i] ?? this.eosId;
  }

  /** The output length at which the answer ends (its EOS), or Infinity with ignore_eos. */
  stopAfter(ignoreEos: boolean): number {
    return ignoreEos ? Infinity : this.ids.length + 1;
  }

  /** The text of output tokens [from, to) (EOS and anything after the text: ""). */
  slice(from: number, to: number): string {
    let s = "";
    for (let i = from; i < to && i < this.pieces.length; i++) s += this.pieces[i]!;
    return s;
  }
}
