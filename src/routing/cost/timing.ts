// How long an engine takes to prefill, for the predictive policy: from the engine model's roofline step
// time for its GPU and model (src/engine: the same StepTimer `switchyard sim` and the fleet simulator run
// on), or, when the engine's profile is unknown, learned online from what the engine reports about
// itself (vLLM's prefill-time histogram and prompt/prefix-hit counters, as scraped).
import { StepTimer, kvCapacity, type EngineConfig } from "../../engine/index.js";
import type { EngineView } from "../policy/views.js";

export interface EngineTiming {
  /**
   * Seconds to prefill `tokens` prompt tokens on top of `cached` ones, in steps shared with `decoding`
   * running sequences that hold `kvTokens` tokens of context in all.
   */
  prefillSeconds(tokens: number, cached: number, decoding: number, kvTokens: number): number;
  /** seconds of one step that only decodes `decoding` sequences holding `kvTokens` of context (0: unknown) */
  stepSeconds(decoding: number, kvTokens: number): number;
  /** the engine's KV cache, tokens (turns a scraped usage fraction into tokens) */
  kvCapacityTokens: number;
  /** prompt tokens one step computes at most (vLLM's max_num_batched_tokens); undefined: unknown */
  stepTokens?: number | undefined;
}

/** Per engine, its timing, or undefined when nothing is known about it yet. */
export type TimingSource = (engine: EngineView) => EngineTiming | undefined;

/**
 * The engine model's timing for one engine configuration. vLLM's chunked prefill: every step spends
 * max_num_batched_tokens, one token per decoding sequence first, the rest on prompt tokens.
 * `timeScale` stretches it as `switchyard sim --time-scale` stretches the engine it models.
 */
export function rooflineTiming(config: EngineConfig, timeScale = 1): EngineTiming {
  const timer = new StepTimer(config);
  const budget = config.maxNumBatchedTokens;
  const maxSeqs = config.maxNumSeqs;
  return {
    kvCapacityTokens: kvTokensOf(config),
    stepTokens: budget,
    prefillSeconds(tokens, cached, decoding, kvTokens) {
      if (tokens <= 0) return 0;
      const decodingSeqs = Math.min(decoding, maxSeqs - 1, budget - 1);
      const perStep = budget - decodingSeqs;
      const steps = Math.ceil(tokens / perStep);
      const chunk = tokens / steps;
      // attention over the context each computed token sees: the cached prefix plus half the new part
      const stepTime = timer.time({
        prefillTokens: chunk,
        decodeSeqs: decodingSeqs,
        attentionContext:
          chunk * (cached + tokens / 2) + decodingSeqs * (kvTokens / Math.max(1, decodingSeqs)),
        kvReadTokens: kvTokens + cached,
        loadBytesPerGpu: 0,
      });
      return steps * stepTime.duration * timeScale;
    },
    stepSeconds(decoding, kvTokens) {
      if (decoding <= 0) return 0;
      const decodingSeqs = Math.min(decoding, maxSeqs);
      const stepTime = timer.time({
        prefillTokens: 0,
        decodeSeqs: decodingSeqs,
        attentionContext: kvTokens,
        kvReadTokens: kvTokens,
        loadBytesPerGpu: 0,
      });
      return stepTime.duration * timeScale;
    },
  };
}

/** the engine's KV cache in tokens; 0 when its configuration leaves none (timing needs no cache) */
function kvTokensOf(config: EngineConfig): number {
  try {
    return kvCapacity(config).numGpuBlocks * config.blockSize;
  } catch {
    // vLLM refuses a max_model_len whose one request the KV cache cannot hold; the router's profile
    // takes the model's full context as the engine's (an L4 with Llama-3.1-8B: 131,072 tokens against
    // 36k of KV), but the engine that serves must have been started with less, and its cache is the same
    // size whatever that length is (it is what memory leaves)
    try {
      return kvCapacity({ ...config, maxModelLen: config.blockSize }).numGpuBlocks * config.blockSize;
    } catch {
      return 0;
    }
  }
}

/** What the learned model needs from an engine's own metrics (cumulative, as scraped). */
export interface PrefillCounters {
  /** Σ vllm:request_prefill_time_seconds (first token − first scheduled, per request) */
  prefillSeconds: number;
  /** vllm:prompt_tokens_total */
  promptTokens: number;
  /** vllm:prefix_cache_hits_total (prompt tokens served from the cache) */
  cachedTokens: number;
}

/** tokens/s assumed for an engine until it has reported enough prefill work to learn from */
export const LEARNED_DEFAULT_TOKENS_PER_S = 10_000;
/** prefill tokens an interval must hold before it moves the estimate */
const LEARN_MIN_TOKENS = 4096;
/** weight of a new interval in the running estimate */
const LEARN_ALPHA = 0.3;

interface Learned {
  last: PrefillCounters;
  tokensPerS: number;
  timing: EngineTiming;
}

const DEFAULT_LEARNED: EngineTiming = {
  kvCapacityTokens: 0,
  stepSeconds: () => 0,
  prefillSeconds: (tokens) => (tokens > 0 ? tokens / LEARNED_DEFAULT_TOKENS_PER_S : 0),
};

/**
 * Prefill speed learned per engine from its counters: computed prompt tokens (prompt less cached) over
 * the prefill seconds those requests reported, between successive scrapes, smoothed. It folds in whatever
 * the engine's batch did to its prefills, so it carries no decode term. Bounded: one entry per engine id,
 * at most `maxEngines`.
 */
export class LearnedTiming {
  private readonly engines = new Map<
    string,
    { last: PrefillCounters; tokensPerS: number; timing: EngineTiming }
  >();

  constructor(
    private readonly countersOf: (engine: EngineView) => PrefillCounters | undefined,
    private readonly maxEngines = 4096,
  ) {}

  /** the engine's timing, folding in its counters if they moved since last time */
  timing(engine: EngineView): EngineTiming | undefined {
    const counters = this.countersOf(engine);
    if (!counters) return undefined;
    const learned = this.engines.get(engine.id);
    if (!learned) {
      if (this.engines.size >= this.maxEngines) this.engines.delete(this.engines.keys().next().value!);
      const state: Learned = {
        last: { ...counters },
        tokensPerS: LEARNED_DEFAULT_TOKENS_PER_S,
        timing: DEFAULT_LEARNED,
      };
      state.timing = {
        kvCapacityTokens: 0,
        stepSeconds: () => 0,
        prefillSeconds: (tokens) => (tokens > 0 ? tokens / state.tokensPerS : 0),
      };
      this.engines.set(engine.id, state);
      return state.timing;
    }
    const tokens =
      counters.promptTokens - counters.cachedTokens - (learned.last.promptTokens - learned.last.cachedTokens);
    const secs = counters.prefillSeconds - learned.last.prefillSeconds;
    if (tokens < 0 || secs < 0)
      learned.last = { ...counters }; // counters went back: the engine restarted
    else if (tokens >= LEARN_MIN_TOKENS && secs > 0) {
      const rate = tokens / secs;
      learned.tokensPerS =
        learned.tokensPerS === LEARNED_DEFAULT_TOKENS_PER_S
          ? rate
          : learned.tokensPerS * (1 - LEARN_ALPHA) + rate * LEARN_ALPHA;
      learned.last = { ...counters };
    }
    return learned.timing;
  }

  /** the speed learned for an engine so far, tokens/s (tests, diagnostics) */
  tokensPerSecond(id: string): number | undefined {
    return this.engines.get(id)?.tokensPerS;
  }
}
