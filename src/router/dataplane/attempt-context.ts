// What an attempt (attempt.ts) reads and updates of its request, what it works with, a Responses
// answer's id remembered with its engine, and the write of a non-streamed answer its migration ledger
// assembled (the attempt's end, or a migration's: migration-flow.ts).
import type { Readable } from "node:stream";
import type { ServerResponse } from "node:http";
import type { RequestView } from "../../routing/index.js";
import type { ModelSeries } from "../telemetry/metrics.js";
import type { MigrationLedger } from "../migration/ledger.js";
import type { RequestTrace } from "../telemetry/request-trace.js";
import type { RoutedRequest } from "../request/routed-request.js";
import type { ResponseAffinity, ResponseIdScan } from "./response-affinity.js";
import type { DeadlineQueue } from "./deadlines.js";
import type { EngineRecord } from "../engines/engine-record.js";

/** What an attempt reads and updates of its request (request-context.ts's RequestContext). */
export interface AttemptContext {
  readonly pr: RoutedRequest;
  /** what the routing policy saw of the request (its calibration hears how the first token came out) */
  readonly view: RequestView;
  readonly res: ServerResponse;
  /** the router's id for the request, the X-Request-Id its engines get */
  readonly requestId: string;
  /** the X-Request-Id the client sees: its own when it sent one (the engine gets the router's) */
  readonly echoId: string;
  readonly started: number;
  readonly series: ModelSeries;
  readonly trace: RequestTrace | undefined;
  /** bytes from an engine (not our keep-alives) have reached the client: no more failover */
  relayed: boolean;
  readonly clientGone: boolean;
  readonly totalTimedOut: boolean;
  status: number;
  /** ms from arrival to the first relayed byte */
  ttftMs: number;
  /** the last relayed chunk as the engine sent it, where vLLM puts `usage` */
  lastChunk: Buffer | undefined;
  /** the attempt in progress, which client disconnects and the total timeout cut */
  current: { cancel(): void } | undefined;
  /** router workers: the claim the pick of this attempt awaits the group's word on; 0 when none */
  readonly claim: number;
  /** the bytes sent to engines: the client's (token ids asked for when it may migrate), or a continuation */
  readonly upstreamBody: Buffer | Readable;
  /** present when the stream may migrate: what was delivered so far (relayed through it) */
  readonly ledger: MigrationLedger | undefined;
  /** a completion or chat stream that may not migrate: why (its break is explained with it) */
  readonly migrationRefusal: string | undefined;
  /** performance.now() of the last chunk relayed to the client, across attempts (ITL) */
  lastRelayAt: number;
  /** a Responses answer whose id is still to be read off the bytes relayed (response affinity) */
  responseScan: ResponseIdScan | undefined;
}

/**
 * What an attempt works with. It reports how it ended as its outcome (attempt-outcome.ts), which the
 * attempts loop reads; the one thing it tells as it happens is its first output, which routing must
 * count at that moment (a request waiting for room may be bound at once).
 */
export interface AttemptServices {
  readonly deadlines: DeadlineQueue;
  /** the engines' health hears of each answer and failure (the registry) */
  readonly engines: EngineReports;
  /** stored responses' engines: a Responses answer's id is remembered with the engine that made it */
  readonly affinity: ResponseAffinity | undefined;
  /**
   * the attempt's first output reached the client (or, for a JSON answer assembled by the router, its
   * ledger): routing counts the engine's request answered; on an attempt that continues a migrated
   * stream, the move is done
   */
  answered(ctx: AttemptContext, e: EngineRecord, now: number): void;
  /** the request went to its engine again: the connection it went out on was closing */
  sentAgain(ctx: AttemptContext, e: EngineRecord): void;
}

/** What the engines' health hears of an attempt (the registry's reports). */
export interface EngineReports {
  reportFailure(e: EngineRecord, what: string): void;
  reportSuccess(e: EngineRecord): void;
  /** the engine refused the request as vLLM does while it drains on shutdown: out of rotation */
  reportShutdown(e: EngineRecord): void;
}

/** The first bytes of a Responses answer: its id, once read, is remembered with the engine `e`. */
export function rememberResponseId(
  ctx: AttemptContext,
  s: AttemptServices,
  e: EngineRecord,
  chunk: Buffer,
): void {
  const id = ctx.responseScan?.feed(chunk);
  if (id === undefined) return;
  ctx.responseScan = undefined;
  const pr = ctx.pr;
  if (id !== null) s.affinity?.remember(id, e.url, pr.model, pr.sessionKey, pr.tenant?.tenant);
}

/** A non-streamed answer assembled by its ledger goes to the client whole, with its usage counted. */
export function sendAnswer(ctx: AttemptContext): void {
  const res = ctx.res;
  if (res.headersSent || res.destroyed) return;
  let body = Buffer.from(ctx.ledger!.answer());
  ctx.relayed = true;
  ctx.status = 200;
  ctx.ttftMs = performance.now() - ctx.started;
  ctx.series.ttft.observe(ctx.ttftMs / 1000);
  ctx.trace?.firstByte(ctx.ttftMs / 1000);
  ctx.trace?.onBody(body, false);
  ctx.lastChunk = body;
  if (ctx.pr.tenant) body = Buffer.concat([ctx.pr.tenant.onBody(body, false), ctx.pr.tenant.flush()]);
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": body.length,
    "x-request-id": ctx.echoId,
  });
  res.end(body);
}
