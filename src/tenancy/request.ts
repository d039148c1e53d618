// One admitted request's tenancy bookkeeping, as the router's data plane sees it: it watches the
// relayed response for the engine's `usage` (settling the token buckets), strips the usage chunk
// the router asked for on the client's behalf, and releases the concurrency slot exactly once.
//
// Usage is found without parsing the response: in JSON the raw bytes `"usage":{` cannot occur inside
// a string value (a string's quotes are escaped), so the last occurrence in the body's tail is the
// object's own `usage`. A stream carries it in one event (`"choices":[],"usage":{...}`) when
// `stream_options.include_usage` is set; events are assembled only while that is needed.
import type { Admission, TenancyState } from "./state.js";

const USAGE_KEY = Buffer.from('"usage":{');
const EVENT_END = Buffer.from("\n\n");
const DATA_PREFIX = Buffer.from("data: ");
/** bytes of a non-streamed body kept to find `usage` (vLLM writes it after the choices) */
const JSON_TAIL_BYTES = 8 * 1024;
/** an SSE event longer than this is relayed as is and never inspected (usage events are tiny) */
const MAX_EVENT_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);
const NO_CHOICES = Buffer.from('"choices":[]');

/** Where the router reports per-tenant numbers (metrics); tenant names only. */
export interface TenantSink {
  finished(tenant: string, status: number): void;
  tokens(tenant: string, kind: "prompt" | "completion", n: number): void;
}

export interface TenantRequestOptions {
  /** the prompt tokens reserved at admission (used when no usage arrives) */
  promptEstimate: number;
  /** the response may be SSE with a usage event */
  stream: boolean;
  /** the router added `stream_options.include_usage`: drop the usage event before the client sees it */
  stripUsageEvent: boolean;
}

export class TenantRequest {
  private usage: { prompt: number; completion: number } | undefined;
  /** SSE: bytes of an event not complete yet */
  private partial: Buffer = EMPTY;
  /** SSE: data events relayed, the completion estimate when no usage arrives (client gone) */
  private events = 0;
  /** JSON: the body's last bytes */
  private tail: Buffer = EMPTY;
  private finishedOnce = false;

  constructor(
    private readonly state: TenancyState,
    readonly admission: Admission,
    private readonly sink: TenantSink,
    private readonly opts: TenantRequestOptions,
  ) {}

  get tenant(): string {
    return this.admission.tenant.name;
  }

  /** Every relayed body chunk passes here; returns what to send on (the chunk itself unless stripped). */
  onBody(chunk: Buffer, isSse: boolean): Buffer {
    if (isSse) return this.onSse(chunk);
    this.tail = this.tail.length === 0 ? chunk : keepTail(this.tail, chunk);
    return chunk;
  }

  /** Bytes held back at the end of a stream (an unterminated last event): relay them. */
  flush(): Buffer {
    const rest = this.partial;
    this.partial = EMPTY;
    // without stripping nothing was held back: the partial was a scanning copy, already relayed
    return this.opts.stripUsageEvent ? rest : EMPTY;
  }

  /** The request ended in any way: record usage (or the estimate) and free the slot. Idempotent. */
  finish(status: number): void {
    if (this.finishedOnce) return;
    this.finishedOnce = true;
    if (!this.usage && this.tail.length > 0) this.usage = findUsage(this.tail);
    const a = this.admission;
    const name = a.tenant.name;
    const u = this.usage ?? { prompt: this.opts.promptEstimate, completion: this.events };
    this.state.record(a, { promptTokens: u.prompt, completionTokens: u.completion });
    this.state.release(a);
    if (u.prompt > 0) this.sink.tokens(name, "prompt", u.prompt);
    if (u.completion > 0) this.sink.tokens(name, "completion", u.completion);
    this.sink.finished(name, status);
    this.tail = EMPTY;
    this.partial = EMPTY;
  }

  private onSse(chunk: Buffer): Buffer {
    let buf = this.partial.length === 0 ? chunk : Buffer.concat([this.partial, chunk]);
    let out: Buffer[] | undefined;
    let start = 0;
    let from = 0;
    for (;;) {
      const end = buf.indexOf(EVENT_END, from);
      if (end < 0) break;
      const next = end + 2;
      if (startsWith(buf, from, DATA_PREFIX)) this.events++;
      const k = buf.indexOf(USAGE_KEY, from);
      if (k >= 0 && k < end) {
        const u = findUsage(buf.subarray(from, end));
        if (u) {
          this.usage = u;
          // only the final usage event (no choices) is ours to drop; never an event with content
          if (this.opts.stripUsageEvent && indexWithin(buf, NO_CHOICES, from, end)) {
            this.events--;
            out ??= [];
            if (from > start) out.push(buf.subarray(start, from));
            start = next;
          }
        }
      }
      from = next;
    }
    const rest = buf.length - from;
    if (!this.opts.stripUsageEvent) {
      // nothing to strip: relay the chunk as it came, keeping an incomplete event only to scan it whole
      this.partial = rest > 0 && rest <= MAX_EVENT_BYTES ? Buffer.from(buf.subarray(from)) : EMPTY;
      return chunk;
    }
    // keep an incomplete event back: it may be the usage event we must strip
    if (rest > 0 && rest <= MAX_EVENT_BYTES) {
      this.partial = Buffer.from(buf.subarray(from));
      buf = buf.subarray(0, from);
    } else this.partial = EMPTY;
    if (!out) return start === 0 ? buf : buf.subarray(start);
    if (start < buf.length) out.push(buf.subarray(start));
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }
}

function indexWithin(buf: Buffer, needle: Buffer, from: number, end: number): boolean {
  const i = buf.indexOf(needle, from);
  return i >= 0 && i < end;
}

function startsWith(buf: Buffer, at: number, prefix: Buffer): boolean {
  if (buf.length - at < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[at + i] !== prefix[i]) return false;
  return true;
}

function keepTail(tail: Buffer, chunk: Buffer): Buffer {
  if (chunk.length >= JSON_TAIL_BYTES) return chunk.subarray(chunk.length - JSON_TAIL_BYTES);
  const keep = Math.min(tail.length, JSON_TAIL_BYTES - chunk.length);
  return Buffer.concat([tail.subarray(tail.length - keep), chunk]);
}

/** Reads prompt/completion tokens from the last `"usage":{...}` in the bytes, if any. */
export function findUsage(bytes: Buffer): { prompt: number; completion: number } | undefined {
  const k = bytes.lastIndexOf(USAGE_KEY);
  if (k < 0) return undefined;
  // usage is flat but for optional *_details objects, which come after the counts
  const obj = bytes.toString("latin1", k + USAGE_KEY.length, Math.min(bytes.length, k + 512));
  const p = /"prompt_tokens":\s*(\d+)/.exec(obj);
  const c = /"completion_tokens":\s*(\d+)/.exec(obj);
  if (!p && !c) return undefined;
  return { prompt: p ? Number(p[1]) : 0, completion: c ? Number(c[1]) : 0 };
}
