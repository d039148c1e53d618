// One client request as OpenTelemetry spans with the GenAI semantic conventions (the attribute names
// from @opentelemetry/semantic-conventions): a SERVER span for the request (continuing the client's
// traceparent) and a CLIENT span per engine attempt, whose traceparent goes upstream. Token usage is
// read from what passes by — the JSON body's `usage`, or the stream's final usage chunk when the client
// asked for one — never by changing the request. Only built when a Tracer exists, so none of this runs
// with tracing off.
import type { IncomingMessage } from "node:http";
import type { AttributeValue, Attributes } from "@opentelemetry/api";
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_PATH,
} from "@opentelemetry/semantic-conventions";
import {
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MAX_TOKENS,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_REQUEST_SEED,
  ATTR_GEN_AI_REQUEST_STREAM,
  ATTR_GEN_AI_REQUEST_TEMPERATURE,
  ATTR_GEN_AI_REQUEST_TOP_P,
  ATTR_GEN_AI_RESPONSE_FINISH_REASONS,
  ATTR_GEN_AI_RESPONSE_ID,
  ATTR_GEN_AI_RESPONSE_MODEL,
  ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
  ATTR_GEN_AI_SYSTEM,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
} from "@opentelemetry/semantic-conventions/incubating";
import {
  SPAN_KIND,
  STATUS,
  parseTraceparent,
  traceparentOf,
  type Span,
  type Tracer,
} from "../../obs/tracing.js";

/** the GenAI provider the spans name: vLLM's OpenAI-compatible server behind the router */
const PROVIDER = "vllm";
/** the first token's time, as the GenAI conventions' server metric of that name */
const TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token";

/** Response bytes kept to find `usage` in a non-streamed body; larger bodies go unread. */
const MAX_JSON_BODY = 4 * 2 ** 20;
/** An SSE event longer than this is skipped for usage. */
const MAX_SSE_CARRY = 2 ** 20;
/**
 * The longest string attribute a span carries: what a client or an engine wrote (a path, an
 * X-Request-Id of up to the header limit, a response id, a model name) is cut to this, so one request
 * cannot make every span it touches kilobytes long in the exporter's queue and the collector.
 */
export const MAX_ATTRIBUTE_CHARS = 256;
/** A client's X-Request-Id in the span: as long as the access log keeps one. */
const MAX_REQUEST_ID_CHARS = 200;

/** A string attribute cut to `max` characters; other values as they are. */
function cap<T extends string | number | boolean | undefined>(v: T, max = MAX_ATTRIBUTE_CHARS): T {
  return (typeof v === "string" && v.length > max ? v.slice(0, max) : v) as T;
}

/** the attributes that have a value (the SDK refuses undefined ones, with a warning) */
function defined(a: Record<string, AttributeValue | undefined>): Attributes {
  const out: Attributes = {};
  for (const k in a) if (a[k] !== undefined) out[k] = a[k];
  return out;
}

/** what the data plane does with an attempt's span: name it as the engine's parent */
export interface AttemptSpan {
  traceparent(): string;
}

interface Usage {
  input?: number;
  output?: number;
  model?: string;
  id?: string;
  finish?: string;
}

function readUsage(doc: unknown, into: Usage): void {
  if (!doc || typeof doc !== "object") return;
  let d = doc as Record<string, unknown>;
  // Responses API stream: the usage sits on the `response.completed` event's response
  if (d.response && typeof d.response === "object") d = d.response as Record<string, unknown>;
  if (typeof d.model === "string") into.model = d.model;
  if (typeof d.id === "string") into.id = d.id;
  const u = d.usage as Record<string, unknown> | null | undefined;
  if (u && typeof u === "object") {
    const input = u.prompt_tokens ?? u.input_tokens;
    const output = u.completion_tokens ?? u.output_tokens;
    if (typeof input === "number") into.input = input;
    if (typeof output === "number") into.output = output;
  }
  const choices = d.choices;
  if (Array.isArray(choices)) {
    for (const c of choices) {
      const f = (c as { finish_reason?: unknown } | null)?.finish_reason;
      if (typeof f === "string") into.finish = f;
    }
  }
}

export class RequestTrace {
  readonly span: Span;
  private readonly tracer: Tracer;
  private attemptSpan: Span | undefined;
  private readonly usage: Usage = {};
  private json: Buffer[] | undefined = [];
  private jsonSize = 0;
  private sse = "";
  private sawSse = false;
  private readonly method: string;

