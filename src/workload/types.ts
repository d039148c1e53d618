// What a workload generator produces: request descriptions with no HTTP in them, so that the same
// generator drives the live bench and the fleet simulator's virtual time.

export type Endpoint = "chat" | "completions";

/** One request of a session. */
export interface Turn {
  /** the new content: the whole user prompt (single-turn) or this round's question (multi-round) */
  text: string;
  /** intended length of `text` in tokens of the endpoint's tokenizer (before any chat template) */
  tokens: number;
  /** max_tokens to ask for */
  maxTokens: number;
  /**
   * seconds to wait after the previous turn's answer before sending this one (an agent's tool call);
   * absent or 0: at once. Ignored on a session's first turn, which its arrival schedules.
   */
  pauseBeforeS?: number | undefined;
  /**
   * sub-agents this turn spawns once its answer arrives: sessions whose first `startRound` turns are
   * this session's turns so far, answered with this session's answers (they fork its context)
   */
  forks?: readonly Session[] | undefined;
}

/**
 * A sequence of requests that must run in order. A single-turn workload is sessions of one turn.
 * In a multi-round session the next turn is sent only after the previous answer arrived, and its
 * history carries that answer (chat: an assistant message; completions: appended text).
 */
export interface Session {
  /** stable id; sent as the `x-session-id` (and `x-user-id`) header when the workload routes by session */
  id: string;
  index: number;
  /** text that precedes every turn (a system prompt in chat), or null */
  system: string | null;
  systemTokens: number;
  turns: Turn[];
  /** whether later turns carry the earlier questions and answers */
  carriesHistory: boolean;
  /**
   * a fork (Turn.forks): the turns before this one are its parent's, already answered; the session's
   * first request is turn `startRound`, carrying the parent's answers. Absent: 0.
   */
  startRound?: number | undefined;
  /** a fork: its parent session's id */
  parentId?: string | undefined;
}

export interface Workload {
  name: string;
  /** sessions in the order they start; may be endless (bounded by --num-requests or --duration) */
  sessions: Iterable<Session>;
  /** number of requests when the workload has a natural size (groups × prompts, users × rounds), else null */
  naturalRequests: number | null;
  defaultEndpoint: Endpoint;
  /** whether requests carry the session id header for session-affinity routing */
  sessionHeader: boolean;
  /**
   * a replayed trace's own schedule: the gap in seconds before each session's first turn (the first 0),
   * in session order; present, it replaces the arrival schedule of --qps
   */
  arrivalGapsS?: readonly number[] | undefined;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** The chat messages of turn `round` given the answers already received in this session. */
export function chatMessages(session: Session, round: number, answers: readonly string[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (session.system !== null) out.push({ role: "system", content: session.system });
  if (session.carriesHistory) {
    for (let r = 0; r < round; r++) {
      out.push({ role: "user", content: session.turns[r]!.text });
      out.push({ role: "assistant", content: answers[r] ?? "" });
    }
  }
  out.push({ role: "user", content: session.turns[round]!.text });
  return out;
}

/** The completions prompt of turn `round`: system, earlier rounds and answers, then this turn. */
export function completionPrompt(session: Session, round: number, answers: readonly string[]): string {
  const parts: string[] = [];
  if (session.system !== null) parts.push(session.system);
  if (session.carriesHistory) {
    for (let r = 0; r < round; r++) parts.push(session.turns[r]!.text, answers[r] ?? "");
  }
  parts.push(session.turns[round]!.text);
  return parts.join("\n\n");
}

/**
 * Whether a session's turn is sent after a tool pause (Turn.pauseBeforeS): an agent's resumed turn, whose
 * context may have left the engine's cache meanwhile. The live bench and the fleet simulator mark their
 * records by it, and the agentic benchmark picks the turns it reports by it.
 */
export function sentAfterPause(session: Session, round: number): boolean {
  return (session.turns[round]?.pauseBeforeS ?? 0) > 0;
}

/** Intended prompt tokens of turn `round`, counting earlier answers as their max_tokens. */
export function intendedPromptTokens(session: Session, round: number): number {
  let n = session.systemTokens;
  if (session.carriesHistory) {
    for (let r = 0; r < round; r++) n += session.turns[r]!.tokens + session.turns[r]!.maxTokens;
  }
  return n + session.turns[round]!.tokens;
}

/** Lengths drawn uniformly in [len·(1−r), len·(1+r)], as vllm bench's --random-range-ratio. */
export function rangeLength(len: number, ratio: number, u: number): number {
  if (ratio <= 0) return len;
  const lo = Math.max(1, Math.floor(len * (1 - ratio)));
  const hi = Math.max(lo, Math.ceil(len * (1 + ratio)));
  return lo + Math.floor(u * (hi - lo + 1));
}
