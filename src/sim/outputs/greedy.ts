// What the sim "generates": each next token, and whether the answer ends there (EOS), is a function
// of the seed and of every token before it (prompt and output so far), as a greedy real model's is.
// A request re-issued with its partial answer appended to the prompt (a migrated stream: token-id
// prompts, or chat's continue_final_message) therefore continues exactly where the first one
// stopped, and a migrated answer can be checked against an unbroken one token for token.
//
// The state is a 32-bit rolling hash folded over the context; each step draws the EOS decision and
// the token from two mixes of it. EOS has the same chance at every step, 1 − e^(−1/mean), so answer
// lengths stay geometric with mean `--output-len-mean` (what the per-request draw gave before).
import { fmix, fold } from "../../random/rng.js";

const EOS_SALT = 0x27d4eb2f;
const TOKEN_SALT = 0x165667b1;

export interface GreedyOptions {
  /** --seed mixed with anything else that changes the "model" (a LoRA adapter's name) */
  seed: number;
  /** 0 for the first choice; further choices of a sampled (temperature ≠ 0) request differ */
  choiceSalt: number;
  /** the output token ids to draw from (the tokenizer's output pool) */
  pool: Int32Array;
  eosId: number;
  /** mean answer length in tokens (--output-len-mean) */
  meanLength: number;
  /** vLLM's min_tokens: EOS is not drawn before this many output tokens */
  minTokens: number;
  ignoreEos: boolean;
}

/**
 * The deterministic output of one request: `token(i)` is the i-th output token, `stopAfter` the
 * output length at which it ends with EOS (Infinity when it does not within `maxTokens`).
 */
export class GreedyChain {
  private h: number;
  private readonly eosBelow: number;
  private readonly out: number[] = [];
  private ended = false;
  readonly stopAfter: number;

  constructor(
    prompt: readonly number[],
    private readonly o: GreedyOptions,
    maxTokens: number,
  ) {
    let h = (0x811c9dc5 ^ o.seed) >>> 0;
    for (let i = 0; i < prompt.length; i++) h = fold(h, prompt[i]!);
    if (o.choiceSalt !== 0) h = fold(h, o.choiceSalt ^ 0x9e3779b9);
    this.h = h;
    // P(EOS at a step) = 1 − e^(−1/mean), as a threshold on a uniform 32-bit draw
    this.eosBelow = Math.floor(-Math.expm1(-1 / Math.max(1e-9, o.meanLength)) * 4294967296);
    // where the answer ends is known up front (the engine is told its length): walk the chain to its
    // EOS, or to maxTokens; the walk's tokens are kept for token(i). Mean length, not maxTokens, bounds
    // the work: a request whose EOS is far is as rare as a long answer is.
    let stop = Infinity;
    if (!o.ignoreEos) {
      for (let i = 0; i < maxTokens; i++) {
        if (this.step() === o.eosId) {
          stop = i + 1;
          break;
        }
      }
    }
    this.stopAfter = stop;
  }

  /** The i-th output token (0-based); called in order by the engine, any order works. */
  token(i: number): number {
    while (this.out.length <= i && !this.ended) this.step();
    // past EOS (the engine never asks): repeat EOS
    return this.out[i] ?? this.o.eosId;
  }

  private step(): number {
    const o = this.o;
    const n = this.out.length;
    const h = this.h;
    let id: number;
    if (!o.ignoreEos && n + 1 >= o.minTokens && fmix(h ^ EOS_SALT) < this.eosBelow) {
      id = o.eosId;
      this.ended = true;
    } else id = o.pool[fmix(h ^ TOKEN_SALT) % o.pool.length]!;
    this.out.push(id);
    this.h = fold(h, id);
    return id;
  }
}
