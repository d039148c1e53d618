// `shared-prefix`: groups of prompts sharing a long system prompt (the llm-d / SGLang
// generated-shared-prefix shape), shuffled so that groups interleave as they would in production.
import { makeRng, shuffle } from "../random/rng.js";
import { DEFAULT_SHAPE, randomText, type TextShape } from "./text.js";
import type { Session, Workload } from "./types.js";

export interface SharedPrefixOptions {
  numGroups: number;
  promptsPerGroup: number;
  systemPromptLen: number;
  questionLen: number;
  outputLen: number;
  seed: number;
}

export const SHARED_PREFIX_DEFAULTS: Omit<SharedPrefixOptions, "seed"> = {
  numGroups: 16,
  promptsPerGroup: 8,
  systemPromptLen: 1024,
  questionLen: 128,
  outputLen: 128,
};

export function sharedPrefixWorkload(o: SharedPrefixOptions, shape: TextShape = DEFAULT_SHAPE): Workload {
  const total = o.numGroups * o.promptsPerGroup;
  function* sessions(): Generator<Session> {
    const rng = makeRng(o.seed, "shared-prefix");
    // Group prefixes start with the group number so that no two groups share their first block.
    const systems = Array.from(
      { length: o.numGroups },
      (_, g) => `group ${g}: ${randomText(Math.max(0, o.systemPromptLen - 3), rng, shape)}`,
    );
    const order = shuffle(
      Array.from({ length: total }, (_, i) => i),
      rng,
    );
    let index = 0;
    for (const k of order) {
      const g = Math.floor(k / o.promptsPerGroup);
      yield {
        id: `g${g}-q${k % o.promptsPerGroup}`,
        index: index++,
        system: systems[g]!,
        systemTokens: o.systemPromptLen,
        turns: [
          { text: randomText(o.questionLen, rng, shape), tokens: o.questionLen, maxTokens: o.outputLen },
        ],
        carriesHistory: false,
      };
    }
  }
  return {
    name: "shared-prefix",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: total,
    defaultEndpoint: "completions",
    sessionHeader: false,
  };
}
