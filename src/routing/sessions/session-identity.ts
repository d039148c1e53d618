// Session identity: which agent session a request belongs to, from what clients actually send
// (vllm-router's `vllm_xargs.agentic_context`, a header or body field, the Responses API's
// `previous_response_id` chain), else inferred as the session whose last prompt this one extends.
// Routing a turn where the session's KV still is needs the session's name, and clients name it in
// different ways or not at all. Pure and bounded: no I/O, no clock; sessions and remembered prompt
// ends are LRUs with a cap and an idle expiry, and per request the hashing is bounded (the limits:
// docs/routing.md#session-identity).
import { detached } from "../../collections/detached.js";
import { LruMap } from "../../collections/lru-map.js";
import { NumberLruMap } from "../../collections/number-lru-map.js";
import { contentText, type ChatMessage } from "../../protocol/chat-messages.js";

export type SessionSource = "agentic-context" | "header" | "body" | "response-chain" | "inferred";
export const SESSION_SOURCES: readonly SessionSource[] = [
  "agentic-context",
  "header",
  "body",
  "response-chain",
  "inferred",
];

/** What `vllm_xargs.agentic_context` says, read and checked (fields of the wrong type are left out). */
export interface AgenticContext {
  /** the program: `program_id`, else `session_id`, else `task_id` */
  programId: string;
  parentProgramId?: string;
  rootProgramId?: string;
  sessionId?: string;
  taskId?: string;
  agentId?: string;
  agentRole?: string;
  stepId?: number;
  priority?: number;
  deadlineS?: number;
  expectedOutputLength?: number;
  kvRetentionTtlS?: number;
}

export interface SessionIdentity {
  key: string;
  source: SessionSource;
  /** the request's `vllm_xargs.agentic_context`, when it carried one */
  agentic?: AgenticContext;
}

export interface SessionTrackerOptions {
  /** sessions remembered at most; the least recently seen goes first */
  maxSessions: number;
  /** a session unseen this long (ms) is forgotten */
  idleMs: number;
  /** read `vllm_xargs.agentic_context` */
  agenticContext: boolean;
  /** top-level body field naming the session when no header does (e.g. "user") */
  bodyKey?: string | undefined;
  /** a Responses follow-up belongs to its previous response's session */
  responseChain: boolean;
  /** a request naming no session joins the one whose last prompt it extends */
  infer: boolean;
  /** prefixes inferred keys, so that the processes of a router group do not mint the same ones */
  namespace?: string;
}

export const SESSION_DEFAULTS: SessionTrackerOptions = {
  maxSessions: 65_536,
  // vllm-router's paused_retention_ttl_seconds
  idleMs: 30 * 60_000,
  agenticContext: true,
  responseChain: true,
  infer: true,
};

/** What the caller read off one request. */
export interface SessionRequest {
  /** the session header's value */
  header?: string | undefined;
  /** the parsed JSON body */
  body?: Record<string, unknown> | undefined;
  /** `previous_response_id`, with the session its response was made in when the caller knows it */
  previousResponse?: { id: string; session: string | undefined } | undefined;
}

/** One session's record. */
export interface SessionRecord {
  source: SessionSource;
  /** requests seen */
  turns: number;
  firstSeen: number;
  lastSeen: number;
  /** the agentic context's parent program, when one was named */
  parent?: string;
}

/** Keys longer than this are replaced by their hash: a session costs memory for its key. */
const MAX_KEY_CHARS = 256;
/** characters of a text prompt per unit of the inference chain */
const BLOCK_CHARS = 256;
/** units of a prompt (messages, or text blocks) looked at; past it the prompt counts as its first units */
const MAX_UNITS = 2_048;
/** a message's text hashed whole up to this; beyond, its length, both ends and 32 slices */
const FULL_HASH_CHARS = 16 * 1024;
const END_CHARS = 4 * 1024;
const SLICES = 32;
const SLICE_CHARS = 64;
/**
 * characters one request's prompt may cost in all (a fraction of a millisecond); past it a message is
 * hashed by its length and 64 characters at each end, a text block by 32 at each end. Which way a unit
 * is hashed depends only on the units before it, so a prompt and the next turn's, which extends it,
 * hash it alike.
 */
