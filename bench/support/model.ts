// The engine model's step times for one request alone, for the tests and benchmarks that hold live
// timings to them (lower bounds in npm test, tolerances in bench/).
import type { StepTimer } from "../../src/engine/index.js";

/** One prefill step over a whole prompt of `tokens` (it fits the token budget), in modelled seconds. */
export function prefillStepSeconds(timer: StepTimer, tokens: number): number {
  return timer.time({
    prefillTokens: tokens,
    decodeSeqs: 0,
    attentionContext: (tokens * (tokens + 1)) / 2,
    kvReadTokens: 0,
    loadBytesPerGpu: 0,
  }).duration;
}

/** One decode step of a lone sequence whose context is `ctx` tokens, in modelled seconds. */
export function decodeStepSeconds(timer: StepTimer, ctx: number): number {
  return timer.time({
    prefillTokens: 0,
    decodeSeqs: 1,
    attentionContext: ctx,
    kvReadTokens: ctx - 1,
    loadBytesPerGpu: 0,
  }).duration;
}
