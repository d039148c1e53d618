// What a migratable stream has delivered so far, kept while it is relayed: the output's token ids
// (asked for with `return_token_ids`) and text, where the answer stands, and whatever would keep it
// from continuing elsewhere. It also shapes what reaches the client: only whole SSE events (an engine
// that dies mid-event leaves no half event), the router's token ids blanked unless the client asked,
// in-stream errors held while the stream may still move, and after a migration the next engine's events
// made to read as the same stream. A non-streamed request that may migrate is asked as a stream and its
// JSON answer assembled here. Only requests that may migrate get a ledger (rules.ts decides).
// See docs/reliability.md#migration.
import { StringDecoder } from "node:string_decoder";
import { assistantMessage } from "../../http/vllm-answers.js";
import { DONE_DATA, DONE_EVENT } from "../../protocol/sse.js";

export type GenerationKind = "chat" | "completion";

/** An error event an engine sent mid-stream, withheld while the stream may still continue. */
export interface HeldError {
  status: number;
  message: string;
  /** the event as the engine wrote it, relayed when the stream cannot continue */
  event: string;
}

/** An SSE event longer than this is not an answer chunk: the stream is relayed without tracking. */
const MAX_EVENT_CHARS = 8 * 2 ** 20;
const TOKEN_IDS = '"token_ids":[';
const PROMPT_TOKEN_IDS = '"prompt_token_ids":[';

interface Choice {
  index?: unknown;
  text?: unknown;
  delta?: {
    role?: unknown;
    content?: unknown;
    tool_calls?: unknown;
    reasoning_content?: unknown;
    reasoning?: unknown;
  } | null;
  finish_reason?: unknown;
  stop_reason?: unknown;
  token_ids?: unknown;
  prompt_token_ids?: unknown;
  logprobs?: { text_offset?: unknown; content?: unknown } | null;
}

interface Chunk {
  id?: unknown;
  object?: unknown;
  created?: unknown;
  model?: unknown;
  choices?: unknown;
  usage?: Record<string, unknown> | null;
  prompt_token_ids?: unknown;
  error?: { message?: unknown; code?: unknown } | string;
}

/** `"key":[ ...ints... ]` → `"key":null` wherever it occurs outside strings (ids hold no `]`). */
function blankIds(text: string, key: string): string {
  let at = text.indexOf(key);
  while (at >= 0) {
    const end = text.indexOf("]", at + key.length);
    if (end < 0) return text;
    text = text.slice(0, at + key.length - 1) + "null" + text.slice(end + 1);
    at = text.indexOf(key, at);
  }
  return text;
}

/** The index of the quote closing the JSON string whose opening quote is at `open`; -1 if none. */
function stringEnd(s: string, open: number): number {
  for (let i = open + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) return i;
    if (c === 92) i++;
  }
  return -1;
}

/** The JSON string between the quotes at `open` and `close`, unescaped. */
function stringValue(s: string, open: number, close: number): string {
  const raw = s.slice(open + 1, close);
  return raw.includes("\\") ? (JSON.parse(s.slice(open, close + 1)) as string) : raw;
}

/** Python's len(): code points, for completion logprobs' text_offset. */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** A completion's logprobs (columns) as a chat's (one entry per token, alternatives best first). */
function chatLogprobs(lp: Choice["logprobs"], top: number | undefined): Choice["logprobs"] {
  if (!lp || typeof lp !== "object" || top === undefined) return null;
  const cols = lp as { tokens?: unknown; token_logprobs?: unknown; top_logprobs?: unknown };
  const tokens = Array.isArray(cols.tokens) ? (cols.tokens as unknown[]) : [];
  const values = Array.isArray(cols.token_logprobs) ? (cols.token_logprobs as unknown[]) : [];
  const tops = Array.isArray(cols.top_logprobs) ? (cols.top_logprobs as unknown[]) : [];
  const entry = (token: string, logprob: unknown) => ({
    token,
    logprob: typeof logprob === "number" ? logprob : -9999,
    bytes: [...Buffer.from(token, "utf8")],
  });
  const content = tokens.map((t, i) => {
    const token = typeof t === "string" ? t : String(t);
    const alts = tops[i];
    const list =
      alts && typeof alts === "object"
        ? Object.entries(alts as Record<string, unknown>)
            .sort((a, b) => (b[1] as number) - (a[1] as number))
            .slice(0, top)
            .map(([k, v]) => entry(k, v))
        : [];
    return { ...entry(token, values[i]), top_logprobs: list };
  });
  return { content };
}

