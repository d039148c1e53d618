// One ext_proc stream = one HTTP request through the gateway. The request phase is held until the body
// is complete (the prompt decides), then answered with the destination header and metadata; the
// response phase is passed through and measured. The engine's in-flight slot is held from the pick to
// the end of the response body or of the stream, so the router counts EPP-routed requests in flight
// exactly as it counts proxied ones. Tenancy goes through the router's own gate
// (src/tenancy/router-gate.ts) in HTTP ingress's order; what the answers hold is replies.ts's. Body
// modes and the tenancy rules: docs/router.md#endpoint-picker-gateway-api-inference-extension and
// docs/security.md#the-endpoint-picker---epp-port.
import { randomUUID } from "node:crypto";
import { HttpError } from "../http/errors.js";
import { logger } from "../obs/log.js";
import type { RequestView } from "../routing/index.js";
import type { TenantRequest } from "../tenancy/request.js";
import type { Tenant } from "../tenancy/state.js";
import { BodySendMode, type ProcessingRequest, type ProcessingResponse } from "./messages.js";
import { endpointOf, type EndpointPicker, type Picked } from "./picker.js";
import {
  destinationResponse,
  modeName,
  noBodyForTenant,
  refusalResponse,
  sendBodyChunks,
  streamed,
} from "./replies.js";
import {
  parseInference,
  readHead,
  readServed,
  readSubset,
  type RequestHead,
  type Subset,
} from "./request.js";
import type { InferenceRequest } from "./request.js";
import type { IssuedRequest, PathRule, RoutingHost, Slot, StoredResponse } from "./types.js";

const log = logger("epp");

/** gRPC status codes this file ends streams with. */
export const enum GrpcCode {
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Unimplemented = 12,
}

/** Where a stream's answers go (the gRPC call), so this file stays free of the transport. */
export interface StreamSink {
  send(resp: ProcessingResponse): void;
  /** ends the stream with OK */
  end(): void;
  /** ends the stream with a gRPC error */
  fail(code: GrpcCode, message: string): void;
}

export interface StreamCounters {
  /** the gateway reported an endpoint other than the primary pick (a fallback served it) */
  servedByFallback(): void;
}

const enum Stage {
  /** waiting for request headers */
  Start,
  /** buffering the request body */
  Body,
  /** deciding (possibly waiting for room) */
  Deciding,
  /** request phase answered; passing the response through */
  Response,
  Done,
}

export class ExtProcStream {
  private stage = Stage.Start;
  private requestMode: number = BodySendMode.FullDuplexStreamed;
  private responseMode: number = BodySendMode.FullDuplexStreamed;
  private head: RequestHead | undefined;
  private subset: Subset | undefined;
  private readonly chunks: Buffer[] = [];
  private bodySize = 0;
  private sawRequestTrailers = false;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  // what the response phase measures and the end of the request counts
  private model = "none";
  private engine = "none";
  private policy = "none";
  private slot: Slot | undefined;
  private view: RequestView | undefined;
  private counted = false;
  /** the request had a body to route by: it is counted, whatever its outcome (as the router counts) */
  private inference = false;
  private status = 0;
  private started = 0;
  private lastChunk = 0;
  /** the authenticated tenant (tenancy on), and its admission once its limits let it in */
  private tenant: Tenant | undefined;
  private admitted: TenantRequest | undefined;
  /** the response is SSE: the tenant's usage is one event of it */
  private sse = false;
  /** the endpoint table's word on the request's path (refusal, stored-response pin) */
  private rule: PathRule = {};
  /** the X-Request-Id the engine gets: the picker's own */
  private readonly upstreamId = randomUUID();
  /** a token-in request an abort of its tenant may name, while it runs */
  private issued: IssuedRequest | undefined;
  /** the body of a request routed by its path alone (a cancel that came with one), sent on as it came */
  private heldBody: Buffer | undefined;
  /** reads a Responses answer's id for the router's response affinity, until it has it */
  private watch: ((chunk: Buffer, engineId: string) => boolean) | undefined;

  constructor(
    private readonly host: RoutingHost,
    private readonly picker: EndpointPicker,
    private readonly sink: StreamSink,
    private readonly counters: StreamCounters,
  ) {}

