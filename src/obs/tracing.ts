// Minimal OpenTelemetry tracing: spans with attributes and events, W3C `traceparent` in and out,
// and an OTLP/HTTP JSON exporter with batching, a bounded queue (spans beyond it are dropped and
// counted) and a flush on shutdown. Written here rather than taken from @opentelemetry/* because
// no OpenTelemetry package is installed (and none may be added); the subset the router needs is
// small, and the wire format is the stable OTLP/JSON encoding (hex trace/span ids, int64 as
// strings, enum numbers). When no endpoint is configured no Tracer exists and callers skip all of
// this behind one `undefined` check: tracing off costs nothing per request.
import { randomBytes } from "node:crypto";
import { request } from "undici";
import { logger } from "./log.js";

const log = logger("obs.tracing");

export const SPAN_KIND = { internal: 1, server: 2, client: 3 } as const;
export const STATUS = { unset: 0, ok: 1, error: 2 } as const;

export type AttrValue = string | number | boolean;

export interface TracingOptions {
  /** OTLP/HTTP base URL (`http://collector:4318`, `/v1/traces` appended) or the full traces URL */
  endpoint: string;
  serviceName?: string;
  /** extra resource attributes */
  resource?: Record<string, AttrValue>;
  /** extra request headers for the collector (auth) */
  headers?: Record<string, string>;
  /** root spans sampled, 0..1; requests that carry a traceparent follow its sampled flag */
  sampleRatio?: number;
  /** finished spans kept while waiting for export; beyond it new spans are dropped (counted) */
  maxQueue?: number;
  /** spans per OTLP request */
  maxBatch?: number;
  /** export at least this often while spans wait (ms) */
  flushInterval?: number;
  /** one export request's timeout (ms) */
  exportTimeout?: number;
}

/** The tracing endpoint from flags/config or the standard OTEL_* variables; undefined = tracing off. */
export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (traces) return traces;
  return env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
}