export class MigrationLedger {
  /** the prompt's token ids as the first engine reported them */
  promptIds: number[] | undefined;
  /** every output token id delivered, across engines */
  readonly outputIds: number[] = [];
  /** the output text delivered (completion text, or the chat message's content) */
  text = "";
  finishReason: string | null = null;
  /** the stream's [DONE] was relayed: nothing is left to migrate */
  sawDone = false;
  /** the usage chunk (no choices) was relayed */
  usageSent = false;
  heldError: HeldError | undefined;
  /** why the stream can no longer migrate, once something in it says so */
  blocked: string | undefined;
  /** migrations made so far */
  migrations = 0;
  private idsSeen = false;
  /** events that carried output, the token count when the engine sends no ids (approximate) */
  private outputEvents = 0;
  private promptTokens: number | undefined;
  private id: unknown;
  private created: unknown;
  private model: unknown;
  private continuing = false;
  /** tokens and text (code points) delivered before the current engine took over */
  private tokenBase = 0;
  private textBase = 0;
  private carry = "";
  /** the last chunk ended with a newline: no UTF-8 sequence is left half-decoded */
  private clean = true;
  /** events taken in (the assembled answer's progress, when nothing is relayed) */
  events = 0;
  /** buffered: what the JSON answer needs besides the text */
  private logprobs: Record<string, unknown[]> | undefined;
  private stopReason: unknown = null;
  private usage: Record<string, unknown> | undefined;
  /** made at the first byte of each attempt: a split UTF-8 sequence never crosses engines */
  private decoder: StringDecoder | undefined;
  /** the kind of stream the current engine writes (a chat may continue as a completion) */
  private from: GenerationKind;
  /** a chat continued as a completion that asked for logprobs: alternatives kept per token */
  private topLogprobs: number | undefined;
  /** the route continuations go to, when not the client's (a chat continued from token ids) */
  path: string | undefined;

  constructor(
    readonly kind: GenerationKind,
    /** the client did not ask for token ids: the ones the router asked for are blanked */
    private readonly blankTokenIds: boolean,
    /** the client asked for a JSON answer: events are kept, not relayed (answer() at the end) */
    readonly buffered = false,
  ) {
    this.from = kind;
  }

  /** Output tokens delivered: exact when the engines return token ids, else the events counted. */
  get tokens(): number {
    return this.idsSeen ? this.outputIds.length : this.outputEvents;
  }

  /** The prompt's length in tokens, when the first engine said (ids or usage). */
  get promptLength(): number | undefined {
    return this.promptIds?.length ?? this.promptTokens;
  }

  /** The engines reported output token ids (vLLM 0.10.2+ with return_token_ids). */
  get exact(): boolean {
    return this.idsSeen;
  }

  /** An engine's response bytes in; what goes to the client out (whole events only; may be ""). */
  relay(chunk: Buffer): string {
    // the common chunk: whole events, after whole events (no UTF-8 sequence split at either end)
    let s =
      this.carry === "" && this.clean && chunk[chunk.length - 1] === 0x0a
        ? chunk.toString("utf8")
        : this.carry + (this.decoder ??= new StringDecoder("utf8")).write(chunk);
    this.clean = chunk[chunk.length - 1] === 0x0a;
    let out = "";
    let from = 0;
    let cut: number;
    while ((cut = s.indexOf("\n\n", from)) >= 0) {
      out += this.event(s.slice(from, cut));
      from = cut + 2;
    }
    s = from === 0 ? s : s.slice(from);
    if (s.length > MAX_EVENT_CHARS) {
      // no event boundary in sight: not a stream of answer chunks; stop tracking, keep relaying
      this.blocked ??= "the stream's events could not be read";
      out += s;
      s = "";
    }
    this.carry = s;
    return out;
  }

  /** A new attempt starts: what an engine tried before left half-sent is dropped. */
  dropPartial(): void {
    this.carry = "";
    this.clean = true;
    this.heldError = undefined;
    this.decoder = undefined;
  }

