// `prefix-repetition` (as vllm bench's prefix_repetition dataset): a few prefixes, each request one
// of them at random followed by a fresh random suffix.
import { makeRng } from "../random/rng.js";
import { DEFAULT_SHAPE, randomText, type TextShape } from "./text.js";
import type { Session, Workload } from "./types.js";

export interface PrefixRepetitionOptions {
  prefixLen: number;
  suffixLen: number;
  numPrefixes: number;
  outputLen: number;
  seed: number;
  count: number;
}

export const PREFIX_REPETITION_DEFAULTS: Omit<PrefixRepetitionOptions, "seed" | "count"> = {
  prefixLen: 256,
  suffixLen: 256,
  numPrefixes: 10,
  outputLen: 128,
};

export function prefixRepetitionWorkload(
  o: PrefixRepetitionOptions,
  shape: TextShape = DEFAULT_SHAPE,
): Workload {
  function* sessions(): Generator<Session> {
    const rng = makeRng(o.seed, "prefix-repetition");
    const prefixes = Array.from({ length: o.numPrefixes }, () => randomText(o.prefixLen, rng, shape));
    for (let i = 0; i < o.count; i++) {
      const p = Math.floor(rng.next() * o.numPrefixes);
      yield {
        id: `p${p}-${i}`,
        index: i,
        system: prefixes[p]!,
        systemTokens: o.prefixLen,
        turns: [{ text: randomText(o.suffixLen, rng, shape), tokens: o.suffixLen, maxTokens: o.outputLen }],
        carriesHistory: false,
      };
    }
  }
  return {
    name: "prefix-repetition",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: null,
    defaultEndpoint: "completions",
    sessionHeader: false,
  };
}
