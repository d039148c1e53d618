// Finds an answer's token usage in the bytes the router relays, in every protocol an engine answers
// with (OpenAI's, Anthropic Messages', the Responses API's), wherever it sits. A JSON answer's `usage`
// may come before megabytes of `prompt_logprobs`, so the bytes are scanned once as they pass, by a
// small state machine (in a string or not, nesting depth, the first two levels' keys) that copies out
// only the usage object (bounded) and counts only a `usage` at the protocol's place. SSE is read line
// by line, each event's `data:` one JSON document. In a stream only the closing usage settles the
// completion; running counts (`continuous_usage_stats`) are one choice's so far. See
// docs/security.md#in-the-router-request-path.

/** Token counts read from an answer; a count the answer did not give is undefined. */
export interface FoundUsage {
  prompt: number | undefined;
  completion: number | undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;
const NL = 0x0a;

/** 1 for the bytes that make JSON's structure outside strings: `"` `{` `}` `[` `]` `,` `:` */
const STRUCTURE = new Uint8Array(256);
for (const c of [QUOTE, OPEN_OBJ, CLOSE_OBJ, OPEN_ARR, CLOSE_ARR, COMMA, COLON]) STRUCTURE[c] = 1;

/** a usage object is a few hundred bytes (Responses' with its details ~400): past this it is not one */
const MAX_USAGE_BYTES = 4096;
/** the longest key remembered (`response`); longer keys are none the scanner looks for */
const MAX_KEY_BYTES = 8;
const DATA = Buffer.from("data:");

/** Scans one stream of JSON documents (one body, or one SSE event's data at a time). */
class JsonUsageScanner {
  private depth = 0;
  private inString = false;
  /** the byte after a backslash in a string, carried across a chunk boundary */
  private escaped = false;
  /** the container at depth 1 and 2 is an object (bit 1, bit 2) */
  private objects = 0;
  /** at depth 1 or 2 in an object, the next string is a key */
  private expectKey = false;
  /** bytes of the key being read (depth 1 or 2), or undefined when not reading one */
  private key: number[] | undefined;
  private keyTooLong = false;
  /** the last key read at depth 1 and at depth 2 */
  private key1 = "";
  private key2 = "";
  /** a usage object being copied out: its pieces, its size, the depth it opened at */
  private capture: Buffer[] | undefined;
  private captureSize = 0;
  private captureDepth = 0;
  /** message_start's `message.usage`: the prompt only (its output_tokens is 0 by design) */
  private promptOnly = false;
  private captureFrom = 0;
  /** an element of a top-level `choices` list was opened: the document's usage is a running count */
  choicesNonEmpty = false;
  /** the next backslash at or after a position of `bsBuf` (-1: none left): one search per buffer, not per string */
  private bsBuf: Buffer | undefined;
  private bsAt = -1;

  constructor(private readonly found: (u: FoundUsage, promptOnly: boolean) => void) {}

  /** A new chunk: positions found in the last one mean nothing now. */
  forget(): void {
    this.bsBuf = undefined;
  }

  reset(): void {
    this.depth = 0;
    this.inString = this.escaped = this.expectKey = this.keyTooLong = false;
    this.objects = 0;
    this.key = this.capture = undefined;
    this.key1 = this.key2 = "";
    this.captureSize = 0;
    this.choicesNonEmpty = false;
  }

  /** Scans buf[from, to). */
  feed(buf: Buffer, from: number, to: number): void {
    if (this.capture) this.captureFrom = from;
    let i = from;
    while (i < to) {
      if (this.inString) {
        i = this.inStringScan(buf, i, to);
        continue;
      }
      // the bytes between structure (numbers, literals, whitespace) in a native-speed loop
      while (i < to && STRUCTURE[buf[i]!] === 0) i++;
      if (i >= to) break;
      const c = buf[i]!;
      if (c === QUOTE) {
        this.inString = true;
        // a key of depth 1 or 2 is read; every other string is only skipped
        if (this.expectKey && this.depth <= 2) {
          this.key = [];
          this.keyTooLong = false;
        }
        i++;
        continue;
      }
      if (c === OPEN_OBJ || c === OPEN_ARR) {
        const d = ++this.depth;
        if (d === 1 || d === 2) {
          const bit = d === 1 ? 1 : 2;
          if (d === 1) this.key1 = "";
          this.key2 = "";
          if (c === OPEN_OBJ) this.objects |= bit;
          else this.objects &= ~bit;
        } else if (d === 3 && this.key1 === "choices" && (this.objects & 3) === 1)
          this.choicesNonEmpty = true;
        if (c === OPEN_OBJ && !this.capture && this.wantsUsage(d)) this.startCapture(i, d);
        this.expectKey = c === OPEN_OBJ;
        i++;
        continue;
      }
      if (c === CLOSE_OBJ || c === CLOSE_ARR) {
        if (this.capture && this.depth === this.captureDepth) this.endCapture(buf, i + 1);
        if (this.depth > 0) this.depth--;
        this.expectKey = false;
        i++;
        continue;
      }
      if (c === COMMA) this.expectKey = this.inObject(this.depth);
      else if (c === COLON) this.expectKey = false;
      i++;
    }
    if (this.capture && to > this.captureFrom) this.keep(buf.subarray(this.captureFrom, to));
  }