  /** Handles one message; a promise only while a decision waits for room. */
  handle(msg: ProcessingRequest): Promise<void> | void {
    if (this.stage === Stage.Done) return;
    if (msg.protocolConfig) {
      this.requestMode = msg.protocolConfig.requestBodyMode;
      this.responseMode = msg.protocolConfig.responseBodyMode;
    }
    // the subset hint may ride on any request-phase message; the last one seen wins
    if (this.stage < Stage.Response) this.subset = readSubset(msg.metadata) ?? this.subset;
    switch (msg.phase) {
      case "requestHeaders":
        return this.onRequestHeaders(msg);
      case "requestBody":
        return this.onRequestBody(msg);
      case "requestTrailers":
        return this.onRequestTrailers();
      case "responseHeaders":
        return this.onResponseHeaders(msg);
      case "responseBody":
        return this.onResponseBody(msg);
      case "responseTrailers":
        this.sink.send({ kind: "responseTrailers" });
        return this.finish(this.status || 200);
      default:
        return this.protocolError(GrpcCode.InvalidArgument, "ProcessingRequest without a request phase");
    }
  }

  private onRequestHeaders(msg: ProcessingRequest): Promise<void> | void {
    if (this.stage !== Stage.Start)
      return this.protocolError(GrpcCode.FailedPrecondition, "request headers twice");
    const settings = this.host.settings();
    this.started = performance.now();
    this.head = readHead(msg.headers, settings.sessionHeader, this.host.upstreamHeaders);
    // decided once, here: a client the host does not let have the explanation gets the answer as if
    // it had not asked
    if (this.head.debug) this.head.debug = this.host.mayDebug(this.head.debugKey);
    this.timer = setTimeout(() => this.timedOut(), settings.streamTimeoutMs);
    this.timer.unref();
    if (this.requestMode === BodySendMode.Streamed || this.requestMode === BodySendMode.Grpc) {
      return this.protocolError(
        GrpcCode.Unimplemented,
        `request_body_mode ${modeName(this.requestMode)} cannot hold the headers until the body has decided the engine: use FULL_DUPLEX_STREAMED (the GIE contract) or BUFFERED`,
      );
    }
    // a path the router does not relay gets the router's own answer (a per-engine route: 404), before
    // any key is read and with no engine named, so no engine key goes with it
    this.rule = this.host.pathRule?.(this.head.method, this.pathOnly) ?? {};
    if (this.rule.refusal) return this.refuse(this.rule.refusal);
    const gate = this.host.gate;
    if (gate.enabled) {
      try {
        this.tenant = gate.authenticate({ headers: { authorization: this.head.authorization } });
      } catch (err) {
        // counted as the router counts a refused request, whatever its body would have been
        this.inference = true;
        return this.refuse(err);
      }
    }
    // body mode NONE (Envoy's default without processing_mode): the body would reach the engine
    // unseen, without the tenant's cache_salt, its owner checks, the usage event or the fields only
    // the router sets removed; a tenant's JSON-bodied request is refused rather than routed so
    if (this.tenant && this.requestMode === BodySendMode.None && this.rule.jsonBody) {
      this.inference = true;
      return this.refuse(noBodyForTenant());
    }
    if (msg.endOfStream || this.requestMode === BodySendMode.None) return this.bodyless();
    this.stage = Stage.Body;
    this.inference = true;
    // buffered modes wait for this answer before they send the body: continue, decide on the body
    if (this.bufferedRequest) this.sink.send({ kind: "requestHeaders" });
  }

  /** No body to route by (a GET, a cancel, or a gateway that sends none): the least busy engine. */
  private bodyless(): Promise<void> | void {
    this.stage = Stage.Deciding;
    if (!this.tenant) return this.answerAny();
    // a tenant's bodyless request counts against its limits too, as through the router
    return this.host.gate.admit(this.tenant, this.pathOnly, undefined, 0).then(
      (a) => (this.holdAdmission(a.request) ? this.answerAny() : undefined),
      (err: unknown) => this.refuse(err, true),
    );
  }

  private answerAny(): Promise<void> | void {
    let pinned: StoredResponse | undefined | Promise<StoredResponse | undefined>;
    try {
      // a stored response's id in the path: its engine, and only for the tenant that made it
      const id = this.rule.pathId;
      pinned = id !== undefined ? this.host.storedResponse?.(id, this.tenant?.name, false) : undefined;
    } catch (err) {
      return this.refuse(err);
    }
    if (!(pinned instanceof Promise)) return this.sendAny(pinned);
    return pinned.then(
      (p) => this.sendAny(p),
      (err: unknown) => this.refuse(err),
    );
  }