const REQUEST_HASH_CHARS = 256 * 1024;
const THIN_CHARS = 64;
/** prompts remembered per session at the cap (a session's last prompt and its forks' share this) */
const ENDS_PER_SESSION = 2;
/** different prompts ending at one chained hash (text prompts differing only in their last partial block) */
const MAX_TAILS = 4;
/** expired records dropped per call (each call adds at most one of each kind, so this keeps pace) */
const EXPIRE_PER_CALL = 64;

/** A prompt that ended at one chained hash: the characters after its last full block, and its session. */
interface PromptEnd {
  key: string;
  tail: string;
  /** longer than MAX_UNITS: only its first units are known */
  truncated: boolean;
  at: number;
}

/** A prompt as the inference index sees it: the chained hash after each unit. */
interface PromptChain {
  ends: number[];
  /** a text prompt (its blocks are the units); undefined for messages */
  text: string | undefined;
  tail: string;
  truncated: boolean;
}

export class SessionTracker {
  private readonly sessions = new LruMap<string, SessionRecord>();
  /** in typed arrays: a prompt is matched by looking up each of its block ends, most of them absent */
  private readonly ends = new NumberLruMap<PromptEnd[]>();
  private o: SessionTrackerOptions;
  private minted = 0;
  /** sessions dropped at the cap */
  evictions = 0;
  /** sessions dropped after their idle time */
  expired = 0;
  /** identities found, by source */
  readonly found: Record<SessionSource, number> = {
    "agentic-context": 0,
    header: 0,
    body: 0,
    "response-chain": 0,
    inferred: 0,
  };

  constructor(options: Partial<SessionTrackerOptions> = {}) {
    this.o = { ...SESSION_DEFAULTS, ...options };
  }

  /** New options (hot reload): a lower cap drops the least recently seen at once. */
  configure(options: Partial<SessionTrackerOptions>): void {
    this.o = { ...this.o, ...options };
    this.trim();
  }

  /** Forgets every session and prompt end (a reload to a policy that reads no session key); counts stay. */
  clear(): void {
    this.sessions.clear();
    this.ends.clear();
  }

  get options(): Readonly<SessionTrackerOptions> {
    return this.o;
  }

  /** sessions remembered */
  get size(): number {
    return this.sessions.size;
  }

  /** prompt ends the inference index holds */
  get indexed(): number {
    return this.ends.size;
  }

  /** A session's record, without making it more recent. */
  get(key: string): SessionRecord | undefined {
    return this.sessions.get(key);
  }

  /**
   * The session a request belongs to, by the first of: its agentic context, the header, the body field,
   * its previous response's session, the session whose last prompt it extends. Undefined when none
   * applies (a first prompt is still remembered, so that its next turn finds it).
   */
  identify(req: SessionRequest, now: number): SessionIdentity | undefined {
    this.expire(now);
    const id = this.explicit(req);
    if (id) return this.seen(id, now);
    if (!this.o.infer || !req.body) return undefined;
    const chain = promptChain(req.body);
    if (!chain) return undefined;
    const found = this.match(chain, now);
    const key = found ?? this.mint();
    this.remember(chain, key, now);
    return found !== undefined ? this.seen({ key, source: "inferred" }, now) : undefined;
  }

  /**
   * The session a request names (agentic context, header, body field, Responses chain), as identify
   * would name it, without tracking anything: no inference, no record, no counts. For a router whose
   * policy reads no session key (policyReadsSessions) but still shows and remembers a named one.
   */
  named(req: SessionRequest): SessionIdentity | undefined {
    return this.explicit(req);
  }

