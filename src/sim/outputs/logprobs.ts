// Logprobs in vLLM's shapes: chat's `logprobs.content[]` ({token, logprob, bytes, top_logprobs}),
// the legacy completions object ({text_offset, token_logprobs, tokens, top_logprobs}) and
// `prompt_logprobs` (per position null or {id: {logprob, rank, decoded_token}}), with vLLM's limits.
//
// The values are synthetic: for each position a distribution over a few pool tokens is drawn from a
// hash of the context before it (--seed, the LoRA adapter, the prompt and the output so far), so they
// are deterministic, a continued answer gets the values of the unbroken one, and they are shaped like
// a model's: probabilities that fall with rank and sum below 1. The sampled token is rank 1 with
// temperature 0 (greedy: its logprob is the highest), otherwise rank 1 to 3.
//
// Entries keep vLLM's order: the sampled (or prompt) token first, then ranks 1..k without it, so
// chat's top_logprobs are the first k of those and the legacy dicts the first k + 1.
import { HttpError } from "../../http/errors.js";
import { fmix, fold, mulberry32 } from "../../random/rng.js";

const LOGPROB_SALT = 0x5bd1e995;
const ALT_SALT = 0x2545f491;
/** vLLM clamps -inf to this in every answer */
const FLOOR = -9999;
/** prompt positions per slice when prompt logprobs are built between turns of the event loop (~1 ms) */
const SLICE = 256;
/** items joined into one piece of JSON text: a long prompt's logprobs leave as many bounded pieces */
const PIECE = 256;

/** One position: ids[0] is the sampled (or prompt) token; ranks and logprobs alongside. */
export interface LogprobStep {
  ids: number[];
  logprobs: number[];
  ranks: number[];
}

export type TokenString = (id: number) => string;

/** Characters as Python counts them (code points): vLLM's text_offset unit. */
export function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u >= 0xd800 && u < 0xdc00) n--;
  }
  return n;
}

/** The probabilities of ranks 1..n: falling, summing below 1. */
function rankProbs(n: number, rand: () => number): number[] {
  const p: number[] = [];
  let rest = 1;
  for (let r = 1; r <= n; r++) {
    const share = r === 1 ? 0.5 + 0.49 * rand() : 0.5 + 0.4 * rand();
    const v = rest * share;
    p.push(v);
    rest -= v;
  }
  return p;
}

/**
 * The step at a context hash `h` for `chosen`: its rank (`fixedRank`, else drawn by `drawRank`), and
 * ranks 1..k filled with pool tokens other than it.
 */
function stepAt(
  h: number,
  chosen: number,
  k: number,
  pool: Int32Array,
  drawRank: (rand: () => number) => number,
): LogprobStep {
  const rand = mulberry32(fmix(h ^ LOGPROB_SALT));
  const rank = drawRank(rand);
  const probs = rankProbs(Math.max(Math.min(k, pool.length - 1), rank), rand);
  const step: LogprobStep = {
    ids: [chosen],
    logprobs: [Math.max(FLOOR, Math.log(probs[rank - 1]!))],
    ranks: [rank],
  };
  // alternatives are distinct pool tokens: a count past the pool (--max-logprobs -1) stops there
  const alternatives = Math.min(k, pool.length - 1);
  for (let r = 1; r <= alternatives; r++) {
    if (r === rank) continue;
    let idx = fmix((h ^ ALT_SALT) + Math.imul(r, 0x9e3779b9)) % pool.length;
    let id = pool[idx]!;
    // distinct tokens: walk on through the pool past ones already used (a short list: no Set to allocate)
    for (let tries = 0; step.ids.includes(id) && tries < pool.length; tries++) {
      idx = (idx + 1) % pool.length;
      id = pool[idx]!;
    }
    step.ids.push(id);
    step.logprobs.push(Math.max(FLOOR, Math.log(probs[r - 1]!)));
    step.ranks.push(r);
  }
  return step;
}

const greedyRank = () => 1;
const sampledRank = (rand: () => number) => {
  const u = rand();
  return u < 0.7 ? 1 : u < 0.9 ? 2 : 3;
};
/** a prompt token was written by a person, not drawn: often far from rank 1 */
const promptRank = (rand: () => number) => 1 + Math.floor(rand() * rand() * 40);

/** The context hash after a prompt: computed once per prompt, shared by its choices' chains. */
export function promptState(prompt: readonly number[], seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < prompt.length; i++) h = fold(h, prompt[i]!);
  return h;
}

/** The output's logprobs, one position at a time, each a function of the context before it. */
export class LogprobChain {
  private h: number;
  private readonly drawRank: (rand: () => number) => number;