  private sendAny(pinned: StoredResponse | undefined): void {
    // the stream ended while the entry was awaited
    if (this.stage !== Stage.Deciding) return;
    this.stage = Stage.Response;
    let endpoint: string;
    try {
      endpoint = pinned ? endpointOf(pinned.engineId) : this.picker.pickAny(this.subset);
    } catch (err) {
      return this.refuse(err);
    }
    const body = this.heldBody;
    this.heldBody = undefined;
    if (body !== undefined && this.bufferedRequest) {
      this.sink.send(this.destination("requestBody", [endpoint]));
      if (this.sawRequestTrailers) this.sink.send({ kind: "requestTrailers" });
      return;
    }
    this.sink.send(this.destination("requestHeaders", [endpoint]));
    if (body !== undefined) this.sendBody(body);
  }

  /** Full duplex: the body goes back as streamed chunks after the headers response, then trailers. */
  private sendBody(body: Buffer): void {
    sendBodyChunks(this.sink, body, !this.sawRequestTrailers);
    if (this.sawRequestTrailers) this.sink.send({ kind: "requestTrailers" });
  }

  /** The path without its query: what the gate's per-path rules (usage in streams) match. */
  private get pathOnly(): string {
    const p = this.head?.path ?? "";
    const q = p.indexOf("?");
    return q < 0 ? p : p.slice(0, q);
  }

  /** Keeps an admission for the request's end; false (and released) when the stream ended meanwhile. */
  private holdAdmission(a: TenantRequest): boolean {
    if (this.stage !== Stage.Deciding) {
      a.finish(499);
      return false;
    }
    this.admitted = a;
    return true;
  }

  private get bufferedRequest(): boolean {
    return this.requestMode === BodySendMode.Buffered || this.requestMode === BodySendMode.BufferedPartial;
  }

  private onRequestBody(msg: ProcessingRequest): Promise<void> | void {
    if (this.stage !== Stage.Body)
      return this.protocolError(GrpcCode.FailedPrecondition, "request body out of order");
    const chunk = msg.body;
    if (chunk && chunk.length > 0) {
      const limit = this.host.settings().maxBodyBytes;
      this.bodySize += chunk.length;
      if (this.bodySize > limit)
        return this.refuse(new HttpError(413, `request body exceeds the limit of ${limit} bytes`));
      this.chunks.push(chunk);
    }
    if (msg.endOfStream || this.bufferedRequest) return this.decide();
  }

  private onRequestTrailers(): Promise<void> | void {
    this.sawRequestTrailers = true;
    if (this.stage === Stage.Body) {
      // full duplex: trailers end the body
      if (!this.bufferedRequest) return this.decide();
      this.sink.send({ kind: "requestTrailers" });
      return;
    }
    if (this.stage === Stage.Response) this.sink.send({ kind: "requestTrailers" });
  }

