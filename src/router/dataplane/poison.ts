// Whether a request that engines failed while holding is a poison request (retry.poisonAfter): the
// engines failed *for it*, not under everyone. Each failure while an engine held the request is a
// strike; a strike is set aside when the engine's other requests or its health probes failed too,
// from shortly before the request reached it to a grace period after it failed (FailureMarks): that
// engine broke under everyone (a crash, a hang, a reset), and the request only happened to be on it.
// A request is poison when at least `poisonAfter` strikes stand.
//
// The grace period is one probe interval and timeout: a kill or a reset fails the engine's other
// requests within milliseconds, a hang within its probes' timeout. The wait is only taken when the
// strikes would reach the threshold, so it costs nothing on a healthy fleet.
//
// What this cannot tell apart: a request that crashes its whole engine (every other request on it
// fails too) looks like an engine crash, so such a request is retried within retry.maxAttempts and
// migration.maxPerRequest rather than stopped after poisonAfter engines.
import type { FailureMarks } from "../engines/failure-marks.js";

export interface Strike {
  readonly marks: FailureMarks;
  /** performance.now() when the attempt on the engine began */
  readonly from: number;
  /** performance.now() when it failed */
  readonly at: number;
}

/** Strikes kept per request: a request has at most maxAttempts + migration.maxPerRequest attempts. */
const MAX_STRIKES = 32;

/** Records a strike; returns the number recorded. */
export function addStrike(strikes: Strike[], s: Strike): number {
  if (strikes.length >= MAX_STRIKES) strikes.shift();
  strikes.push(s);
  return strikes.length;
}

/**
 * The strikes that stand (their engine failed for nobody else), judged at `now`: the window of each is
 * [from − lookback, at + grace], so evidence that arrives after `now` is not seen.
 */
export function standingStrikes(
  strikes: readonly Strike[],
  owner: number,
  lookbackMs: number,
  graceMs: number,
): number {
  let n = 0;
  for (const s of strikes) if (!s.marks.othersFailed(owner, s.from - lookbackMs, s.at + graceMs)) n++;
  return n;
}

/** What a strike reads and records of a request (request-context.ts's RequestContext). */
export interface StruckRequest {
  strikes: Strike[] | undefined;
  /** the request's serial number (its FailureMarks owner) */
  readonly serial: number;
  /** the strikes that stand, as last judged */
  inFlightFailures: number;
}

/**
 * An engine failed while holding the request: true when the strikes that stand reach `poisonAfter`.
 * Only then does it wait the grace period for the engine's other requests and probes to show whether
 * it broke under everyone. `from`: when the attempt on the engine began.
 */
export async function strike(
  req: StruckRequest,
  marks: FailureMarks,
  from: number,
  poisonAfter: number,
  health: { interval: number; timeout: number },
): Promise<boolean> {
  if (poisonAfter <= 0) return false;
  const strikes = (req.strikes ??= []);
  const at = performance.now();
  addStrike(strikes, { marks, from, at });
  const lookback = health.interval;
  const grace = health.interval + health.timeout;
  req.inFlightFailures = standingStrikes(strikes, req.serial, lookback, grace);
  if (req.inFlightFailures < poisonAfter) return false;
  await new Promise((r) => setTimeout(r, grace));
  req.inFlightFailures = standingStrikes(strikes, req.serial, lookback, grace);
  return req.inFlightFailures >= poisonAfter;
}
