// Everything the data plane (attempt-loop.ts) tracks about one client request while it is served: what
// routing sees of it, its attempts, deadlines, migration and trace, and its id. Made once per request;
// the attempts (attempt.ts), migration (migration-flow.ts) and the access log read it through their
// own narrow interfaces.
import type { Strike } from "./poison.js";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { randomFillSync } from "node:crypto";
import type { RequestView } from "../../routing/index.js";
import type { Tracer } from "../../obs/tracing.js";
import type { Attempt } from "./attempt.js";
import { OwnedDeadline, type DeadlineOwner } from "./deadlines.js";
import type { RouterMetrics, ModelSeries } from "../telemetry/metrics.js";
import type { MigrationLedger } from "../migration/ledger.js";
import type { BreakReason, MigrationPlan } from "../migration/rules.js";
import type { MigratingRequest } from "./migration-flow.js";
import type { ClaimingRequest } from "./slot-claims.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { RequestTrace } from "../telemetry/request-trace.js";
import type { RoutedRequest } from "../request/routed-request.js";
import { endpointOf, routingInput, type Endpoint } from "../request/endpoints.js";
import { ResponseIdScan } from "./response-affinity.js";
import type { Issued } from "./issued-ids.js";

const NO_EXCLUDE: ReadonlySet<string> = new Set();

/**
 * A client's X-Request-Id we echo and log must be a safe header value (no response splitting, no odd
 * bytes), and short.
 */
const SAFE_REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

// process-wide: ids, serials and the tie-break counter are unique across every router in a process,
// so two routers' logs, failure marks and engines' request ids never mix (and an id draws from one pool)
// (idAt past the pool's end: the first id fills the pool)
const counters = { seq: 0, serials: 0, idHex: "", idAt: Number.POSITIVE_INFINITY };

/**
 * Request ids the router makes up when the client sent none, UUID-shaped (vLLM builds its response
 * ids from X-Request-Id): version 4, 122 random bits from the CSPRNG. A counter behind a random
 * prefix was cheaper but told every client the fleet's volume (the difference between two of its
 * own ids); random ids tell nothing. The randomness is drawn 4 KiB at a time (256 ids) and turned
 * into hex once per refill, so an id costs a few string slices, not a call into crypto.
 */
const ID_POOL_BYTES = 4096;
const idPool = Buffer.allocUnsafe(ID_POOL_BYTES);
const VARIANT = "89ab";
export function newRequestId(): string {
  if (counters.idAt >= ID_POOL_BYTES * 2) {
    randomFillSync(idPool);
    counters.idHex = idPool.toString("hex");
    counters.idAt = 0;
  }
  const h = counters.idHex;
  const i = counters.idAt;
  counters.idAt += 32;
  return (
    h.slice(i, i + 8) +
    "-" +
    h.slice(i + 8, i + 12) +
    "-4" +
    h.slice(i + 13, i + 16) +
    "-" +
    VARIANT[parseInt(h[i + 16]!, 16) & 3]! +
    h.slice(i + 17, i + 20) +
    "-" +
    h.slice(i + 20, i + 32)
  );
}

// counters.serials: request serial numbers (FailureMarks owners); 0 is a probe's

const enum CtxDeadline {
  Total,
  KeepAlive,
}