  private decide(): Promise<void> | void {
    // a stored response's GET or cancel names its response in the path: whatever body came, none
    // routes it (it goes on as it came)
    if (this.rule.pathId !== undefined) {
      this.heldBody = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bodySize);
      this.chunks.length = 0;
      return this.bodyless();
    }
    this.stage = Stage.Deciding;
    const head = this.head!;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bodySize);
    this.chunks.length = 0;
    let req: InferenceRequest;
    try {
      req = parseInference(head, body, this.host.settings(), () => this.host.soleModel());
      this.model = req.model;
    } catch (err) {
      return this.refuse(err);
    }
    if (!this.tenant) return this.scoped(req);
    // the tenant's limits before any engine slot is taken; its salt before the routing view
    const usageEvent = this.responseMode === BodySendMode.FullDuplexStreamed;
    return this.host.gate.admit(this.tenant, this.pathOnly, req.parsed, body.length, { usageEvent }).then(
      (a) => {
        if (!this.holdAdmission(a.request)) return;
        if (a.mutated && req.parsed) {
          req.body = Buffer.from(JSON.stringify(req.parsed));
          req.rewritten = true;
        }
        return this.scoped(req);
      },
      (err: unknown) => this.refuse(err, true),
    );
  }

  /**
   * An abort keeps only the ids of its tenant's own requests (as the engine knows them); one that
   * names none is answered here as the engine answers unknown ids (200, nothing aborted).
   */
  private scoped(req: InferenceRequest): Promise<void> | void {
    const ids = req.parsed?.request_ids;
    if (this.rule.abortIds !== "scoped" || ids === undefined || ids === null || !this.host.scopeAbort)
      return this.route(req);
    const own = this.host.scopeAbort(this.tenant?.name ?? "", ids, this.tenant === undefined);
    if (own.length === 0) {
      this.sink.send({
        kind: "immediate",
        status: 200,
        headers: [],
        body: Buffer.alloc(0),
        details: "switchyard_epp_abort_none",
      });
      this.finish(200);
      return this.sink.end();
    }
    req.parsed!.request_ids = own;
    req.body = Buffer.from(JSON.stringify(req.parsed));
    req.rewritten = true;
    return this.route(req);
  }

  private route(req: InferenceRequest): Promise<void> | void {
    let picked: Picked | Promise<Picked>;
    // a model the tenant may not use: the answer of a model that does not exist
    if (this.host.mayUse && !this.host.mayUse(this.tenant, req.requested, req.model))
      return this.refuse(new HttpError(404, `The model \`${req.requested}\` does not exist.`, "model"));
    try {
      this.view = this.picker.view(req.model, req.parsed, req.sessionKey, this.pathOnly);
      const prev = this.rule.previousResponse ? req.parsed?.previous_response_id : undefined;
      // a follow-up of a stored response: its engine (which holds the history), its tenant's alone
      const pinned =
        typeof prev === "string" ? this.host.storedResponse?.(prev, this.tenant?.name, true) : undefined;
      const view = this.view;
      const pick = (p: StoredResponse | undefined): Picked | Promise<Picked> =>
        p
          ? {
              kind: "picked",
              slot: p.slot!,
              endpoints: [endpointOf(p.engineId)],
              policy: this.host.policy().name,
            }
          : this.picker.pick(view, this.subset, this.abort.signal, this.tenant);
      picked = pinned instanceof Promise ? pinned.then(pick) : pick(pinned);
    } catch (err) {
      return this.refuse(err);
    }
    if (this.rule.remembers) this.watch = this.host.watchResponse?.(req.model, this.tenant?.name);
    const forward = req.body;
    const rewritten = req.rewritten;
    if (!(picked instanceof Promise)) return this.answer(picked, forward, rewritten);
    return picked.then(
      (p) => this.answer(p, forward, rewritten),
      (err: unknown) => this.refuse(err),
    );
  }

  /** The request phase's answer: where to send it, then (full duplex) the body to send. */
  private answer(p: Picked, body: Buffer, rewritten: boolean): void {
    if (this.stage !== Stage.Deciding) {
      // the stream ended while the request waited for room
      p.slot.release(false);
      return;
    }
    this.slot = p.slot;
    this.engine = p.slot.engineId;
    if (this.rule.abortIds === "issued" && this.host.issue)
      this.issued = this.host.issue(this.tenant?.name ?? "", this.upstreamId, this.head?.clientRequestId);
    this.policy = p.policy;
    this.host.metrics.inFlight++;
    this.stage = Stage.Response;
    const extra: Array<readonly [string, string]> = rewritten
      ? [["content-length", String(body.length)]]
      : [];
    if (this.bufferedRequest) {
      // the destination travels in the body response; Envoy applies header mutations there
      // an alias resolved: the engine must get the served name, so the buffered body is replaced
      this.sink.send(this.destination("requestBody", p.endpoints, extra, rewritten ? body : undefined));
      if (this.sawRequestTrailers) this.sink.send({ kind: "requestTrailers" });
      return;
    }
    this.sink.send(this.destination("requestHeaders", p.endpoints, extra));
    this.sendBody(body);
  }

  /** The header and the dynamic metadata naming the endpoints (replies.ts). */
  private destination(
    kind: "requestHeaders" | "requestBody",
    endpoints: readonly string[],
    extra: ReadonlyArray<readonly [string, string]> = [],
    replaceBody?: Buffer,
  ): ProcessingResponse {
    const ctx = {
      head: this.head,
      tenant: this.tenant !== undefined,
      upstreamId: this.upstreamId,
      host: this.host,
      engineAt: (endpoint: string) => this.picker.engineAt(endpoint),
    };
    return destinationResponse(kind, endpoints, ctx, extra, replaceBody);
  }

  private onResponseHeaders(msg: ProcessingRequest): void {
    if (this.stage !== Stage.Response)
      return this.protocolError(GrpcCode.FailedPrecondition, "response before the request was answered");
    for (const h of msg.headers) {
      if (h.key === ":status") this.status = Number(h.value) || 0;
      else if (h.key === "content-type") this.sse = h.value.toLowerCase().startsWith("text/event-stream");
    }
    const served = readServed(msg.metadata);
    if (served && this.slot && served !== endpointOf(this.slot.engineId)) this.moveSlot(served);
    const setHeaders: Array<readonly [string, string]> = [];
    if (this.head?.debug && this.view) {
      const note = this.host.explain(this.view) ?? `engine=${this.engine}; policy=${this.policy}`;
      setHeaders.push(["x-switchyard-route", note]);
    }
    this.sink.send({ kind: "responseHeaders", common: setHeaders.length ? { setHeaders } : undefined });
    if (msg.endOfStream) this.finish(this.status);
  }

  /** A fallback served the request: its slot moves there, so in-flight counts stay true. */
  private moveSlot(served: string): void {
    this.counters.servedByFallback();
    const id = this.picker.engineAt(served);
    if (!id) return;
    const next = this.host.claim(id);
    if (!next) return;
    // the picked engine did not serve it: its policy lets the pick go there
    this.slot!.release(false);
    this.slot = next;
    this.engine = id;
  }

  private onResponseBody(msg: ProcessingRequest): void {
    if (this.stage !== Stage.Response)
      return this.protocolError(GrpcCode.FailedPrecondition, "response body before the request was answered");
    let body = msg.body ?? Buffer.alloc(0);
    // a stored response's id, off the answer's first bytes, remembered with its engine and tenant
    if (this.watch && body.length > 0 && this.status === 200 && this.watch(body, this.engine))
      this.watch = undefined;
    if (body.length > 0 && this.model !== "none") {
      const now = performance.now();
      const series = this.host.metrics.forModel(this.model);
      if (this.lastChunk === 0) series.ttft.observe((now - this.started) / 1000);
      else series.itl.observe((now - this.lastChunk) / 1000);
      this.lastChunk = now;
    }
    // the tenant's usage settles its token limits; the usage event the gate asked for is dropped
    const t = this.admitted;
    if (t) {
      body = t.onBody(body, this.sse);
      if (msg.endOfStream) {
        const rest = t.flush();
        if (rest.length > 0) body = Buffer.concat([body, rest]);
      }
    }
    if (this.responseMode === BodySendMode.FullDuplexStreamed)
      this.sink.send(streamed("responseBody", body, msg.endOfStream));
    else this.sink.send({ kind: "responseBody" });
    if (msg.endOfStream) this.finish(this.status || 200);
  }

  /** What the contract answers with an ImmediateResponse: the status, and an OpenAI error body. */
  private refuse(err: unknown, byTenantLimits = false): void {
    if (this.stage === Stage.Done) return;
    const e = err instanceof HttpError ? err : undefined;
    if (!e) {
      if (this.abort.signal.aborted) return this.finish(499);
      log.error({ err }, "endpoint picker failure");
    }
    const status = e?.status ?? 500;
    // a tenant over its limits was counted by the gate, not by the admission queue
    if (status === 429 && !byTenantLimits) this.host.metrics.rejected.inc({ reason: "queue" });
    // refused before admission: counted for the tenant here, as ingress does (the gate counts its own)
    if (!this.admitted && !byTenantLimits) this.host.gate.refused(this.tenant, status);
    this.sink.send(refusalResponse(e, status));
    this.finish(status);
    this.sink.end();
  }

  private protocolError(code: GrpcCode, message: string): void {
    log.warn({ code, message }, "ext_proc protocol error");
    this.finish(this.status || 499);
    this.sink.fail(code, message);
  }

  private timedOut(): void {
    if (this.stage === Stage.Done) return;
    this.finish(504);
    this.sink.fail(GrpcCode.DeadlineExceeded, "the request exceeded the router's total timeout");
  }

  /** The gateway closed or cancelled the stream. */
  closed(): void {
    if (this.stage === Stage.Done) return;
    // no response seen: the client went away, or the upstream failed before answering
    this.finish(this.status || 499);
  }

  /** The request's end, whatever happened: slot back, timer off, counted once. */
  private finish(status: number): void {
    if (this.stage === Stage.Done) return;
    const wasDeciding = this.stage === Stage.Deciding;
    this.stage = Stage.Done;
    if (wasDeciding) this.abort.abort();
    clearTimeout(this.timer);
    // the tenant's concurrency slot back, its usage (or the estimate) recorded
    // without an engine picked nothing was generated (an answer without usage is charged none)
    this.admitted?.finish(status, this.slot !== undefined);
    if (this.issued) this.host.endIssued?.(this.issued);
    this.issued = undefined;
    this.admitted = undefined;
    if (this.slot) {
      this.slot.release(status >= 200 && status < 300);
      this.slot = undefined;
      this.host.metrics.inFlight--;
    }
    if (this.counted || !this.inference) return;
    this.counted = true;
    const m = this.host.metrics;
    m.countRequest(
      this.model,
      this.engine,
      status,
      this.policy === "none" ? this.host.policy().name : this.policy,
    );
    if (this.engine !== "none") m.forModel(this.model).e2e.observe((performance.now() - this.started) / 1000);
  }
}