  /**
   * The next engine continues this stream: its events are made to read as the same stream's.
   * `asTokens`: it continues as a completion from token ids, sent to that path.
   */
  beginContinuation(asTokens?: { path: string; topLogprobs: number | undefined }): void {
    if (asTokens) {
      this.from = "completion";
      this.path = asTokens.path;
      this.topLogprobs = asTokens.topLogprobs;
    }
    this.continuing = true;
    this.migrations++;
    this.tokenBase = this.tokens;
    this.textBase = codePoints(this.text);
    this.dropPartial();
  }

  /**
   * The end of a stream whose engine stopped after its last token: a finishing event when none was
   * sent (`finish`), the usage chunk when the client asked for one, then [DONE].
   */
  closingEvents(finish: string | null, includeUsage: boolean): string {
    const object = this.kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const head = { id: this.id, object, created: this.created, model: this.model };
    let out = "";
    if (finish !== null) {
      const choice =
        this.kind === "chat"
          ? { index: 0, delta: {}, logprobs: null, finish_reason: finish, stop_reason: null }
          : { index: 0, text: "", logprobs: null, finish_reason: finish, stop_reason: null };
      out += `data: ${JSON.stringify({ ...head, choices: [choice] })}\n\n`;
      this.finishReason = finish;
    }
    if (includeUsage) {
      const p = this.promptLength ?? 0;
      const c = this.tokens;
      const usage = { prompt_tokens: p, total_tokens: p + c, completion_tokens: c };
      out += `data: ${JSON.stringify({ ...head, choices: [], usage })}\n\n`;
    }
    this.sawDone = true;
    return out + DONE_EVENT;
  }

  private event(ev: string): string {
    if (!ev.startsWith("data:")) return ev + "\n\n";
    const payload = ev.charCodeAt(5) === 32 ? ev.slice(6) : ev.slice(5);
    if (payload === DONE_DATA) {
      // an engine's [DONE] after its error event stays back with the error
      if (this.heldError) return "";
      this.sawDone = true;
      return ev + "\n\n";
    }
    this.events++;
    // the hot path: an answer chunk in vLLM's own layout, read without parsing it whole
    if (!this.continuing && !this.buffered && this.id !== undefined) {
      const out = this.fastEvent(ev);
      if (out !== undefined) return out;
    }
    let doc: Chunk;
    try {
      doc = JSON.parse(payload) as Chunk;
    } catch {
      this.blocked ??= "an event of the stream was not JSON";
      return ev + "\n\n";
    }
    if (doc === null || typeof doc !== "object") return ev + "\n\n";
    if (doc.error !== undefined && doc.choices === undefined) return this.errorEvent(ev, doc);
    const rewrite = this.continuing;
    const choices = Array.isArray(doc.choices) ? (doc.choices as Choice[]) : [];
    if (choices.length === 0 && doc.usage) this.usageSent = true;
    // a chat continued as a completion: its chunks become chat chunks
    const rewrap = rewrite && this.from !== this.kind;
    if (rewrap) doc.object = "chat.completion.chunk";
    for (let i = 0; i < choices.length; i++) {
      const c = choices[i]!;
      if (!c || typeof c !== "object") continue;
      if (c.index !== undefined && c.index !== 0) this.blocked ??= "more than one choice (n > 1)";
      let text: unknown;
      if (this.from === "completion") text = c.text;
      else {
        const d = c.delta;
        if (d && typeof d === "object") {
          if (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) this.blocked ??= "tool calls";
          if (d.reasoning_content || d.reasoning) this.blocked ??= "reasoning output (a reasoning parser)";
          text = d.content;
          // the next engine's opening role event: the client has had one
          if (rewrite && d.role !== undefined && !text && !Array.isArray(c.token_ids)) return "";
        }
      }
      const ids = c.token_ids;
      if (Array.isArray(ids)) {
        this.idsSeen = true;
        for (const id of ids) this.outputIds.push(id as number);
      }
      if (typeof text === "string" && text.length > 0) {
        this.text += text;
        this.outputEvents++;
      } else if (Array.isArray(ids) && ids.length > 0) this.outputEvents++;
      if (typeof c.finish_reason === "string") this.finishReason = c.finish_reason;
      if (!rewrite && Array.isArray(c.prompt_token_ids)) this.promptIds = c.prompt_token_ids as number[];
      if (rewrap) choices[i] = this.chatChoice(c, text);
      else if (rewrite) {
        if (c.prompt_token_ids !== undefined) c.prompt_token_ids = null;
        if (this.blankTokenIds && c.token_ids !== undefined) c.token_ids = null;
        const off = c.logprobs?.text_offset;
        if (Array.isArray(off))
          for (let k = 0; k < off.length; k++) off[k] = (off[k] as number) + this.textBase;
      }
    }
    if (!rewrite) {
      if (this.id === undefined) {
        this.id = doc.id;
        this.created = doc.created;
        this.model = doc.model;
      }
      if (Array.isArray(doc.prompt_token_ids)) this.promptIds = doc.prompt_token_ids as number[];
      const u = doc.usage;
      if (u && typeof u.prompt_tokens === "number") this.promptTokens = u.prompt_tokens;
      if (this.buffered) return this.keep(doc, choices);
      if (!this.blankTokenIds) return ev + "\n\n";
      let out = ev;
      if (out.includes(TOKEN_IDS)) out = blankIds(out, TOKEN_IDS);
      if (out.includes(PROMPT_TOKEN_IDS)) out = blankIds(out, PROMPT_TOKEN_IDS);
      return out + "\n\n";
    }
    // a continuation's event, made to read as the first engine's stream
    doc.id = this.id;
    doc.created = this.created;
    // the prompt's ids went out with the first event, as vLLM sends them
    if (doc.prompt_token_ids !== undefined) delete doc.prompt_token_ids;
    const u = doc.usage;
    if (u && typeof u.completion_tokens === "number") {
      const completion = this.tokenBase + u.completion_tokens;
      const prompt =
        this.promptLength ?? (typeof u.prompt_tokens === "number" ? u.prompt_tokens - this.tokenBase : 0);
      u.prompt_tokens = prompt;
      u.completion_tokens = completion;
      u.total_tokens = prompt + completion;
    }
    if (this.buffered) return this.keep(doc, choices);
    return `data: ${JSON.stringify(doc)}\n\n`;
  }