  private explicit(req: SessionRequest): SessionIdentity | undefined {
    const options = this.o;
    if (options.agenticContext && req.body) {
      const agentic = agenticContextOf(req.body);
      if (agentic) return { key: boundedKey(agentic.programId), source: "agentic-context", agentic };
    }
    if (req.header !== undefined && req.header !== "")
      return { key: boundedKey(req.header), source: "header" };
    if (options.bodyKey && req.body) {
      const named = req.body[options.bodyKey];
      if (
        (typeof named === "string" && named !== "") ||
        (typeof named === "number" && Number.isFinite(named))
      )
        return { key: boundedKey(String(named)), source: "body" };
    }
    const prev = req.previousResponse;
    if (options.responseChain && prev)
      return { key: prev.session ?? boundedKey(`~r:${prev.id}`), source: "response-chain" };
    return undefined;
  }

  /** The session's record made current; the cap applied. */
  private seen(id: SessionIdentity, now: number): SessionIdentity {
    const rec = this.sessions.use(id.key);
    if (rec) {
      rec.turns++;
      rec.lastSeen = now;
      rec.source = id.source;
    } else {
      const fresh: SessionRecord = { source: id.source, turns: 1, firstSeen: now, lastSeen: now };
      if (id.agentic?.parentProgramId !== undefined) fresh.parent = id.agentic.parentProgramId;
      this.sessions.set(id.key, fresh);
      this.trim();
    }
    this.found[id.source]++;
    return id;
  }

  /** The session of the longest remembered prompt this one strictly extends. */
  private match(chain: PromptChain, now: number): string | undefined {
    const { ends, text } = chain;
    for (let i = ends.length; i >= 1; i--) {
      const list = this.ends.get(ends[i - 1]!);
      if (!list) continue;
      for (const promptEnd of list) {
        if (now - promptEnd.at > this.o.idleMs) continue;
        if (promptEnd.truncated) {
          if (chain.truncated && i === ends.length) return promptEnd.key;
          continue;
        }
        if (text === undefined) {
          // a conversation: the remembered one is a strict prefix in messages
          if (i < ends.length) return promptEnd.key;
          continue;
        }
        const at = i * BLOCK_CHARS;
        if (text.length > at + promptEnd.tail.length && text.startsWith(promptEnd.tail, at))
          return promptEnd.key;
      }
    }
    return undefined;
  }

  /** The prompt's end remembered for the session, as its newest. */
  private remember(chain: PromptChain, key: string, now: number): void {
    const end = chain.ends[chain.ends.length - 1]!;
    // the tail is a slice of the prompt: kept as it is, it would keep the whole prompt alive
    const tail = detached(chain.tail);
    const promptEnd: PromptEnd = { key, tail, truncated: chain.truncated, at: now };
    const list = this.ends.use(end);
    if (!list) {
      this.ends.set(end, [promptEnd]);
      while (this.ends.size > this.o.maxSessions * ENDS_PER_SESSION) this.ends.shift();
      return;
    }
    const same = list.findIndex((x) => x.tail === promptEnd.tail && x.truncated === promptEnd.truncated);
    if (same >= 0) list.splice(same, 1);
    list.unshift(promptEnd);
    if (list.length > MAX_TAILS) list.length = MAX_TAILS;
  }

  private mint(): string {
    return `~p:${this.o.namespace ?? ""}${(this.minted++).toString(36)}`;
  }

  private trim(): void {
    while (this.sessions.size > this.o.maxSessions && this.sessions.shift()) this.evictions++;
    while (this.ends.size > this.o.maxSessions * ENDS_PER_SESSION) this.ends.shift();
  }

  /** Sessions and prompt ends past their idle time, oldest first (both LRUs are in time order). */
  private expire(now: number): void {
    const idle = this.o.idleMs;
    for (let round = 0; round < EXPIRE_PER_CALL; round++) {
      const oldest = this.sessions.oldest();
      if (!oldest || now - oldest.value.lastSeen <= idle) break;
      this.sessions.shift();
      this.expired++;
    }
    for (let round = 0; round < EXPIRE_PER_CALL; round++) {
      const oldest = this.ends.oldestValue();
      if (!oldest || now - (oldest[0]?.at ?? -Infinity) <= idle) break;
      this.ends.shift();
    }
  }
}

