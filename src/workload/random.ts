// `random`: independent prompts of random words, lengths uniform around --input-len/--output-len.
import { makeRng } from "../random/rng.js";
import { DEFAULT_SHAPE, randomText, type TextShape } from "./text.js";
import { rangeLength, type Session, type Workload } from "./types.js";

export interface RandomOptions {
  inputLen: number;
  outputLen: number;
  rangeRatio: number;
  seed: number;
  /** number of requests; Infinity for an endless stream */
  count: number;
}

export const RANDOM_DEFAULTS: Omit<RandomOptions, "seed" | "count"> = {
  inputLen: 1024,
  outputLen: 128,
  rangeRatio: 0,
};

export function randomWorkload(o: RandomOptions, shape: TextShape = DEFAULT_SHAPE): Workload {
  function* sessions(): Generator<Session> {
    const rng = makeRng(o.seed, "random");
    for (let i = 0; i < o.count; i++) {
      const inLen = rangeLength(o.inputLen, o.rangeRatio, rng.next());
      const outLen = rangeLength(o.outputLen, o.rangeRatio, rng.next());
      yield {
        id: `r${i}`,
        index: i,
        system: null,
        systemTokens: 0,
        turns: [{ text: randomText(inLen, rng, shape), tokens: inLen, maxTokens: outLen }],
        carriesHistory: false,
      };
    }
  }
  return {
    name: "random",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: null,
    defaultEndpoint: "completions",
    sessionHeader: false,
  };
}
