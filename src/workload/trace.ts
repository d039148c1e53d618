// `trace`: a production request trace replayed request for request, at its own timestamps. The format is
// Mooncake's FAST'25 release (github.com/kvcache-ai/Mooncake, FAST25-release/traces): one JSON object a
// line with `timestamp` (ms from the trace's start), `input_length`, `output_length` and `hash_ids`, one
// id per 512-token block of the prompt, equal ids meaning equal blocks (the last block may be partial).
// Alibaba's Qwen-Bailian traces add `chat_id`, `parent_chat_id` and `turn`; a request with a chat id
// carries it as its session id. The text is made here: each hash id gets its own block of whole words,
// each word with its leading space, drawn from a stream seeded by the id — so a block tokenises to the same
// ids wherever it stands in a prompt, and equal hash ids give equal token blocks on the engine whatever
// its tokenizer. `blockTokens` scales a 512-token block down (64 for CPU-sized runs); every length scales
// with it. Parsing is separate from generation so that generation stays pure.
import { makeRng } from "../random/rng.js";
import { DEFAULT_SHAPE, WORDS, wordsFor, type TextShape } from "./text.js";
import type { Session, Workload } from "./types.js";
import { InputFileError, InvalidConfigError } from "../errors/index.js";

/** tokens per hash block in the trace's own accounting (Mooncake's) */
export const TRACE_BLOCK_TOKENS = 512;
/** the most requests one window replays: a bound on what the generator holds */
export const MAX_TRACE_REQUESTS = 1_000_000;

export interface TraceEntry {
  /** ms from the trace's start */
  timestampMs: number;
  inputLength: number;
  outputLength: number;
  hashIds: number[];
  /** Qwen-Bailian: the conversation turn's own id, or null */
  chatId: number | string | null;
}

export interface TraceOptions {
  /** window start, seconds from the trace's start */
  startS: number;
  /** window length in trace seconds; Infinity: to the end */
  durationS: number;
  /** replay speed: 2 sends the window's requests in half its time */
  speed: number;
  /** tokens a hash block becomes (512: the trace's own) */
  blockTokens: number;
  /** max_tokens at most (the trace's output_length otherwise); null: no cap */
  maxOutput: number | null;
  /** seeds the words of every block: another seed gives other text with the same sharing */
  seed: number;
}

export const TRACE_DEFAULTS: Omit<TraceOptions, "seed"> = {
  startS: 0,
  durationS: Infinity,
  speed: 1,
  blockTokens: TRACE_BLOCK_TOKENS,
  maxOutput: null,
};

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** Parses a JSONL trace; throws on the first bad line, naming it. Blank lines are skipped. */
export function parseTrace(text: string, source = "trace"): TraceEntry[] {
  const out: TraceEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const where = `${source}:${i + 1}`;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      throw new InputFileError(`${where}: not JSON (${(err as Error).message})`);
    }
    if (o === null || typeof o !== "object" || Array.isArray(o))
      throw new InputFileError(`${where}: expected an object`);
    const ts = o.timestamp;
    if (typeof ts !== "number" || !Number.isFinite(ts) || ts < 0)
      throw new InputFileError(`${where}: timestamp: expected milliseconds >= 0, got ${JSON.stringify(ts)}`);
    if (!isCount(o.input_length) || o.input_length < 1)
      throw new InputFileError(
        `${where}: input_length: expected a positive integer, got ${JSON.stringify(o.input_length)}`,
      );
    if (!isCount(o.output_length))
      throw new InputFileError(
        `${where}: output_length: expected an integer >= 0, got ${JSON.stringify(o.output_length)}`,
      );
    const ids = o.hash_ids;
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every(isCount))
      throw new InputFileError(`${where}: hash_ids: expected a non-empty list of integers >= 0`);
    const chat = o.chat_id;
    out.push({
      timestampMs: ts,
      inputLength: o.input_length,
      outputLength: o.output_length,
      hashIds: ids,
      chatId: typeof chat === "number" || typeof chat === "string" ? chat : null,
    });
    if (out.length > MAX_TRACE_REQUESTS)
      throw new InputFileError(`${source}: more than ${MAX_TRACE_REQUESTS} requests`);
  }
  return out;
}

/** The words of hash block `id`: `n` words from the block's own seeded stream (a prefix of any longer draw). */
export function blockWords(id: number, n: number, seed: number): string[] {
  const rng = makeRng(seed, `trace-block-${id}`);
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) out[i] = WORDS[Math.floor(rng.next() * WORDS.length)]!;
  return out;
}

/** Prompt tokens a request becomes at `blockTokens` per block: full blocks, then the partial last one. */
export function scaledBlocks(e: TraceEntry, blockTokens: number): number[] {
  const n = e.hashIds.length;
  const last = Math.min(TRACE_BLOCK_TOKENS, Math.max(1, e.inputLength - (n - 1) * TRACE_BLOCK_TOKENS));
  const out = new Array<number>(n).fill(blockTokens);
  out[n - 1] = Math.max(1, Math.round((last * blockTokens) / TRACE_BLOCK_TOKENS));
  return out;
}