  constructor(
    tracer: Tracer,
    req: IncomingMessage,
    private readonly path: string,
    /** gen_ai.operation.name: the endpoint table's (../request/endpoints.ts) */
    operation: string | undefined,
    model: string,
    stream: boolean,
    parsed: Record<string, unknown> | undefined,
  ) {
    const route = path.split("?", 1)[0]!;
    this.method = req.method ?? "POST";
    const op = operation ?? route.replace(/^\/(v\d\/)?/, "");
    const s = tracer.startSpan(
      cap(`${op} ${model}`),
      SPAN_KIND.server,
      parseTraceparent(req.headers.traceparent, req.headers.tracestate),
    );
    const num = (k: string) =>
      parsed !== undefined && typeof parsed[k] === "number" ? (parsed[k] as number) : undefined;
    const id = req.headers["x-request-id"];
    s.setAttributes(
      defined({
        [ATTR_GEN_AI_OPERATION_NAME]: cap(op),
        [ATTR_GEN_AI_PROVIDER_NAME]: PROVIDER,
        // the name before gen_ai.provider.name, which backends still read
        [ATTR_GEN_AI_SYSTEM]: PROVIDER,
        [ATTR_GEN_AI_REQUEST_MODEL]: cap(model),
        [ATTR_GEN_AI_REQUEST_STREAM]: stream,
        [ATTR_HTTP_REQUEST_METHOD]: cap(req.method ?? "POST"),
        [ATTR_URL_PATH]: cap(route),
        "switchyard.stream": stream,
        [ATTR_GEN_AI_REQUEST_MAX_TOKENS]: num("max_tokens") ?? num("max_completion_tokens"),
        [ATTR_GEN_AI_REQUEST_TEMPERATURE]: num("temperature"),
        [ATTR_GEN_AI_REQUEST_TOP_P]: num("top_p"),
        [ATTR_GEN_AI_REQUEST_SEED]: num("seed"),
        "switchyard.request_id": typeof id === "string" ? cap(id, MAX_REQUEST_ID_CHARS) : undefined,
      }),
    );
    this.tracer = tracer;
    this.span = s;
  }

  /** A CLIENT span for one engine attempt; its traceparent is what the engine receives. */
  attempt(engineUrl: string, n: number): AttemptSpan {
    this.attemptSpan?.end();
    const u = new URL(engineUrl);
    const a = this.tracer.startSpan(
      cap(`${this.method} ${this.path.split("?", 1)[0]}`),
      SPAN_KIND.client,
      this.span,
    );
    a.setAttributes({
      [ATTR_SERVER_ADDRESS]: u.hostname,
      [ATTR_SERVER_PORT]: Number(u.port) || 80,
      "switchyard.engine": engineUrl,
      "switchyard.attempt": n,
    });
    this.attemptSpan = a;
    return { traceparent: () => traceparentOf(a) };
  }

  /** The engine attempt ended (answer relayed, or failed over with `error`). */
  attemptEnded(status: number, error?: string): void {
    const a = this.attemptSpan;
    if (!a) return;
    if (status) a.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    if (error)
      a.setAttribute(ATTR_ERROR_TYPE, cap(error)).setStatus({ code: STATUS.error, message: cap(error) });
    a.end();
    this.attemptSpan = undefined;
  }

  /** A stream moved to another engine (`engine`), `seconds` after its previous engine broke off. */
  migrated(engine: string, reason: string, seconds: number): void {
    this.span.addEvent("switchyard.migration", {
      "switchyard.migration.reason": cap(reason),
      "switchyard.migration.engine": engine,
      "switchyard.migration.seconds": seconds,
    });
  }

  firstByte(ttftSeconds: number): void {
    this.span.setAttribute(TIME_TO_FIRST_TOKEN, ttftSeconds);
    this.span.setAttribute(ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttftSeconds);
    this.span.addEvent("gen_ai.first_token", { [TIME_TO_FIRST_TOKEN]: ttftSeconds });
  }

  /** Response bytes as relayed: keeps what is needed to read `usage` at the end. */
  onBody(chunk: Buffer, isSse: boolean): void {
    if (isSse) {
      this.sawSse = true;
      this.sse += chunk.toString("utf8");
      let cut: number;
      while ((cut = this.sse.indexOf("\n\n")) >= 0) {
        const event = this.sse.slice(0, cut);
        this.sse = this.sse.slice(cut + 2);
        if (event.includes('"usage"') || event.includes('"model"')) this.readEvent(event);
      }
      if (this.sse.length > MAX_SSE_CARRY) this.sse = "";
      return;
    }
    if (!this.json) return;
    this.jsonSize += chunk.length;
    if (this.jsonSize > MAX_JSON_BODY) this.json = undefined;
    else this.json.push(chunk);
  }

  private readEvent(event: string): void {
    for (const line of event.split("\n")) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]" || !data.startsWith("{")) continue;
      try {
        readUsage(JSON.parse(data), this.usage);
      } catch {
        // not JSON: nothing to read
      }
    }
  }

  end(status: number, engineUrl: string): void {
    this.attemptEnded(status);
    if (!this.sawSse && this.json && this.json.length > 0) {
      try {
        readUsage(JSON.parse(Buffer.concat(this.json, this.jsonSize).toString("utf8")), this.usage);
      } catch {
        // not JSON (or cut): no usage
      }
    }
    const s = this.span;
    const u = this.usage;
    s.setAttributes(
      defined({
        [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: u.input,
        [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: u.output,
        [ATTR_GEN_AI_RESPONSE_MODEL]: cap(u.model),
        [ATTR_GEN_AI_RESPONSE_ID]: cap(u.id),
        [ATTR_GEN_AI_RESPONSE_FINISH_REASONS]: u.finish === undefined ? undefined : [cap(u.finish)],
        [ATTR_HTTP_RESPONSE_STATUS_CODE]: status,
        "switchyard.engine": engineUrl !== "none" ? engineUrl : undefined,
      }),
    );
    if (status >= 500) s.setStatus({ code: STATUS.error, message: `HTTP ${status}` });
    else if (status === 499) s.setAttribute(ATTR_ERROR_TYPE, "client_closed");
    s.end();
  }
}
