// OpenTelemetry tracing on the SDK: spans from @opentelemetry/sdk-trace-base, batched to a collector by
// the OTLP/HTTP exporter, sampled parent-first, W3C `traceparent` read and written by the SDK's
// propagator. This module adds only what the router reports about its exporter: spans exported, and
// spans dropped because the queue was full or the collector failed. With no endpoint configured no
// Tracer exists and callers skip all of it behind one `undefined` check: tracing off costs nothing.
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  defaultTextMapGetter,
  defaultTextMapSetter,
  isSpanContextValid,
  trace,
  type Span,
  type SpanContext,
  type Tracer as ApiTracer,
} from "@opentelemetry/api";
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SamplingResult,
  type ReadableSpan,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import { logger } from "./log.js";

export type { Span, SpanContext } from "@opentelemetry/api";

const log = logger("obs.tracing");

export const SPAN_KIND = {
  internal: SpanKind.INTERNAL,
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
} as const;
export const STATUS = {
  unset: SpanStatusCode.UNSET,
  ok: SpanStatusCode.OK,
  error: SpanStatusCode.ERROR,
} as const;

export type AttrValue = string | number | boolean;

export interface TracingOptions {
  /** OTLP/HTTP base URL (`http://collector:4318`, `/v1/traces` appended) or the full traces URL */
  endpoint: string;
  serviceName?: string;
  /** extra resource attributes */
  resource?: Record<string, AttrValue>;
  /** extra request headers for the collector (auth) */
  headers?: Record<string, string>;
  /**
   * spans sampled, 0..1: root spans, and (unless trustClientSampling) requests whose traceparent
   * comes from a client, whose sampled flag is then ignored
   */
  sampleRatio?: number;
  /** a client's traceparent decides by its sampled flag (a trusted caller: a gateway, the operator's own services) */
  trustClientSampling?: boolean;
  /** finished spans kept while waiting for export; beyond it new spans are dropped (counted) */
  maxQueue?: number;
  /** spans per OTLP request */
  maxBatch?: number;
  /** export at least this often while spans wait (ms) */
  flushInterval?: number;
  /** one export request's timeout (ms) */
  exportTimeout?: number;
  /** the longest string attribute a span keeps (the SDK cuts longer ones) */
  maxAttributeChars?: number;
}

/** The tracing endpoint from flags/config or the standard OTEL_* variables; undefined = tracing off. */
export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (traces) return traces;
  return env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
}

const propagator = new W3CTraceContextPropagator();

/** A W3C traceparent (and its tracestate) as the SDK's propagator reads it; undefined when invalid. */
export function parseTraceparent(
  h: string | string[] | undefined,
  tracestate?: string | string[],
): SpanContext | undefined {
  if (typeof h !== "string") return undefined;
  const carrier: Record<string, string | string[]> = { traceparent: h };
  if (tracestate !== undefined) carrier.tracestate = tracestate;
  const sc = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter));
  return sc && isSpanContextValid(sc) ? sc : undefined;
}

