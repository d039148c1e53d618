// An answer whose text is decided before the engine runs: structured outputs (JSON, a choice, a regex
// match) and tool calls. The text is tokenised with the model's tokenizer, the engine is asked for
// exactly those tokens and then EOS, so `usage.completion_tokens`, `token_ids`, pacing and max_tokens
// truncation (finish_reason "length", the JSON cut short, as in vLLM) all follow from real tokens.
//
// The text is drawn from a PRNG seeded by the context (--seed, the LoRA adapter, every prompt token,
// the choice, the request's `seed`), so the same request gives the same answer.
import { fold, mulberry32 } from "../workload/rng.js";
import type { Tokenizer } from "../tokenizer/types.js";

/** The seeded uniform [0, 1) stream of one choice's forced answer. */
export function contextRandom(
  prompt: readonly number[],
  seed: number,
  choiceSalt: number,
  requestSeed: number | null,
): () => number {
  let h = (0x3c6ef372 ^ seed) >>> 0;
  for (let i = 0; i < prompt.length; i++) h = fold(h, prompt[i]!);
  h = fold(h, choiceSalt);
  if (requestSeed !== null) h = fold(fold(h, requestSeed | 0), Math.floor(requestSeed / 4294967296) | 0);
  return mulberry32(h);
}

/** The words string values are made of: the tokenizer's output pool, without the leading spaces. */
export function wordsOf(tokenizer: Tokenizer): string[] {
  return tokenizer.outputPool.texts.map((t) => t.trim()).filter((t) => t.length > 0);
}

export class ForcedText {
  readonly ids: number[];
  /** pieces[i]: the text token i completes (a character split over tokens shows with its last one) */
  private readonly pieces: string[];

  constructor(
    readonly text: string,
    tokenizer: Tokenizer,
    private readonly eosId: number,
  ) {
    this.ids = tokenizer.encode(text, false);
    this.pieces = new Array<string>(this.ids.length);
    // decode from the last clean cut: a token ending inside a multi-byte character decodes to U+FFFD
    // and shows nothing until the token that completes it, as vLLM's incremental detokenizer does
    let from = 0;
    for (let i = 0; i < this.ids.length; i++) {
      const s = tokenizer.decode(this.ids.slice(from, i + 1), true);
      if (s.endsWith("\uFFFD") && i - from < 3 && i + 1 < this.ids.length) {
        this.pieces[i] = "";
        continue;
      }
      this.pieces[i] = s;
      from = i + 1;
    }
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
