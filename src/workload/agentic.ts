// `agentic`: coding-agent sessions. A session is a loop of model turns and tool calls: every turn resends
// the whole context, which grows by the tool's output and the user/assistant step, and between turns the
// session is idle for the tool's time. Whether its KV survives that pause decides whether the next turn
// prefills a few thousand tokens or the whole context again, which is what agent-aware routing is about.
// Sub-agents fork a session's context: a fork is a new session that starts with the parent's context at
// that point (its first turns are the parent's, already answered), so it shares the parent's prefix.
//
// Lengths, pauses and forks come from one seeded stream per session and the text from another, so the
// shape (turn counts, pauses) is known without building the text, and one seed gives the same sessions to
// the live bench and the fleet simulator.
import { makeRng, standardNormal, type Rng } from "../random/rng.js";
import { DEFAULT_SHAPE, randomText, type TextShape } from "./text.js";
import { rangeLength, type Session, type Turn, type Workload } from "./types.js";

export interface AgenticOptions {
  sessions: number;
  /** turns per session at most (the context cap may end it sooner) */
  turns: number;
  /** tokens of the context the first turn builds on (system prompt, tool schemas, the task's files) */
  startTokens: number;
  /** of `startTokens`, the part every session shares (the agent's system prompt and tools) */
  sharedTokens: number;
  /** tokens each turn appends before its request (the tool's output and the user/agent step) */
  growthTokens: number;
  /** each answer's max_tokens (the assistant step, carried into the next turn) */
  outputTokens: number;
  /** the context never exceeds this: a turn that would is not sent, and the session ends (it compacts) */
  capTokens: number;
  /** growth drawn uniformly in growth·[1 − r, 1 + r] */
  rangeRatio: number;
  /** tool-call pause before every turn after the first: log-normal with this median, seconds … */
  pauseMedianS: number;
  /** … this spread of its logarithm … */
  pauseSigma: number;
  /** … clipped to this, so that a live run's timers stay bounded */
  pauseMaxS: number;
  /** chance that a turn (not a session's last) spawns sub-agents once answered */
  forkProbability: number;
  /** sub-agents one fork spawns */
  forkCount: number;
  /** turns of each sub-agent (the cap still applies) */
  forkTurns: number;
  seed: number;
}

/**
 * Presets, each scaled from a published shape:
 * - `code-gen`: llm-d's "sticky until saturated" code-generation run (Qwen3-32B, prompts of about 70k
 *   tokens, 800 output tokens), as an agent builds such prompts: a 50k-token start (10k of it the agent's
 *   shared system prompt and tools), 3k tokens of tool output per turn, 800-token steps, capped at 72k;
 *   long tool pauses (builds and tests: median 8 s, up to 2 min); one turn in ten forks two sub-agents.
 * - `b2b`: the same post's b2b-SaaS shape (7,200 tokens in, 1,000 out), as three-turn sessions averaging
 *   7,200 prompt tokens: a 5k start (2k shared), 600 tokens per turn, 1,000-token answers, capped at 9k;
 *   short tool pauses (API lookups: median 2 s, up to 30 s); no sub-agents.
 * - `fan-out`: an orchestrator that spawns sub-agents in parallel, as Anthropic's multi-agent research
 *   system does ("How we built our multi-agent research system", 2025: the lead agent starts 3–5
 *   sub-agents at once): four-turn sessions on a 6k start (1k shared), 1,000 tokens per turn, 400-token
 *   answers, capped at 12k; every turn but the last forks four one-turn sub-agents the moment it is
 *   answered, each resending the lead's whole context. A burst of four on a context that one engine's
 *   GPU holds and the others do not: where it goes is what a router decides.
 */
export const AGENTIC_PRESETS = {
  "code-gen": {
    sessions: 64,
    turns: 12,
    startTokens: 50_000,
    sharedTokens: 10_000,
    growthTokens: 3_000,
    outputTokens: 800,
    capTokens: 72_000,
    rangeRatio: 0.5,
    pauseMedianS: 8,
    pauseSigma: 1,
    pauseMaxS: 120,
    forkProbability: 0.1,
    forkCount: 2,
    forkTurns: 3,
  },
  b2b: {
    sessions: 256,
    turns: 3,
    startTokens: 5_000,
    sharedTokens: 2_000,
    growthTokens: 600,
    outputTokens: 1_000,
    capTokens: 9_000,
    rangeRatio: 0.5,
    pauseMedianS: 2,
    pauseSigma: 0.75,
    pauseMaxS: 30,
    forkProbability: 0,
    forkCount: 0,
    forkTurns: 0,
  },
  "fan-out": {
    sessions: 64,
    turns: 4,
    startTokens: 6_000,
    sharedTokens: 1_000,
    growthTokens: 1_000,
    outputTokens: 400,
    capTokens: 12_000,
    rangeRatio: 0.5,
    pauseMedianS: 2,
    pauseSigma: 0.75,
    pauseMaxS: 30,
    forkProbability: 1,
    forkCount: 4,
    forkTurns: 1,
  },
} as const satisfies Record<string, Omit<AgenticOptions, "seed">>;
export type AgenticPreset = keyof typeof AGENTIC_PRESETS;
/** the preset a caller that names none gets */
export const AGENTIC_DEFAULT_PRESET: AgenticPreset = "code-gen";
/** the most tokens a turn of these sessions holds: its longest prompt with its answer */
export const longestAgenticTurn = (o: Omit<AgenticOptions, "seed">) => o.capTokens + o.outputTokens;
export const AGENTIC_PRESET_NAMES = Object.keys(AGENTIC_PRESETS) as AgenticPreset[];