/** A parsed W3C traceparent. */
export interface SpanContext {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

export function parseTraceparent(h: string | string[] | undefined): SpanContext | undefined {
  if (typeof h !== "string") return undefined;
  const m = TRACEPARENT.exec(h.trim().toLowerCase());
  if (!m || m[1] === "ff") return undefined;
  const [, , traceId, spanId, flags] = m;
  if (/^0+$/.test(traceId!) || /^0+$/.test(spanId!)) return undefined;
  return { traceId: traceId!, spanId: spanId!, sampled: (parseInt(flags!, 16) & 1) === 1 };
}

/** Wall-clock nanoseconds since the epoch as a decimal string, with sub-millisecond precision. */
function nowNanos(): string {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  return `${whole}${String(Math.round((ms - whole) * 1e6)).padStart(6, "0")}`;
}

function otlpValue(v: AttrValue): Record<string, unknown> {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

function otlpAttributes(a: Record<string, AttrValue>): { key: string; value: Record<string, unknown> }[] {
  const out = [];
  for (const key in a) out.push({ key, value: otlpValue(a[key]!) });
  return out;
}

export class Span {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  private readonly start = nowNanos();
  private endTime: string | undefined;
  private readonly attributes: Record<string, AttrValue> = {};
  private readonly events: { name: string; time: string; attributes: Record<string, AttrValue> }[] = [];
  private status: { code: number; message?: string } = { code: STATUS.unset };

  constructor(
    private readonly tracer: Tracer,
    public name: string,
    readonly kind: number,
    parent: SpanContext | undefined,
    readonly sampled: boolean,
  ) {
    this.traceId = parent?.traceId ?? randomBytes(16).toString("hex");
    this.spanId = randomBytes(8).toString("hex");
    this.parentSpanId = parent?.spanId;
  }

  setAttribute(key: string, value: AttrValue | undefined | null): this {
    if (value !== undefined && value !== null) this.attributes[key] = value;
    return this;
  }

  addEvent(name: string, attributes: Record<string, AttrValue> = {}): this {
    if (this.events.length < 128) this.events.push({ name, time: nowNanos(), attributes });
    return this;
  }

  setStatus(code: number, message?: string): this {
    this.status = message === undefined ? { code } : { code, message };
    return this;
  }

  /** `traceparent` naming this span as the parent, for the next hop */
  traceparent(): string {
    return `00-${this.traceId}-${this.spanId}-${this.sampled ? "01" : "00"}`;
  }

  /** A span under this one, in the same trace. */
  child(name: string, kind: number): Span {
    return this.tracer.startSpan(name, kind, this.context());
  }

  context(): SpanContext {
    return { traceId: this.traceId, spanId: this.spanId, sampled: this.sampled };
  }

  get ended(): boolean {
    return this.endTime !== undefined;
  }

  end(): void {
    if (this.endTime !== undefined) return;
    this.endTime = nowNanos();
    if (this.sampled) this.tracer.enqueue(this);
  }

  toOtlp(): Record<string, unknown> {
    const s: Record<string, unknown> = {
      traceId: this.traceId,
      spanId: this.spanId,
      name: this.name,
      kind: this.kind,
      startTimeUnixNano: this.start,
      endTimeUnixNano: this.endTime ?? nowNanos(),
      attributes: otlpAttributes(this.attributes),
      status: this.status,
    };
    if (this.parentSpanId) s.parentSpanId = this.parentSpanId;
    if (this.events.length > 0) {
      s.events = this.events.map((e) => ({
        timeUnixNano: e.time,
        name: e.name,
        attributes: otlpAttributes(e.attributes),
      }));
    }
    return s;
  }
}

export class Tracer {
  readonly url: string;
  private readonly opts: Required<Omit<TracingOptions, "resource" | "headers">> &
    Pick<TracingOptions, "resource" | "headers">;
  private queue: Span[] = [];
  private timer: NodeJS.Timeout | undefined;
  private exporting: Promise<void> | undefined;
  private closed = false;
  /** spans handed to the collector (2xx) */
  exported = 0;
  /** spans lost: the queue was full, or the collector refused or could not be reached */
  readonly dropped = { queue_full: 0, export_failed: 0 };

  constructor(opts: TracingOptions) {
    this.opts = {
      serviceName: "switchyard-router",
      sampleRatio: 1,
      maxQueue: 4096,
      maxBatch: 512,
      flushInterval: 1000,
      exportTimeout: 10_000,
      ...opts,
    };
    const base = opts.endpoint.replace(/\/+$/, "");
    this.url = base.endsWith("/v1/traces") ? base : `${base}/v1/traces`;
  }

  /** A span; continues `parent` (an incoming traceparent) when given, else starts a trace. */
  startSpan(name: string, kind: number, parent?: SpanContext): Span {
    const sampled = parent ? parent.sampled : Math.random() < this.opts.sampleRatio;
    return new Span(this, name, kind, parent, sampled);
  }

  enqueue(span: Span): void {
    if (this.closed || this.queue.length >= this.opts.maxQueue) {
      this.dropped.queue_full++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.opts.maxBatch) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.opts.flushInterval);
      this.timer.unref();
    }
  }

  /** Exports everything queued now, one batch at a time. */
  async flush(): Promise<void> {
    while (this.exporting) await this.exporting;
    if (this.queue.length === 0) return;
    this.exporting = this.exportAll().finally(() => (this.exporting = undefined));
    await this.exporting;
  }

  private async exportAll(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch);
      await this.send(batch);
    }
  }

  private body(batch: Span[]): string {
    return JSON.stringify({
      resourceSpans: [
        {
          resource: {
            attributes: otlpAttributes({ "service.name": this.opts.serviceName, ...this.opts.resource }),
          },
          scopeSpans: [{ scope: { name: "switchyard" }, spans: batch.map((s) => s.toOtlp()) }],
        },
      ],
    });
  }

  private async send(batch: Span[]): Promise<void> {
    try {
      const res = await request(this.url, {
        method: "POST",
        headers: { "content-type": "application/json", ...this.opts.headers },
        body: this.body(batch),
        headersTimeout: this.opts.exportTimeout,
        bodyTimeout: this.opts.exportTimeout,
      });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) this.exported += batch.length;
      else {
        this.dropped.export_failed += batch.length;
        log.warn({ status: res.statusCode, spans: batch.length }, "OTLP collector refused spans");
      }
    } catch (err) {
      this.dropped.export_failed += batch.length;
      log.warn({ err: (err as Error).message, spans: batch.length }, "OTLP export failed");
    }
  }

  /** Flushes what is queued and stops taking spans. */
  async shutdown(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.closed = true;
  }
}
