// `conversation-replay`: synthetic multi-turn conversations drawn from length distributions, as
// inference-perf's `conversation_replay` data generator builds them (kubernetes-sigs/inference-perf): a
// system prompt of a shared part and a per-conversation part, then turns whose input and output lengths
// are drawn independently, each turn resending the whole conversation so far, with an optional tool-call
// latency before every turn after the first. llm-d's published routing benchmarks replay their
// code-generation workload this way, as many conversations at once as the concurrency, each played once;
// this generator lets the fleet simulator and `switchyard bench` replay the same shape. Where
// inference-perf truncates a conversation's context at max_model_len, a conversation here ends before the
// turn that would pass `capTokens`, so that no prompt is cut.
//
// Lengths come from one seeded stream per conversation and text from another, as in agentic.ts.
import { makeRng, standardNormal, type Rng } from "../random/rng.js";
import { DEFAULT_SHAPE, randomText, type TextShape } from "./text.js";
import type { Session, Turn, Workload } from "./types.js";
import { InvalidArgumentError } from "../errors/index.js";

/** A log-normal length (or time) with this mean and standard deviation, clamped to [min, max]. */
export interface LogNormal {
  min: number;
  max: number;
  mean: number;
  stdDev: number;
}

export interface ConversationReplayOptions {
  conversations: number;
  /** the system prompt's part every conversation shares */
  sharedSystemTokens: number;
  /** the system prompt's per-conversation part */
  systemTokens: LogNormal;
  turns: LogNormal;
  inputTokensPerTurn: LogNormal;
  /** each turn's max_tokens (its answer, carried into the next turn) */
  outputTokensPerTurn: LogNormal;
  /** seconds before every turn after the first (a tool call); null: none, turns follow at once */
  toolLatencyS: LogNormal | null;
  /** a conversation ends before a turn whose prompt would pass this (the model's context) */
  capTokens: number;
  seed: number;
}

/**
 * Presets, each from a published run:
 * - `llm-d-code-gen`: the code-generation workload of llm-d's "Sticky Until Saturated: Token-Aware
 *   Routing in llm-d" (llm-d.ai blog, 2026-08-17): per-conversation system prompts of 3,000–100,000
 *   tokens (mean about 55,000), 2–20 turns (mean 6), 100–10,000 input tokens a turn (mean 1,500),
 *   50–4,000 output tokens a turn (mean 800), no prefix shared across conversations, turns back to back.
 *   The post gives ranges and means; the spreads are ours (inference-perf's code-generation catalog
 *   entry for the per-turn input, 1,200; the others about half the mean), and the cap is Qwen3-32B's
 *   131,072-token YaRN context less the largest answer.
 */
export const CONVERSATION_REPLAY_PRESETS = {
  "llm-d-code-gen": {
    conversations: 60,
    sharedSystemTokens: 0,
    systemTokens: { min: 3_000, max: 100_000, mean: 55_000, stdDev: 25_000 },
    turns: { min: 2, max: 20, mean: 6, stdDev: 3 },
    inputTokensPerTurn: { min: 100, max: 10_000, mean: 1_500, stdDev: 1_200 },
    outputTokensPerTurn: { min: 50, max: 4_000, mean: 800, stdDev: 400 },
    toolLatencyS: null,
    capTokens: 127_000,
  },
} as const satisfies Record<string, Omit<ConversationReplayOptions, "seed">>;
export type ConversationReplayPreset = keyof typeof CONVERSATION_REPLAY_PRESETS;
/** the preset a caller that names none gets */
export const CONVERSATION_REPLAY_DEFAULT_PRESET: ConversationReplayPreset = "llm-d-code-gen";
/** the most tokens a turn of these conversations holds: its longest prompt with the largest answer */
export const longestReplayTurn = (o: Omit<ConversationReplayOptions, "seed">) =>
  o.capTokens + o.outputTokensPerTurn.max;