  constructor(
    /** promptState of the prompt */
    prompt: number,
    choiceSalt: number,
    private readonly pool: Int32Array,
    private readonly k: number,
    greedy: boolean,
  ) {
    this.h = choiceSalt !== 0 ? fold(prompt, choiceSalt ^ 0x9e3779b9) : prompt;
    this.drawRank = greedy ? greedyRank : sampledRank;
  }

  /** The step of the next output token, which then joins the context. */
  next(id: number): LogprobStep {
    const step = stepAt(this.h, id, this.k, this.pool, this.drawRank);
    this.h = fold(this.h, id);
    return step;
  }
}

function bytesOf(s: string): number[] {
  return Array.from(Buffer.from(s, "utf8"));
}

/** Chat's `logprobs.content` entries of some steps, as JSON text (without the brackets). */
export function chatEntries(steps: readonly LogprobStep[], k: number, str: TokenString): string {
  const out: string[] = [];
  for (const s of steps) {
    const top: unknown[] = [];
    for (let i = 0; i < Math.min(k, s.ids.length); i++) {
      const t = str(s.ids[i]!);
      top.push({ token: t, logprob: s.logprobs[i], bytes: bytesOf(t) });
    }
    const t = str(s.ids[0]!);
    out.push(JSON.stringify({ token: t, logprob: s.logprobs[0], bytes: bytesOf(t), top_logprobs: top }));
  }
  return out.join(",");
}

/**
 * One JSON array's items as text, joined a run of PIECE at a time as they come: a long prompt's
 * columns then hold a few large strings, not hundreds of thousands of small ones for the collector
 * to copy at every young-generation pass.
 */
class Column {
  readonly runs: string[] = [];
  private cur: string[] = [];

  push(item: string): void {
    this.cur.push(item);
    if (this.cur.length >= PIECE) this.seal();
  }

  private seal(): void {
    if (this.cur.length === 0) return;
    this.runs.push(this.cur.join(","));
    this.cur = [];
  }

  /** the runs, the last one sealed */
  all(): readonly string[] {
    this.seal();
    return this.runs;
  }
}

/** The legacy completions logprobs, built column by column as JSON text. */
export class LegacyColumns {
  private readonly offsets = new Column();
  private readonly values = new Column();
  private readonly tokens = new Column();
  private readonly tops = new Column();
  /** where the next token's text starts (code points, as Python counts) */
  offset: number;

  constructor(
    initialOffset: number,
    private readonly k: number,
    private readonly str: TokenString,
  ) {
    this.offset = initialOffset;
  }

  private token(t: string): void {
    this.offsets.push(String(this.offset));
    this.tokens.push(JSON.stringify(t));
    this.offset += codePoints(t);
  }

  /** a position with no logprobs (a prompt's first token) */
  addNull(id: number): void {
    this.token(this.str(id));
    this.values.push("null");
    this.tops.push("null");
  }

  add(s: LogprobStep): void {
    this.token(this.str(s.ids[0]!));
    this.values.push(String(s.logprobs[0]));
    // vLLM keeps entries 0..k (the sampled token and k more, or k when it is among them); a text
    // two tokens share is one key, the later value at the earlier place, as a Python dict does
    const n = Math.min(this.k + 1, s.ids.length);
    let dict = "{";
    for (let i = 0; i < n; i++) {
      const key = this.str(s.ids[i]!);
      let shared = false;
      for (let j = 0; j < i && !shared; j++) shared = this.str(s.ids[j]!) === key;
      if (shared) continue;
      let value = s.logprobs[i]!;
      for (let j = i + 1; j < n; j++) if (this.str(s.ids[j]!) === key) value = s.logprobs[j]!;
      dict += (dict.length > 1 ? "," : "") + JSON.stringify(key) + ":" + value;
    }
    this.tops.push(dict + "}");
  }

  /** The columns of `sets` (an echoed prompt's, then the output's) as one object, in pieces. */
  static *jsonPieces(sets: readonly LegacyColumns[]): Generator<string> {
    const heads = [`{"text_offset":[`, `],"token_logprobs":[`, `],"tokens":[`, `],"top_logprobs":[`];
    const picks = [
      (c: LegacyColumns) => c.offsets,
      (c: LegacyColumns) => c.values,
      (c: LegacyColumns) => c.tokens,
      (c: LegacyColumns) => c.tops,
    ];
    for (let col = 0; col < heads.length; col++) {
      yield heads[col]!;
      let first = true;
      for (const set of sets) {
        for (const run of picks[col]!(set).all()) {
          yield first ? run : "," + run;
          first = false;
        }
      }
    }
    yield "]}";
  }

