// A small agent workload for fleet-simulator tests: a few sessions of short growing contexts, one-second
// tool pauses, no sub-agents; each test overrides what it is about.
import { agenticWorkload } from "../../src/workload/agentic.js";

export function smallAgentic(over: Partial<Parameters<typeof agenticWorkload>[0]> = {}) {
  return agenticWorkload({
    sessions: 6,
    turns: 4,
    startTokens: 2000,
    sharedTokens: 500,
    growthTokens: 300,
    outputTokens: 40,
    capTokens: 8000,
    rangeRatio: 0,
    pauseMedianS: 1,
    pauseSigma: 0,
    pauseMaxS: 5,
    forkProbability: 0,
    forkCount: 0,
    forkTurns: 0,
    seed: 3,
    ...over,
  });
}