export const CONVERSATION_REPLAY_PRESET_NAMES = Object.keys(
  CONVERSATION_REPLAY_PRESETS,
) as ConversationReplayPreset[];

/** One draw: the normal's parameters chosen so that the log-normal has the given mean and deviation. */
export function drawLogNormal(d: LogNormal, rng: Rng): number {
  if (!(d.min <= d.max) || !(d.mean > 0) || !(d.stdDev >= 0))
    throw new InvalidArgumentError(
      `log-normal: need 0 < mean, 0 <= stdDev, min <= max (got ${JSON.stringify(d)})`,
    );
  const s2 = Math.log(1 + (d.stdDev * d.stdDev) / (d.mean * d.mean));
  const mu = Math.log(d.mean) - s2 / 2;
  return Math.min(d.max, Math.max(d.min, Math.exp(mu + Math.sqrt(s2) * standardNormal(rng))));
}

interface ConversationShape {
  systemTokens: number;
  turns: { tokens: number; maxTokens: number; pauseS: number }[];
}

function shapeOf(o: ConversationReplayOptions, i: number): ConversationShape {
  const rng = makeRng(o.seed, `conversation-replay-shape-${i}`);
  const systemTokens = o.sharedSystemTokens + Math.round(drawLogNormal(o.systemTokens, rng));
  const count = Math.round(drawLogNormal(o.turns, rng));
  const turns: ConversationShape["turns"] = [];
  let context = systemTokens;
  for (let r = 0; r < count; r++) {
    const tokens = Math.round(drawLogNormal(o.inputTokensPerTurn, rng));
    const maxTokens = Math.round(drawLogNormal(o.outputTokensPerTurn, rng));
    const pauseS = r > 0 && o.toolLatencyS ? drawLogNormal(o.toolLatencyS, rng) : 0;
    // a conversation sends at least its first turn, whatever the cap
    if (r > 0 && context + tokens > o.capTokens) break;
    turns.push({ tokens, maxTokens, pauseS });
    context += tokens + maxTokens;
  }
  return { systemTokens, turns };
}

export function conversationReplayWorkload(
  o: ConversationReplayOptions,
  shape: TextShape = DEFAULT_SHAPE,
): Workload {
  function* sessions(): Generator<Session> {
    const shared = randomText(o.sharedSystemTokens, makeRng(o.seed, "conversation-replay-shared"), shape);
    for (let i = 0; i < o.conversations; i++) {
      const s = shapeOf(o, i);
      const rng = makeRng(o.seed, `conversation-replay-text-${i}`);
      const id = `conversation-${i}`;
      // the conversation's own part starts with its id, so that conversations diverge right after the shared part
      const own = `${id}: ${randomText(Math.max(1, s.systemTokens - o.sharedSystemTokens - 3), rng, shape)}`;
      const turns: Turn[] = s.turns.map((t, r) => ({
        text: `turn ${r}: ${randomText(Math.max(1, t.tokens - 3), rng, shape)}`,
        tokens: t.tokens,
        maxTokens: t.maxTokens,
        ...(t.pauseS > 0 ? { pauseBeforeS: t.pauseS } : {}),
      }));
      yield {
        id,
        index: i,
        system: o.sharedSystemTokens > 0 ? `${shared}\n\n${own}` : own,
        systemTokens: s.systemTokens,
        turns,
        carriesHistory: true,
      };
    }
  }
  let natural = 0;
  for (let i = 0; i < o.conversations; i++) natural += shapeOf(o, i).turns.length;
  return {
    name: "conversation-replay",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: natural,
    defaultEndpoint: "completions",
    // inference-perf sends no session header: a router finds a conversation by its prompt
    sessionHeader: false,
  };
}

/** a preset's options, with any of them overridden */
export function conversationReplayOptions(
  preset: ConversationReplayPreset,
  seed: number,
  over: Partial<Omit<ConversationReplayOptions, "seed">> = {},
): ConversationReplayOptions {
  return { ...CONVERSATION_REPLAY_PRESETS[preset], ...over, seed };
}
