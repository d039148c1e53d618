// What the fleet simulator records of a request, in the shape `switchyard bench` records a live one
// (src/workload/record.ts): an answered request with its engine's timings, or one the router refused
// (its 429, answered at once). Aggregated and disaggregated fleets record alike.
import type { RequestTimings } from "../engine/index.js";
import type { RequestRecord } from "../workload/record.js";
import { sentAfterPause } from "../workload/types.js";
import type { Flight } from "./engines.js";
import type { Turn } from "./load.js";

/** the record of a request its engine finished; TTFT and E2E run from the flight's start (its arrival) */
export function answeredRecord(f: Flight, t: RequestTimings): RequestRecord {
  const ok = t.outputTokens > 0;
  const record: RequestRecord = {
    index: f.turn.index,
    sessionId: f.turn.active.session.id,
    round: f.turn.active.round,
    start: f.start * 1000,
    ok,
    ttft: ok ? (t.firstTokenTime - f.start) * 1000 : NaN,
    itl: f.itl,
    e2el: (t.finishedTime - f.start) * 1000,
    promptTokens: t.promptTokens,
    outputTokens: t.outputTokens,
    usageReported: true,
    httpStatus: 200,
    errorKind: ok ? null : "no_output",
    error: "",
  };
  // as the live bench marks its records (resumed turns' TTFT)
  if (sentAfterPause(f.turn.active.session, f.turn.active.round)) record.resumed = true;
  return record;
}

/** the record of a request the router refused at `now` (s), arrived at `arrivedAt` (s), for `why` */
export function refusedRecord(turn: Turn, arrivedAt: number, now: number, why: string): RequestRecord {
  const start = arrivedAt * 1000;
  return {
    index: turn.index,
    sessionId: turn.active.session.id,
    round: turn.active.round,
    start,
    ok: false,
    ttft: NaN,
    itl: [],
    e2el: now * 1000 - start,
    promptTokens: turn.prompt.length,
    outputTokens: 0,
    usageReported: false,
    httpStatus: 429,
    errorKind: "http_4xx",
    error: why,
  };
}
