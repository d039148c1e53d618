// Steady-state figures of a multi-round run, shared by the live benchmark (bench/routing/compare.ts)
// and its virtual-time twin (bench/routing/virtual.ts). Round 0 of every user is a cold prefill under
// every policy (nobody holds the user's history yet), so it says nothing about routing: the figures
// below leave it out. Throughput is taken over the window where every user is warm and still active:
// from the last round-0 completion to the first time some user finished its last round (after that
// fewer sessions are active and the closed loop drains).
import { recordsFromResult } from "../../src/bench/report.js";
import { percentileSorted } from "../../src/workload/stats.js";

export interface TurnSample {
  session: string;
  /** 0-based round within the session */
  round: number;
  /** ms, one clock for the run */
  start: number;
  /** ms from start; NaN when the request failed */
  ttft: number;
  /** ms from start to the end */
  e2el: number;
  ok: boolean;
  outputTokens: number;
}

export interface SteadyStats {
  /** requests of rounds ≥ 1 */
  requests: number;
  ttftP50: number;
  ttftP99: number;
  /** output tokens/s over the warm window */
  outputTps: number;
  /** completed requests/s over the warm window */
  reqPs: number;
  /** seconds of the warm window (0: no such window, the figures are NaN) */
  windowS: number;
}

export function steadyStats(samples: readonly TurnSample[]): SteadyStats {
  const ttfts: number[] = [];
  let warmAt = 0;
  const lastEndOf = new Map<string, number>();
  const maxRound = new Map<string, number>();
  for (const s of samples) maxRound.set(s.session, Math.max(maxRound.get(s.session) ?? 0, s.round));
  for (const s of samples) {
    const end = s.start + s.e2el;
    if (s.round === 0) warmAt = Math.max(warmAt, end);
    else if (s.ok && Number.isFinite(s.ttft)) ttfts.push(s.ttft);
    if (s.round === maxRound.get(s.session)) lastEndOf.set(s.session, end);
  }
  let drainAt = Infinity;
  for (const t of lastEndOf.values()) drainAt = Math.min(drainAt, t);
  ttfts.sort((a, b) => a - b);
  let tokens = 0;
  let done = 0;
  for (const s of samples) {
    const end = s.start + s.e2el;
    if (!s.ok || end <= warmAt || end > drainAt) continue;
    // a request that straddles the window start counts its share of tokens
    const from = Math.max(s.start + (Number.isFinite(s.ttft) ? s.ttft : 0), warmAt);
    const span = end - (s.start + (Number.isFinite(s.ttft) ? s.ttft : 0));
    tokens += span > 0 ? (s.outputTokens * (end - from)) / span : s.outputTokens;
    done++;
  }
  const windowS = drainAt > warmAt && Number.isFinite(drainAt) ? (drainAt - warmAt) / 1000 : 0;
  return {
    requests: ttfts.length,
    ttftP50: percentileSorted(ttfts, 50),
    ttftP99: percentileSorted(ttfts, 99),
    outputTps: windowS > 0 ? tokens / windowS : NaN,
    reqPs: windowS > 0 ? done / windowS : NaN,
    windowS,
  };
}

/** rounds from a bench result file: a session's requests in start order are its rounds */
export function samplesFromBenchJson(j: Record<string, unknown>): TurnSample[] {
  const records = recordsFromResult(j).sort((a, b) => a.start - b.start);
  const roundOf = new Map<string, number>();
  return records.map((r) => {
    const round = roundOf.get(r.sessionId) ?? 0;
    roundOf.set(r.sessionId, round + 1);
    return {
      session: r.sessionId,
      round,
      start: r.start,
      ttft: r.ok ? r.ttft : NaN,
      e2el: r.e2el,
      ok: r.ok,
      outputTokens: r.outputTokens,
    };
  });
}