  /** Inside a string from buf[i]: finds its end (natively), reading a key's bytes when it is one. */
  private inStringScan(buf: Buffer, i: number, to: number): number {
    if (this.escaped) {
      this.escaped = false;
      this.keyTooLong = true; // an escaped key is none we look for
      return i + 1;
    }
    const q = buf.indexOf(QUOTE, i);
    const b = this.nextBackslash(buf, i);
    const qEnd = q < 0 || q >= to ? -1 : q;
    if (b >= 0 && b < to && (qEnd < 0 || b < qEnd)) {
      this.keyBytes(buf, i, b);
      this.keyTooLong = true;
      if (b + 1 >= to) {
        this.escaped = true;
        return to;
      }
      return b + 2;
    }
    if (qEnd < 0) {
      this.keyBytes(buf, i, to);
      return to;
    }
    this.keyBytes(buf, i, qEnd);
    this.inString = false;
    if (this.key) this.endKey();
    return qEnd + 1;
  }

  private nextBackslash(buf: Buffer, i: number): number {
    if (this.bsBuf !== buf || (this.bsAt >= 0 && this.bsAt < i)) {
      this.bsBuf = buf;
      this.bsAt = buf.indexOf(BACKSLASH, i);
    }
    return this.bsAt;
  }

  private keyBytes(buf: Buffer, from: number, to: number): void {
    const k = this.key;
    if (!k || this.keyTooLong) return;
    if (k.length + (to - from) > MAX_KEY_BYTES) {
      this.keyTooLong = true;
      return;
    }
    for (let j = from; j < to; j++) k.push(buf[j]!);
  }

  private endKey(): void {
    const name = this.keyTooLong ? "" : String.fromCharCode(...this.key!);
    this.key = undefined;
    this.expectKey = false;
    if (this.depth === 1) this.key1 = name;
    else this.key2 = name;
  }

  private inObject(d: number): boolean {
    if (d === 1) return (this.objects & 1) !== 0;
    if (d === 2) return (this.objects & 2) !== 0;
    return false;
  }

  /** an object opening at depth d is the value of a usage key at the protocol's place */
  private wantsUsage(d: number): boolean {
    if (d === 2) return this.key1 === "usage" && (this.objects & 1) !== 0;
    // under the top level's `message` (Anthropic message_start) or `response` (Responses events)
    if (d === 3)
      return (
        this.key2 === "usage" &&
        (this.objects & 3) === 3 &&
        (this.key1 === "message" || this.key1 === "response")
      );
    return false;
  }

  private startCapture(at: number, d: number): void {
    this.capture = [];
    this.captureSize = 0;
    this.captureDepth = d;
    this.captureFrom = at;
    this.promptOnly = d === 3 && this.key1 === "message";
  }

  private keep(piece: Buffer): void {
    if (!this.capture) return;
    this.captureSize += piece.length;
    if (this.captureSize > MAX_USAGE_BYTES) {
      this.capture = undefined;
      return;
    }
    this.capture.push(Buffer.from(piece));
  }

  private endCapture(buf: Buffer, end: number): void {
    this.keep(buf.subarray(this.captureFrom, end));
    const pieces = this.capture;
    this.capture = undefined;
    if (!pieces) return;
    const u = usageOf(Buffer.concat(pieces).toString("utf8"));
    if (u) this.found(u, this.promptOnly);
  }
}

/** The counts of a usage object's text, in either vocabulary; undefined when it has neither. */
function usageOf(text: string): FoundUsage | undefined {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== "object") return undefined;
  const r = o as Record<string, unknown>;
  const prompt = count(r.prompt_tokens) ?? count(r.input_tokens);
  const completion = count(r.completion_tokens) ?? count(r.output_tokens);
  if (prompt === undefined && completion === undefined) return undefined;
  return { prompt, completion };
}