/** A turn's shape before its text: tokens appended, pause before it, and its forks' shapes. */
interface TurnShape {
  tokens: number;
  pauseS: number;
  forks: TurnShape[][];
}

function pauseOf(o: AgenticOptions, rng: Rng): number {
  if (o.pauseMedianS <= 0) return 0;
  return Math.min(o.pauseMaxS, o.pauseMedianS * Math.exp(o.pauseSigma * standardNormal(rng)));
}

/** turns while the context stays under the cap; `context`: tokens before the first of them */
function turnsOf(o: AgenticOptions, rng: Rng, max: number, context: number, first: boolean): TurnShape[] {
  const out: TurnShape[] = [];
  for (let r = 0; r < max; r++) {
    const tokens = rangeLength(o.growthTokens, o.rangeRatio, rng.next());
    // a session sends at least its first turn, whatever the cap
    if (context + tokens > o.capTokens && !(first && r === 0)) break;
    out.push({ tokens, pauseS: first && r === 0 ? 0 : pauseOf(o, rng), forks: [] });
    context += tokens + o.outputTokens;
  }
  return out;
}

/** the session's shape: its turns, and for each the sub-agents it forks */
function shapeOf(o: AgenticOptions, i: number): TurnShape[] {
  const rng = makeRng(o.seed, `agentic-shape-${i}`);
  const turns = turnsOf(o, rng, o.turns, o.startTokens, true);
  let context = o.startTokens;
  for (let r = 0; r < turns.length; r++) {
    const t = turns[r]!;
    context += t.tokens + o.outputTokens;
    if (r === turns.length - 1 || o.forkCount <= 0 || rng.next() >= o.forkProbability) continue;
    for (let k = 0; k < o.forkCount; k++) {
      const sub = turnsOf(o, rng, o.forkTurns, context, false);
      // a sub-agent's first turn starts as soon as its parent's answer is in
      if (sub.length > 0) sub[0]!.pauseS = 0;
      if (sub.length > 0) t.forks.push(sub);
    }
  }
  return turns;
}

function requestsOf(turns: readonly TurnShape[]): number {
  let n = turns.length;
  for (const t of turns) for (const f of t.forks) n += requestsOf(f);
  return n;
}

export function agenticWorkload(o: AgenticOptions, shape: TextShape = DEFAULT_SHAPE): Workload {
  function* sessions(): Generator<Session> {
    const shared = randomText(o.sharedTokens, makeRng(o.seed, "agentic-shared"), shape);
    for (let i = 0; i < o.sessions; i++) {
      const rng = makeRng(o.seed, `agentic-text-${i}`);
      const id = `agent-${i}`;
      // the session's own context starts with its id, so that sessions diverge right after the shared part
      const own = `${id}: ${randomText(Math.max(0, o.startTokens - o.sharedTokens - 2), rng, shape)}`;
      const system = o.sharedTokens > 0 ? `${shared}\n\n${own}` : own;
      const text = (r: number, t: TurnShape, who: string) =>
        `${who} step ${r}: ${randomText(Math.max(1, t.tokens - 3), rng, shape)}`;
      const turns: Turn[] = [];
      const session: Session = {
        id,
        index: i,
        system,
        systemTokens: o.startTokens,
        turns,
        carriesHistory: true,
      };
      const shapes = shapeOf(o, i);
      for (let r = 0; r < shapes.length; r++) {
        const t = shapes[r]!;
        turns.push({
          text: text(r, t, "tool"),
          tokens: t.tokens,
          maxTokens: o.outputTokens,
          ...(t.pauseS > 0 ? { pauseBeforeS: t.pauseS } : {}),
        });
      }
      // forks: the parent's turns so far, then their own
      for (let r = 0; r < shapes.length; r++) {
        const forks = shapes[r]!.forks;
        if (forks.length === 0) continue;
        turns[r]!.forks = forks.map((sub, k): Session => {
          const subId = `${id}/sub${k}@${r}`;
          return {
            id: subId,
            index: i,
            system,
            systemTokens: o.startTokens,
            turns: [
              ...turns
                .slice(0, r + 1)
                .map((t) => ({ text: t.text, tokens: t.tokens, maxTokens: t.maxTokens })),
              ...sub.map((t, j) => ({
                text: text(j, t, `sub-agent ${k}`),
                tokens: t.tokens,
                maxTokens: o.outputTokens,
                ...(t.pauseS > 0 ? { pauseBeforeS: t.pauseS } : {}),
              })),
            ],
            carriesHistory: true,
            startRound: r + 1,
            parentId: id,
          };
        });
      }
      yield session;
    }
  }
  let natural = 0;
  for (let i = 0; i < o.sessions; i++) natural += requestsOf(shapeOf(o, i));
  return {
    name: "agentic",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: natural,
    defaultEndpoint: "chat",
    sessionHeader: true,
  };
}

/** a preset's options, with any of them overridden */
export function agenticOptions(
  preset: AgenticPreset,
  seed: number,
  over: Partial<Omit<AgenticOptions, "seed">> = {},
): AgenticOptions {
  return { ...AGENTIC_PRESETS[preset], ...over, seed };
}

/**
 * Every session of a workload with its forks, depth first (a fork after the turn that spawns it is
 * answered): for measurements that look a session up by id.
 */
export function* withForks(sessions: Iterable<Session>): Generator<Session> {
  for (const s of sessions) {
    yield s;
    for (const t of s.turns.slice(s.startRound ?? 0)) if (t.forks) yield* withForks(t.forks);
  }
}