/** Everything the data plane tracks about one client request while it is served. */
export class RequestContext implements MigratingRequest, DeadlineOwner<CtxDeadline>, ClaimingRequest {
  readonly started = performance.now();
  /** what routing reads; a continuation gets a new one (per-request routing memos live on it) */
  view: RequestView;
  /** the engine a registry adapter's request is counted on (AdapterLoader's books), until its slot is freed */
  loraEngine: string | undefined = undefined;
  /**
   * the id the engines get (X-Request-Id), always the router's own: vLLM names the request by it (and
   * `/inference/v1/abort_requests` aborts by it), so a client's chosen id could match another's
   */
  readonly requestId = newRequestId();
  /** the id the client sees (response header) and the access log keeps: its own X-Request-Id, if safe */
  readonly echoId: string;
  relayed = false;
  clientGone = false;
  totalTimedOut = false;
  engineUrl = "none";
  status = 0;
  /** attempts made (retries = attempts − 1) */
  attempts = 0;
  /** engines that failed while holding the request for it alone (poison.ts: the strikes that stand) */
  inFlightFailures = 0;
  /** numbers this request's failures on an engine's FailureMarks */
  readonly serial = ++counters.serials;
  /** each engine failure while it held the request, judged by poison.ts; none on most requests */
  strikes: Strike[] | undefined = undefined;
  /** the strikes standing reached retry.poisonAfter: not retried or moved again */
  poisoned = false;
  /** every failed attempt was a connection that never carried the request */
  onlyConnectFailures = true;
  /** routed while no engine of the model was in rotation */
  panicked = false;
  /** ms from arrival to the first relayed byte; -1 until then (the access log) */
  ttftMs = -1;
  /**
   * ms it waited in the router's admission queue for room (late binding holding it, every engine at
   * its cap, an SLO to wait for); 0 when bound at once (the access log)
   */
  queuedMs = 0;
  /** the last relayed body chunk, where vLLM puts `usage` (the access log reads it at the end) */
  lastChunk: Buffer | undefined = undefined;
  lastRelayAt = 0;
  current: Attempt | undefined;
  /** a router worker's claim its current pick awaits the group's word on (slot-claims.ts); 0 when none */
  claim = 0;
  /** the engine its next attempt goes to, picked when the group refused the last one's pick */
  repicked: EngineRecord | Promise<EngineRecord> | undefined;
  /** the engine counting this request's attempt as unstreamed (EnginePicks.countUnstreamed); none once answered */
  unstreamedOn: EngineRecord | undefined = undefined;
  upstreamBody: Buffer | Readable;
  /** a stream that may migrate: its plan and ledger; undefined for every other request */
  migration: MigrationPlan | undefined;
  ledger: MigrationLedger | undefined;
  /** why a generation stream may not migrate (for the error event and the metric) */
  migrationRefusal: string | undefined;
  /** between a stream's break and its continuation's first byte: why it broke, and when */
  migrating: BreakReason | undefined;
  migrationDetail = "";
  migratingSince = 0;
  /** only for waiting in the admission queue (rare), so created on demand */
  private queueAbort: AbortController | undefined;
  readonly total = new OwnedDeadline(this, CtxDeadline.Total);
  readonly keepAlive = new OwnedDeadline(this, CtxDeadline.KeepAlive);
  readonly series: ModelSeries;
  /** spans of this request; undefined with tracing off */
  readonly trace: RequestTrace | undefined;
  /** what the router knows of the request's path (undefined: a path no table row describes) */
  readonly endpoint: Endpoint | undefined;
  /** a token-in request's names for `/inference/v1/abort_requests`, while it runs */
  issued: Issued | undefined;
  /** a Responses answer whose id is still to be read off the bytes relayed (response affinity) */
  responseScan: ResponseIdScan | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly pr: RoutedRequest,
    private readonly loop: { sendKeepAlive(ctx: RequestContext): void },
    metrics: RouterMetrics,
    tracer: Tracer | undefined,
  ) {
    const rid = req.headers["x-request-id"];
    this.echoId = typeof rid === "string" && SAFE_REQUEST_ID.test(rid) ? rid : this.requestId;
    const tokens = pr.promptTokens;
    const ep = pr.endpoint ?? endpointOf(pr.path);
    this.endpoint = ep;
    // chat messages, a prompt or token ids, wherever the endpoint keeps them (Messages and Responses
    // bodies as the chat messages vLLM renders them as)
    const input = tokens ? undefined : routingInput(ep, pr.parsed);
    this.view = {
      model: pr.model,
      seq: counters.seq++ & 0x3fffffff,
      sessionKey: pr.sessionKey,
      // ids computed off the loop by the ingress: routing hashes them instead of tokenising again
      prompt: tokens ?? input?.prompt,
      messages: input?.messages,
      // what the engine tokenizes the rendered template with, where the endpoint decides it
      body: input?.addSpecialTokens ? { ...pr.parsed, add_special_tokens: true } : pr.parsed,
      exclude: NO_EXCLUDE,
      sloTtftMs: pr.sloTtftMs,
      headroom: pr.headroom,
    };
    this.series = pr.generation ? metrics.forModel(pr.model) : metrics.unlistedSeries;
    this.trace = tracer
      ? new RequestTrace(tracer, req, pr.path, ep?.trace, pr.model, pr.stream, pr.parsed)
      : undefined;
    this.upstreamBody = pr.body;
  }

  /** Its answer carries a response id to remember with the engine that made it. */
  watchResponseId(): void {
    this.responseScan = new ResponseIdScan();
  }

  /** The number of times this request moved to another engine mid-stream (the access log). */
  get migrations(): number {
    return this.ledger?.migrations ?? 0;
  }

  onDeadline(kind: CtxDeadline): void {
    if (kind === CtxDeadline.KeepAlive) return this.loop.sendKeepAlive(this);
    this.totalTimedOut = true;
    this.cancel();
  }

  /** its client went away or its total time ran out (hashing ahead stops for it) */
  get cancelled(): boolean {
    return this.clientGone || this.totalTimedOut;
  }

  cancel(): void {
    this.current?.cancel();
    this.queueAbort?.abort();
  }

  queueSignal(): AbortSignal {
    this.queueAbort ??= new AbortController();
    if (this.clientGone || this.totalTimedOut) this.queueAbort.abort();
    return this.queueAbort.signal;
  }

  exclude(url: string): void {
    if (this.view.exclude === NO_EXCLUDE) this.view.exclude = new Set([url]);
    else (this.view.exclude as Set<string>).add(url);
  }
}