  /** A completion's choice as the chat chunk's choice it stands for. */
  private chatChoice(c: Choice, text: unknown): Choice {
    const out: Choice = {
      index: c.index ?? 0,
      delta: typeof text === "string" ? { content: text } : {},
      logprobs: chatLogprobs(c.logprobs, this.topLogprobs),
      finish_reason: c.finish_reason ?? null,
      stop_reason: c.stop_reason ?? null,
    };
    if (c.token_ids !== undefined) out.token_ids = this.blankTokenIds ? null : c.token_ids;
    return out;
  }

  /** buffered: keeps what the JSON answer needs of an event; relays nothing */
  private keep(doc: Chunk, choices: Choice[]): string {
    for (const c of choices) {
      if (c.stop_reason !== undefined) this.stopReason = c.stop_reason;
      const lp = c.logprobs;
      if (!lp || typeof lp !== "object") continue;
      const into = (this.logprobs ??= {});
      for (const [k, v] of Object.entries(lp))
        if (Array.isArray(v)) (into[k] ??= []).push(...(v as unknown[]));
    }
    if (choices.length === 0 && doc.usage) this.usage = doc.usage;
    return "";
  }

  /** buffered: vLLM's JSON answer, assembled from the events (after `finish` when the router ends it). */
  answer(): string {
    const p = this.promptLength ?? 0;
    const c = this.tokens;
    const usage = this.usage ?? { prompt_tokens: p, total_tokens: p + c, completion_tokens: c };
    usage.prompt_tokens_details ??= null;
    usage.completion_tokens_details ??= null;
    const ids = !this.blankTokenIds;
    const head = { id: this.id, object: "", created: this.created, model: this.model };
    if (this.kind === "chat") {
      head.object = "chat.completion";
      const message = assistantMessage(this.text);
      return JSON.stringify({
        ...head,
        choices: [
          {
            index: 0,
            message,
            logprobs: this.logprobs ?? null,
            finish_reason: this.finishReason,
            stop_reason: this.stopReason,
            token_ids: ids ? this.outputIds : null,
            routed_experts: null,
          },
        ],
        service_tier: null,
        system_fingerprint: null,
        usage,
        prompt_logprobs: null,
        prompt_token_ids: ids ? (this.promptIds ?? null) : null,
        prompt_text: null,
        kv_transfer_params: null,
        ec_transfer_params: null,
        metrics: null,
      });
    }
    head.object = "text_completion";
    return JSON.stringify({
      ...head,
      choices: [
        {
          index: 0,
          text: this.text,
          logprobs: this.logprobs ?? null,
          finish_reason: this.finishReason,
          stop_reason: this.stopReason,
          token_ids: ids ? this.outputIds : null,
          prompt_logprobs: null,
          prompt_token_ids: ids ? (this.promptIds ?? null) : null,
          routed_experts: null,
        },
      ],
      service_tier: null,
      system_fingerprint: null,
      usage,
      kv_transfer_params: null,
      ec_transfer_params: null,
      metrics: null,
    });
  }