function count(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined;
}

/** SSE line state: where the next byte falls. */
const enum Line {
  /** at the start of a line */
  Start = 0,
  /** matching `data:` at the start of a line (how many of its bytes in `matched`) */
  Field = 1,
  /** after `data:` (and its optional space): the JSON's bytes */
  Data = 2,
  /** some other line (`event:`, `id:`, a comment): skipped to its end */
  Skip = 3,
}

/**
 * The usage of one relayed answer, from its bytes in order (JSON or SSE, chosen per chunk as the
 * content type says). A body's usage is the answer's; a stream's closing usage is (the largest seen,
 * Messages giving the prompt and the output in two events); a stream's running counts give only a
 * prompt count, kept apart (`runningPrompt`).
 */
export class UsageScan {
  private readonly json = new JsonUsageScanner((u, k) => this.take(u, k));
  private line = Line.Start;
  private matched = 0;
  /** skip the one space after `data:` */
  private afterColon = false;
  private sseMode = false;
  private prompt: number | undefined;
  private completion: number | undefined;
  /** the usage of the SSE event being read, settled when it ends */
  private pendingPrompt: number | undefined;
  private pendingCompletion: number | undefined;
  private running: number | undefined;

  /** the closing counts found so far (undefined: none of that kind) */
  get usage(): FoundUsage | undefined {
    if (this.prompt === undefined && this.completion === undefined) return undefined;
    return { prompt: this.prompt, completion: this.completion };
  }

  /** the largest prompt count of a stream's running usage (one prompt's, with a list of prompts) */
  get runningPrompt(): number | undefined {
    return this.running;
  }

  feed(chunk: Buffer, isSse: boolean): void {
    this.json.forget();
    this.sseMode = isSse;
    if (!isSse) this.json.feed(chunk, 0, chunk.length);
    else this.sse(chunk);
  }

  private take(u: FoundUsage, promptOnly: boolean): void {
    if (this.sseMode) {
      // settled when the event ends: whether it carries choices may come after its usage
      if (u.prompt !== undefined) this.pendingPrompt = Math.max(this.pendingPrompt ?? 0, u.prompt);
      if (!promptOnly && u.completion !== undefined)
        this.pendingCompletion = Math.max(this.pendingCompletion ?? 0, u.completion);
      return;
    }
    this.settle(u.prompt, promptOnly ? undefined : u.completion);
  }

  private settle(prompt: number | undefined, completion: number | undefined): void {
    if (prompt !== undefined) this.prompt = Math.max(this.prompt ?? 0, prompt);
    if (completion !== undefined) this.completion = Math.max(this.completion ?? 0, completion);
  }

  /** An SSE event ended: its usage is the closing one unless it carried choices (a running count). */
  private endEvent(): void {
    if (this.pendingPrompt !== undefined || this.pendingCompletion !== undefined) {
      if (this.json.choicesNonEmpty) {
        if (this.pendingPrompt !== undefined) this.running = Math.max(this.running ?? 0, this.pendingPrompt);
      } else this.settle(this.pendingPrompt, this.pendingCompletion);
      this.pendingPrompt = this.pendingCompletion = undefined;
    }
    this.json.reset();
  }

  private sse(buf: Buffer): void {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      switch (this.line) {
        case Line.Start: {
          const c = buf[i]!;
          if (c === NL) {
            // a blank line: the event ends; its data was one document
            this.endEvent();
            i++;
          } else if (c === 0x0d) i++;
          else {
            this.line = Line.Field;
            this.matched = 0;
          }
          break;
        }
        case Line.Field: {
          const c = buf[i]!;
          if (c === DATA[this.matched]) {
            i++;
            if (++this.matched === DATA.length) {
              this.line = Line.Data;
              this.afterColon = true;
            }
          } else this.line = Line.Skip;
          break;
        }
        case Line.Data: {
          if (this.afterColon) {
            this.afterColon = false;
            if (buf[i] === 0x20) i++;
            break;
          }
          const nl = buf.indexOf(NL, i);
          const end = nl < 0 ? n : nl;
          this.json.feed(buf, i, end);
          if (nl < 0) return;
          // a line break inside one event's data is whitespace to the JSON
          this.line = Line.Start;
          i = nl + 1;
          break;
        }
        case Line.Skip: {
          const nl = buf.indexOf(NL, i);
          if (nl < 0) return;
          this.line = Line.Start;
          i = nl + 1;
          break;
        }
      }
    }
  }
}