/** whether a parsed traceparent asks for its trace to be recorded */
export function isSampled(sc: SpanContext): boolean {
  return (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
}

/** The `traceparent` that names `span` as the parent, for the next hop. */
export function traceparentOf(span: Span): string {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
  return carrier.traceparent!;
}

/**
 * The exporter between the batch processor and OTLP/HTTP, counting what the collector took and what
 * it refused; `settled` hands back how many of the queued spans a finished export took out.
 */
class CountingExporter implements SpanExporter {
  exported = 0;
  failed = 0;
  constructor(
    private readonly inner: SpanExporter,
    private readonly settled: (n: number) => void,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      this.settled(spans.length);
      if (result.code === ExportResultCode.SUCCESS) this.exported += spans.length;
      else {
        this.failed += spans.length;
        log.warn({ err: result.error?.message, spans: spans.length }, "OTLP export failed");
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * The router's own coin for a span whose parent came from a client: sampled at `ratio`, at random. Not
 * by trace id, as the root sampler is: a client picks its trace id, and could pick one that always
 * falls under the ratio.
 */
class CoinSampler implements Sampler {
  constructor(
    private readonly ratio: number,
    private readonly random: () => number = Math.random,
  ) {}

  shouldSample(): SamplingResult {
    return {
      decision:
        this.ratio > 0 && this.random() < this.ratio
          ? SamplingDecision.RECORD_AND_SAMPLED
          : SamplingDecision.NOT_RECORD,
    };
  }

  toString(): string {
    return `CoinSampler{${this.ratio}}`;
  }
}

/**
 * Parent-first sampling: our own spans follow their parent; root spans sample by trace id at `ratio`;
 * a client's traceparent follows its sampled flag only where the client is trusted, else the router's
 * coin at `ratio` decides (a client's flag would spend the operator's trace budget, and the
 * collector's, at the client's choice).
 */
export function samplerFor(ratio: number, trustClientSampling: boolean): Sampler {
  const coin = new CoinSampler(ratio);
  return new ParentBasedSampler({
    root: new TraceIdRatioBasedSampler(ratio),
    remoteParentSampled: trustClientSampling ? new AlwaysOnSampler() : coin,
    remoteParentNotSampled: trustClientSampling ? new AlwaysOffSampler() : coin,
  });
}

/**
 * The batch processor behind a count of the spans it holds: a span past `maxQueue` (or after shutdown)
 * is dropped here, where it is counted, rather than inside the SDK, where it would only be logged.
 */
class BoundedProcessor implements SpanProcessor {
  queued = 0;
  dropped = 0;
  private closed = false;
  constructor(
    private readonly inner: SpanProcessor,
    private readonly maxQueue: number,
  ) {}

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (!(span.spanContext().traceFlags & TraceFlags.SAMPLED)) return;
    if (this.closed || this.queued >= this.maxQueue) {
      this.dropped++;
      return;
    }
    this.queued++;
    this.inner.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  async shutdown(): Promise<void> {
    this.closed = true;
    await this.inner.shutdown();
  }
}

export class Tracer {
  readonly url: string;
  private readonly provider: BasicTracerProvider;
  private readonly tracer: ApiTracer;
  private readonly exporter: CountingExporter;
  private readonly processor: BoundedProcessor;

  constructor(opts: TracingOptions) {
    const base = opts.endpoint.replace(/\/+$/, "");
    this.url = base.endsWith("/v1/traces") ? base : `${base}/v1/traces`;
    const maxQueue = opts.maxQueue ?? 4096;
    this.exporter = new CountingExporter(
      new OTLPTraceExporter({
        url: this.url,
        headers: opts.headers,
        timeoutMillis: opts.exportTimeout ?? 10_000,
      }),
      (n) => (this.processor.queued -= n),
    );
    this.processor = new BoundedProcessor(
      new BatchSpanProcessor(this.exporter, {
        maxQueueSize: maxQueue,
        maxExportBatchSize: Math.min(opts.maxBatch ?? 512, maxQueue),
        scheduledDelayMillis: opts.flushInterval ?? 1000,
        exportTimeoutMillis: opts.exportTimeout ?? 10_000,
      }),
      maxQueue,
    );
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: opts.serviceName ?? "switchyard-router",
        ...opts.resource,
      }),
      sampler: samplerFor(opts.sampleRatio ?? 1, opts.trustClientSampling ?? false),
      spanLimits: { attributeValueLengthLimit: opts.maxAttributeChars ?? 256, eventCountLimit: 128 },
      spanProcessors: [this.processor],
    });
    this.tracer = this.provider.getTracer("switchyard");
  }

  /** spans the collector accepted */
  get exported(): number {
    return this.exporter.exported;
  }

  /** spans lost: the queue was full (or tracing had shut down), or the collector refused or was away */
  get dropped(): { queue_full: number; export_failed: number } {
    return { queue_full: this.processor.dropped, export_failed: this.exporter.failed };
  }

  /**
   * A span; under `parent` when given (a span of ours, whose sampled flag it follows, or a client's
   * traceparent: see samplerFor), else the root of a new trace.
   */
  startSpan(name: string, kind: SpanKind, parent?: Span | SpanContext): Span {
    const ctx =
      parent === undefined
        ? ROOT_CONTEXT
        : "spanContext" in parent
          ? trace.setSpan(ROOT_CONTEXT, parent)
          : trace.setSpanContext(ROOT_CONTEXT, parent);
    return this.tracer.startSpan(name, { kind }, ctx);
  }

  /** Exports everything queued now. */
  flush(): Promise<void> {
    return this.provider.forceFlush();
  }

  /** Flushes what is queued and stops taking spans. */
  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