  /** The router ends an answer the engines left with nothing more to generate. */
  finish(reason: string): void {
    this.finishReason = reason;
    this.sawDone = true;
  }

  /**
   * One answer chunk as vLLM writes it (pydantic's compact JSON, keys in field order: after
   * `"choices":[{"index":0,` the completion's `"text":"…"` or the chat's `"delta":{"content":"…"}`,
   * then `finish_reason`, …, `"token_ids":[…]` and the choice's end), read with a few forward
   * searches instead of a full parse: a quarter of the cost. Anything else — another layout, a role
   * or tool or reasoning delta, logprobs, a prompt's ids, more than one choice — returns undefined
   * and takes the full parse. A key cannot appear inside a string value: JSON escapes its quotes.
   */
  private fastEvent(ev: string): string | undefined {
    let i = ev.indexOf('"choices":[{"index":0,', 6);
    if (i < 0) return undefined;
    i += 22;
    let at: number;
    if (this.kind === "completion") {
      if (!ev.startsWith('"text":"', i)) return undefined;
      at = i + 7;
    } else {
      if (!ev.startsWith('"delta":{"content":"', i)) return undefined;
      at = i + 19;
    }
    const end = stringEnd(ev, at);
    if (end < 0) return undefined;
    i = end + 1;
    if (this.kind === "chat") {
      if (ev.charCodeAt(i) !== 125) return undefined; // the delta holds more than its content
      i++;
    }
    if (!ev.startsWith(',"logprobs":null,"finish_reason":', i)) return undefined;
    i += 33;
    let finish: string | null = null;
    if (ev.charCodeAt(i) === 34) {
      const fe = stringEnd(ev, i);
      if (fe < 0) return undefined;
      finish = ev.slice(i + 1, fe);
      i = fe + 1;
    } else if (!ev.startsWith("null", i)) return undefined;
    const t = ev.indexOf('"token_ids":[', i);
    // no ids (an engine before vLLM 0.10.2), or a prompt's ids on the way (a list before them)
    if (t < 0 || ev.lastIndexOf("[", t) >= i) return undefined;
    const close = ev.indexOf("]", t + 13);
    if (close < 0) return undefined;
    // the choice and the list of choices end right after the ids: one choice
    if (!ev.startsWith("}]", close + 1) || ev.indexOf('{"index":', close) >= 0) return undefined;
    const ids = this.outputIds;
    const before = ids.length;
    let n = 0;
    let digits = false;
    for (let k = t + 13; k < close; k++) {
      const c = ev.charCodeAt(k);
      if (c >= 48 && c <= 57) {
        n = n * 10 + (c - 48);
        digits = true;
      } else if (c === 44 && digits) {
        ids.push(n);
        n = 0;
        digits = false;
      } else {
        ids.length = before;
        return undefined;
      }
    }
    if (digits) ids.push(n);
    const text = stringValue(ev, at, end);
    this.idsSeen = true;
    if (text.length > 0) {
      this.text += text;
      this.outputEvents++;
    } else if (ids.length > before) this.outputEvents++;
    if (finish !== null) this.finishReason = finish;
    if (!this.blankTokenIds) return ev + "\n\n";
    return ev.slice(0, t + 12) + "null" + ev.slice(close + 1) + "\n\n";
  }

  private errorEvent(ev: string, doc: Chunk): string {
    const e = doc.error;
    const message = typeof e === "string" ? e : typeof e?.message === "string" ? e.message : "engine error";
    const code = typeof e === "object" && typeof e?.code === "number" ? e.code : 500;
    // a client error the engine found mid-stream is the request's: the client gets it as it is
    if (code < 500) return ev + "\n\n";
    this.heldError = { status: code, message, event: ev + "\n\n" };
    return "";
  }
}