/** `vllm_xargs.agentic_context` read and checked; undefined when absent or naming no program. */
export function agenticContextOf(body: Record<string, unknown>): AgenticContext | undefined {
  const xargs = body.vllm_xargs;
  if (!xargs || typeof xargs !== "object" || Array.isArray(xargs)) return undefined;
  const raw = (xargs as Record<string, unknown>).agentic_context;
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return undefined;
  const ctx = raw as Record<string, unknown>;
  const str = (k: string) => {
    const value = ctx[k];
    return typeof value === "string" && value !== "" ? value : undefined;
  };
  const num = (k: string) => {
    const value = ctx[k];
    return typeof value === "number" && Number.isFinite(value) ? value : undefined;
  };
  const programId = str("program_id") ?? str("session_id") ?? str("task_id");
  if (programId === undefined) return undefined;
  const out: AgenticContext = { programId };
  const set = <K extends keyof AgenticContext>(k: K, value: AgenticContext[K] | undefined) => {
    if (value !== undefined) out[k] = value;
  };
  set("parentProgramId", str("parent_program_id"));
  set("rootProgramId", str("root_program_id"));
  set("sessionId", str("session_id"));
  set("taskId", str("task_id"));
  set("agentId", str("agent_id"));
  set("agentRole", str("agent_role"));
  set("stepId", num("step_id"));
  set("priority", num("priority"));
  set("deadlineS", num("deadline_seconds"));
  set("expectedOutputLength", num("expected_output_length"));
  set("kvRetentionTtlS", num("kv_retention_ttl_seconds"));
  return out;
}

function boundedKey(key: string): string {
  if (key.length <= MAX_KEY_CHARS) return key;
  const lanes = new Lanes();
  lanes.text(key, 0, key.length);
  return `~h:${lanes.value().toString(36)}`;
}

/**
 * Two 32-bit FNV-1a lanes with different offsets, read as one 53-bit number: chained over a prompt's
 * units, equal values mean equal prefixes (a 32-bit chain collides among ~77,000 prompts once in two).
 * Text is taken two UTF-16 units a step, each lane folding its high bits back down (as FNV's multiply
 * carries only upward): a chain of one multiply per lane per unit bound a long prompt's hashing to the
 * multiplier's latency, a tenth of the router's loop at 500 req/s of 4k-token prompts.
 */
class Lanes {
  a = 0x811c9dc5;
  b = 0x01000193 ^ 0x5bd1e995;
  /** characters left to hash in full or sampled (REQUEST_HASH_CHARS) */
  budget = REQUEST_HASH_CHARS;

  /** characters [from, to) of s */
  text(source: string, from: number, to: number): void {
    let laneA = this.a;
    let laneB = this.b;
    let i = from;
    for (; i + 1 < to; i += 2) {
      const code = source.charCodeAt(i) | (source.charCodeAt(i + 1) << 16);
      laneA = Math.imul(laneA ^ code, 0x01000193) ^ (laneA >>> 13);
      laneB = Math.imul(laneB ^ code, 0x01000193) ^ (laneB >>> 15);
    }
    if (i < to) {
      const code = source.charCodeAt(i);
      laneA = Math.imul(laneA ^ code, 0x01000193) ^ (laneA >>> 13);
      laneB = Math.imul(laneB ^ code, 0x01000193) ^ (laneB >>> 15);
    }
    this.a = laneA;
    this.b = laneB;
  }

  num(value: number): void {
    this.a = Math.imul(this.a ^ (value | 0), 0x01000193);
    this.b = Math.imul(this.b ^ ((value / 4294967296) | 0), 0x01000193) ^ (value & 0xffff);
  }