  json(): string {
    return [...LegacyColumns.jsonPieces([this])].join("");
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The prompt's steps, position 1 on (position 0 has none), each from the hash of what precedes it. */
async function forEachPromptStep(
  ids: readonly number[],
  seed: number,
  pool: Int32Array,
  k: number,
  visit: (j: number, step: LogprobStep | null) => void,
): Promise<void> {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let j = 0; j < ids.length; j++) {
    if (j > 0 && j % SLICE === 0) await nextTurn();
    visit(j, j === 0 ? null : stepAt(h, ids[j]!, k, pool, promptRank));
    h = fold(h, ids[j]!);
  }
}

/**
 * vLLM's `prompt_logprobs` as JSON text in bounded pieces (their concatenation), built in slices
 * between turns of the event loop.
 */
export async function promptLogprobsJson(
  ids: readonly number[],
  seed: number,
  pool: Int32Array,
  k: number,
  str: TokenString,
): Promise<string[]> {
  const pieces: string[] = ["["];
  let parts: string[] = [];
  const flush = (): void => {
    if (parts.length === 0) return;
    pieces.push((pieces.length > 1 ? "," : "") + parts.join(","));
    parts = [];
  };
  await forEachPromptStep(ids, seed, pool, k, (_j, s) => {
    if (parts.length >= PIECE) flush();
    if (s === null) {
      parts.push("null");
      return;
    }
    // written as text, not objects to stringify: a long prompt makes millions of these
    let entry = "{";
    for (let i = 0; i < s.ids.length; i++) {
      entry += `${i > 0 ? "," : ""}"${s.ids[i]}":{"logprob":${s.logprobs[i]},"rank":${s.ranks[i]},"decoded_token":${JSON.stringify(str(s.ids[i]!))}}`;
    }
    parts.push(entry + "}");
  });
  flush();
  pieces.push("]");
  return pieces;
}

/** The echoed prompt's columns of the legacy completions logprobs, built in slices. */
export async function promptLegacyColumns(
  ids: readonly number[],
  seed: number,
  pool: Int32Array,
  k: number,
  str: TokenString,
): Promise<LegacyColumns> {
  const cols = new LegacyColumns(0, k, str);
  await forEachPromptStep(ids, seed, pool, k, (j, s) => (s === null ? cols.addNull(ids[j]!) : cols.add(s)));
  return cols;
}

/** vLLM's request checks and engine limits on logprobs; the counts the request asks for. */
export function checkLogprobs(
  p: {
    /** chat: logprobs true/false; completions: the count */
    logprobs: number | null;
    /** chat only: top_logprobs */
    topLogprobs: number | null | undefined;
    promptLogprobs: number | null | undefined;
    stream: boolean;
    chat: boolean;
  },
  maxLogprobs: number,
  vocabSize: number,
): void {
  const { promptLogprobs: pl, topLogprobs: tl } = p;
  if (pl !== null && pl !== undefined) {
    if (p.stream && (pl > 0 || pl === -1))
      throw new HttpError(400, "`prompt_logprobs` are not available when `stream=True`.", "prompt_logprobs");
    if (pl < 0 && pl !== -1)
      throw new HttpError(400, "`prompt_logprobs` must be a positive value or -1.", "prompt_logprobs");
  }
  if (p.chat) {
    if (tl !== null && tl !== undefined) {
      if (tl < 0 && tl !== -1)
        throw new HttpError(400, "`top_logprobs` must be a positive value or -1.", "top_logprobs");
      if ((tl === -1 || tl > 0) && !p.logprobs)
        throw new HttpError(
          400,
          "when using `top_logprobs`, `logprobs` must be set to true.",
          "top_logprobs",
        );
    }
  } else if (p.logprobs !== null && p.logprobs < 0 && p.logprobs !== -1) {
    throw new HttpError(400, "`logprobs` must be a positive value or -1.", "logprobs");
  }
  const max = maxLogprobs === -1 ? vocabSize : maxLogprobs;
  // -1 asks for the whole vocabulary
  const within = (what: "sample" | "prompt", param: string, asked: number): void => {
    const n = asked === -1 ? vocabSize : asked;
    if (n > max)
      throw new HttpError(
        400,
        `Requested ${what} logprobs of ${n}, which is greater than max allowed: ${max} (parameter=${param}, value=${n})`,
        param,
      );
  };
  const sample = p.chat ? (p.logprobs ? (tl ?? 0) : null) : p.logprobs;
  if (sample) within("sample", "logprobs", sample);
  if (pl) within("prompt", "prompt_logprobs", pl);
}