/** The prompt of one request: its blocks' words, each with its leading space. */
export function tracePrompt(e: TraceEntry, o: TraceOptions, shape: TextShape = DEFAULT_SHAPE): string {
  const sizes = scaledBlocks(e, o.blockTokens);
  let text = "";
  for (let b = 0; b < sizes.length; b++) {
    for (const w of blockWords(e.hashIds[b]!, wordsFor(sizes[b]!, shape), o.seed)) text += " " + w;
  }
  return text;
}

/** The window's requests in timestamp order. */
export function traceWindow(entries: readonly TraceEntry[], o: TraceOptions): TraceEntry[] {
  const lo = o.startS * 1000;
  const hi = Number.isFinite(o.durationS) ? lo + o.durationS * 1000 : Infinity;
  return entries
    .filter((e) => e.timestampMs >= lo && e.timestampMs < hi)
    .sort((a, b) => a.timestampMs - b.timestampMs);
}

export function checkTraceOptions(o: TraceOptions): void {
  if (!(o.startS >= 0)) throw new InvalidConfigError(`--trace-start: expected seconds >= 0, got ${o.startS}`);
  if (!(o.durationS > 0))
    throw new InvalidConfigError(`--trace-duration: expected seconds > 0, got ${o.durationS}`);
  if (!(o.speed > 0) || !Number.isFinite(o.speed))
    throw new InvalidConfigError(`--trace-speed: expected a factor > 0, got ${o.speed}`);
  if (!Number.isInteger(o.blockTokens) || o.blockTokens < 1)
    throw new InvalidConfigError(`--trace-block-tokens: expected a positive integer, got ${o.blockTokens}`);
  if (o.maxOutput !== null && (!Number.isInteger(o.maxOutput) || o.maxOutput < 1))
    throw new InvalidConfigError(`--trace-max-output: expected a positive integer, got ${o.maxOutput}`);
}

/**
 * The window as single-turn sessions, with `arrivalGapsS`: the gaps between their send times (the
 * first 0, at the window's first request), divided by the speed. Sessions carry no header: a router
 * finds shared blocks by the prompt, as in the traced service.
 */
export function traceWorkload(
  entries: readonly TraceEntry[],
  o: TraceOptions,
  shape: TextShape = DEFAULT_SHAPE,
): Workload & { arrivalGapsS: number[] } {
  checkTraceOptions(o);
  const window = traceWindow(entries, o);
  const gaps = window.map((e, i) =>
    i === 0 ? 0 : (e.timestampMs - window[i - 1]!.timestampMs) / 1000 / o.speed,
  );
  function* sessions(): Generator<Session> {
    for (let i = 0; i < window.length; i++) {
      const e = window[i]!;
      const tokens = scaledBlocks(e, o.blockTokens).reduce((a, b) => a + b, 0);
      const out = Math.max(1, o.maxOutput !== null ? Math.min(o.maxOutput, e.outputLength) : e.outputLength);
      yield {
        id: e.chatId !== null ? `chat-${e.chatId}` : `trace-${i}`,
        index: i,
        system: null,
        systemTokens: 0,
        turns: [{ text: tracePrompt(e, o, shape), tokens, maxTokens: out }],
        carriesHistory: false,
      };
    }
  }
  return {
    name: "trace",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: window.length,
    defaultEndpoint: "completions",
    sessionHeader: false,
    arrivalGapsS: gaps,
  };
}

/** What a window holds, for the result's options: requests, their rate, mean lengths, block reuse. */
export function traceSummary(entries: readonly TraceEntry[], o: TraceOptions): Record<string, number> {
  const w = traceWindow(entries, o);
  if (w.length === 0) return { requests: 0 };
  const spanS = (w[w.length - 1]!.timestampMs - w[0]!.timestampMs) / 1000 / o.speed;
  const seen = new Set<number>();
  let blocks = 0;
  let repeated = 0;
  let input = 0;
  let output = 0;
  for (const e of w) {
    for (const id of e.hashIds) {
      blocks++;
      if (seen.has(id)) repeated++;
      else seen.add(id);
    }
    input += scaledBlocks(e, o.blockTokens).reduce((a, b) => a + b, 0);
    output += Math.max(1, o.maxOutput !== null ? Math.min(o.maxOutput, e.outputLength) : e.outputLength);
  }
  return {
    requests: w.length,
    request_rate: spanS > 0 ? w.length / spanS : w.length,
    mean_input_tokens: input / w.length,
    mean_output_tokens: output / w.length,
    repeated_block_share: repeated / blocks,
  };
}