  /**
   * a string hashed whole when short, else by its length, its ends and 32 slices; once the request's
   * budget is spent, by its length and its ends' 64 characters
   */
  sampled(source: string): void {
    this.num(source.length);
    const cost = Math.min(source.length, FULL_HASH_CHARS);
    if (cost > this.budget) {
      const sampledLength = Math.min(source.length, THIN_CHARS);
      this.text(source, 0, sampledLength);
      this.text(source, source.length - sampledLength, source.length);
      return;
    }
    this.budget -= cost;
    if (source.length <= FULL_HASH_CHARS) return this.text(source, 0, source.length);
    this.text(source, 0, END_CHARS);
    this.text(source, source.length - END_CHARS, source.length);
    const step = Math.floor((source.length - SLICE_CHARS) / SLICES);
    for (let k = 0; k < SLICES; k++) this.text(source, k * step, k * step + SLICE_CHARS);
  }

  value(): number {
    return (this.a >>> 0) * 2 ** 21 + ((this.b >>> 0) & 0x1fffff);
  }
}

const ITEM_NAMES = ["type", "role", "name", "tool_call_id", "call_id"] as const;
const ITEM_TEXTS = ["output", "arguments", "text"] as const;

/** one unit of a conversation: a message, or a Responses input item */
function hashItem(lanes: Lanes, item: unknown): void {
  if (typeof item === "string") return lanes.sampled(item);
  if (!item || typeof item !== "object") return lanes.num(0);
  const fields = item as Record<string, unknown>;
  for (const k of ITEM_NAMES) {
    const value = fields[k];
    lanes.sampled(typeof value === "string" ? value : "");
  }
  const content = fields.content;
  lanes.sampled(
    typeof content === "string" || Array.isArray(content)
      ? contentText(content as ChatMessage["content"])
      : "",
  );
  for (const k of ITEM_TEXTS) {
    const value = fields[k];
    if (typeof value === "string") lanes.sampled(value);
  }
  const calls = fields.tool_calls;
  if (Array.isArray(calls)) {
    lanes.num(calls.length);
    for (let i = 0; i < calls.length && i < 64; i++) {
      const call = (calls[i] as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
      lanes.sampled(typeof call?.name === "string" ? call.name : "");
      lanes.sampled(typeof call?.arguments === "string" ? call.arguments : "");
    }
  }
}

/** A request's prompt as chained hashes: messages (chat, Messages), input items (Responses) or text blocks. */
function promptChain(body: Record<string, unknown>): PromptChain | undefined {
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : undefined;
  const items = messages ?? (Array.isArray(body.input) ? (body.input as unknown[]) : undefined);
  if (!items) {
    const prompt = body.prompt ?? body.input;
    const text =
      typeof prompt === "string"
        ? prompt
        : Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === "string"
          ? prompt[0]
          : undefined;
    return text === undefined ? undefined : textChain(text);
  }
  const lanes = new Lanes();
  const ends: number[] = [];
  // Anthropic Messages carry the system prompt beside the messages
  if (messages && body.system !== undefined && body.system !== null) {
    hashItem(lanes, { role: "system", content: body.system });
    ends.push(lanes.value());
  }
  const count = Math.min(items.length, MAX_UNITS);
  for (let i = 0; i < count; i++) {
    hashItem(lanes, items[i]);
    ends.push(lanes.value());
  }
  if (ends.length === 0) return undefined;
  return { ends, text: undefined, tail: "", truncated: items.length > MAX_UNITS };
}

function textChain(text: string): PromptChain | undefined {
  const full = Math.floor(text.length / BLOCK_CHARS);
  if (full === 0) return undefined;
  const units = Math.min(full, MAX_UNITS);
  const lanes = new Lanes();
  const ends: number[] = [];
  for (let k = 0; k < units; k++) {
    const at = k * BLOCK_CHARS;
    if (lanes.budget >= BLOCK_CHARS) {
      lanes.budget -= BLOCK_CHARS;
      lanes.text(text, at, at + BLOCK_CHARS);
    } else {
      lanes.text(text, at, at + THIN_CHARS / 2);
      lanes.text(text, at + BLOCK_CHARS - THIN_CHARS / 2, at + BLOCK_CHARS);
    }
    ends.push(lanes.value());
  }
  const truncated = full > MAX_UNITS;
  return { ends, text, tail: truncated ? "" : text.slice(units * BLOCK_CHARS), truncated };
}
