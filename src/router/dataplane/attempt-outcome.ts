// What one attempt on an engine ended as (attempt.ts), and how a failure is classed: which answers
// another engine may do better than, which transport errors mean the request never reached the
// engine, and which count against the engine's health; the error of a request out of time. The data
// plane's attempts loop acts on the outcome.
import { HttpError } from "../../http/errors.js";
import type { BreakReason, MigrateOutcome, MoveReason } from "../migration/rules.js";

/** answers another engine may do better than (overload, not the request) */
export const RETRIABLE_STATUS = new Set([502, 503, 504]);
/** errors before the request reached the engine: never the request's doing */
export const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
  "UND_ERR_CONNECT_TIMEOUT",
]);
/** transport errors that count against the engine's health (passive outlier detection) */
export const ENGINE_FAULTS = new Set([
  ...CONNECT_ERRORS,
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
]);

/**
 * The engine let go of the connection under the request before any byte of its answer, as a
 * connection it was closing when the request went out on it: a reset (its kernel resets a connection
 * when data comes after its server closed it, so the request was not read whole), or undici's
 * "other side closed" on a connection that had carried answers before (bytes read). Not a parse failure
 * ("bad response"), which is this answer's own bytes. uvicorn closing idle connections under a stream
 * of requests shows both.
 */
export function closedUnderRequest(err: Error): boolean {
  const e = err as { code?: string; socket?: { bytesRead?: unknown } };
  if (e.code === "ECONNRESET" || e.code === "EPIPE") return true;
  const read = e.socket?.bytesRead;
  return (
    e.code === "UND_ERR_SOCKET" && typeof read === "number" && read > 0 && !err.message.startsWith("bad ")
  );
}
/** the reason a request sent again on its engine is counted under (`switchyard_retries_total`) */
export const CLOSED_UNDER_REQUEST = "engine closed the connection under the request";

/**
 * Why a retriable attempt failed: `connect` (the request never reached the engine), `in-flight` (the
 * engine died, reset or fell silent past the first-byte timeout while holding it: possibly the
 * request's own doing) or `answer` (the engine answered 502/503/504: overload, not the request).
 */
export type FailureCause = "connect" | "in-flight" | "answer";

export interface RetryOutcome {
  kind: "retry";
  reason: string;
  status: number;
  cause: FailureCause;
  body: Buffer | undefined;
  /** the failing engine's response headers, flat [name, value, ...] */
  headers: string[];
}
/**
 * A stream that could not migrate broke off mid-answer; the attempt ended it with an error event
 * (unmovedNote says why it could not move) and the data plane counts it.
 */
export interface BrokeOffOutcome {
  kind: "broke-off";
  reason: BreakReason;
}
/** What one attempt ended as. */
export type Outcome =
  | { kind: "done" }
  | BrokeOffOutcome
  | { kind: "client-gone" }
  | { kind: "total-timeout" }
  /** router workers: the group refused the pick before the engine's answer went out (`takeBack`) */
  | { kind: "unclaimed" }
  | RetryOutcome
  | MigrateOutcome;
export const DONE: Outcome = { kind: "done" };
export const UNCLAIMED: Outcome = { kind: "unclaimed" };
export const CLIENT_GONE: Outcome = { kind: "client-gone" };
export const TOTAL_TIMEOUT: Outcome = { kind: "total-timeout" };

export function brokeOff(reason: BreakReason): BrokeOffOutcome {
  return { kind: "broke-off", reason };
}

/** The end of a broken stream's error event: why it could not move (`refusal`), if it was one that could not. */
export function unmovedNote(refusal: string | undefined): string {
  return refusal === undefined ? "" : `; the stream could not move to another engine: ${refusal}`;
}

export function migrate(reason: BreakReason, detail: string, cause: MigrateOutcome["cause"]): MigrateOutcome {
  return { kind: "migrate", reason, detail, cause };
}

export function retry(
  reason: string,
  status: number,
  cause: FailureCause,
  body?: Buffer,
  headers: string[] = [],
): RetryOutcome {
  return { kind: "retry", reason, status, cause, body, headers };
}

/** The router took an attempt off its engine before it relayed anything: it goes elsewhere. */
export function movedOff(why: MoveReason): RetryOutcome {
  return retry(
    `moved off the engine (${why === "drain" ? "engine draining" : "engine ejected"})`,
    503,
    "connect",
  );
}

/** The error a request gets when its total timeout passed. */
export function totalTimeoutError(): HttpError {
  return new HttpError(504, "request exceeded the router's total timeout");
}
