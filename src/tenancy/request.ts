// One admitted request's tenancy bookkeeping, as the router's data plane sees it: it watches the
// relayed response for the engine's usage (settling the token buckets), strips the usage chunk
// the router asked for on the client's behalf, and releases the concurrency slot exactly once.
//
// Usage is read by a scanner that sees every relayed byte once (usage-scan.ts): OpenAI, Anthropic
// Messages and Responses usage, in a body (wherever it sits in it) or a stream's events. An answer
// without usage (a client gone mid-stream, a stream cut short, an engine that gives none) is
// charged the request's declared maximum: a count the client can suppress must never cost less. A
// stream's running counts (`continuous_usage_stats`) settle nothing: each is one choice's so far, and
// the engine goes on generating after the client is gone until the abort reaches it.
// The usage event the router added to a stream (`stream_options.include_usage`) is dropped again
// before the client sees it; events are assembled only while that is needed.
import type { Admission, TenancyState } from "./state.js";
import { UsageScan } from "./usage-scan.js";

const USAGE_KEY = Buffer.from('"usage":{');
const EVENT_END = Buffer.from("\n\n");
/** an SSE event longer than this is relayed as is and never held back (usage events are tiny) */
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
  /**
   * the completion tokens charged when the answer reports none (its declared maximum; 0 for a
   * route that generates nothing)
   */
  maxCompletion?: number;
  /** the answer's usage is the request's own (false: a stored response read again, already charged) */
  readUsage?: boolean;
  /** the response may be SSE with a usage event */
  stream: boolean;
  /** the router added `stream_options.include_usage`: drop the usage event before the client sees it */
  stripUsageEvent: boolean;
  /** charges one LoRA adapter load to the tenant (its 429 thrown beyond its budget) */
  chargeLoad?: () => void;
}

export class TenantRequest {
  /** the usage found in the relayed bytes (undefined when the answer's usage is not the request's) */
  private readonly scan: UsageScan | undefined;
  /** SSE with the router's usage event to strip: bytes of an event not complete yet */
  private partial: Buffer = EMPTY;
  private finishedOnce = false;

  constructor(
    private readonly state: TenancyState,
    readonly admission: Admission,
    private readonly sink: TenantSink,
    private readonly opts: TenantRequestOptions,
  ) {
    this.scan = opts.readUsage === false ? undefined : new UsageScan();
  }

  get tenant(): string {
    return this.admission.tenant.name;
  }

  /** the tenant's weight: its share of an engine's LoRA adapter slots beside other tenants */
  get weight(): number {
    return this.admission.tenant.weight;
  }

  /** another tenant's weight (1 when it is not configured any more) */
  weightOf(tenant: string): number {
    return this.state.tenant(tenant)?.weight ?? 1;
  }

  /** Charges one LoRA adapter load this request causes to its tenant; throws the tenant's 429. */
  chargeAdapterLoad(): void {
    this.opts.chargeLoad?.();
  }

  /** Every relayed body chunk passes here; returns what to send on (the chunk itself unless stripped). */
  onBody(chunk: Buffer, isSse: boolean): Buffer {
    this.scan?.feed(chunk, isSse);
    if (isSse && this.opts.stripUsageEvent) return this.strip(chunk);
    return chunk;
  }

  /** Bytes held back at the end of a stream (an unterminated last event): relay them. */
  flush(): Buffer {
    const rest = this.partial;
    this.partial = EMPTY;
    return rest;
  }

  /**
   * The request ended in any way: record usage (or what stands for it) and free the slot. Idempotent.
   * `reachedEngine`: an engine was sent the request (false: it ended in the router, nothing generated).
   * Without usage, an answer (2xx), a client gone (499) or a timeout (504) is charged the declared
   * maximum: the engine may have generated up to it. Another refusal generated nothing.
   */
  finish(status: number, reachedEngine = true): void {
    if (this.finishedOnce) return;
    this.finishedOnce = true;
    const a = this.admission;
    const name = a.tenant.name;
    const u = this.scan?.usage;
    // a stream's running counts are one prompt's each (a list of prompts): never below the estimate
    const prompt = u?.prompt ?? Math.max(this.opts.promptEstimate, this.scan?.runningPrompt ?? 0);
    const generated = reachedEngine && ((status >= 200 && status < 300) || status === 499 || status === 504);
    const completion = u?.completion ?? (generated ? (this.opts.maxCompletion ?? 0) : 0);
    this.state.record(a, { promptTokens: prompt, completionTokens: completion });
    this.state.release(a);
    if (prompt > 0) this.sink.tokens(name, "prompt", prompt);
    if (completion > 0) this.sink.tokens(name, "completion", completion);
    this.sink.finished(name, status);
    this.partial = EMPTY;
  }

  /** Drops the final usage event (no choices) the router asked for; never an event with content. */
  private strip(chunk: Buffer): Buffer {
    let buf = this.partial.length === 0 ? chunk : Buffer.concat([this.partial, chunk]);
    let out: Buffer[] | undefined;
    let start = 0;
    let from = 0;
    // the next usage key: searched once per buffer, not once per event
    let k = buf.indexOf(USAGE_KEY);
    for (;;) {
      const end = buf.indexOf(EVENT_END, from);
      if (end < 0) break;
      const next = end + 2;
      if (k >= 0 && k < from) k = buf.indexOf(USAGE_KEY, from);
      if (k >= 0 && k < end && indexWithin(buf, NO_CHOICES, from, end)) {
        out ??= [];
        if (from > start) out.push(buf.subarray(start, from));
        start = next;
      }
      from = next;
    }
    // keep an incomplete event back: it may be the usage event to strip
    const rest = buf.length - from;
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

/**
 * Reads prompt/completion tokens from the last `"usage":{...}` in the bytes, if any (either
 * vocabulary): a quick look at one chunk for the access log, not what tokens are charged by.
 */
export function findUsage(bytes: Buffer): { prompt: number; completion: number } | undefined {
  const k = bytes.lastIndexOf(USAGE_KEY);
  if (k < 0) return undefined;
  // usage is flat but for optional *_details objects, which come after the counts
  const obj = bytes.toString("latin1", k + USAGE_KEY.length, Math.min(bytes.length, k + 512));
  const p = /"(?:prompt|input)_tokens":\s*(\d+)/.exec(obj);
  const c = /"(?:completion|output)_tokens":\s*(\d+)/.exec(obj);
  if (!p && !c) return undefined;
  return { prompt: p ? Number(p[1]) : 0, completion: c ? Number(c[1]) : 0 };
}
