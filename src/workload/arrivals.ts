// Open-loop arrival schedules as pure functions: gaps between request starts for a rate in
// requests/s. Poisson gaps are exponential; constant gaps are 1/qps. An infinite rate sends at once.
import { makeRng } from "../random/rng.js";

export type ArrivalKind = "poisson" | "constant";

/** Endless iterator of gaps in seconds before each request (the first gap is 0). */
export function* arrivalGaps(qps: number, kind: ArrivalKind, seed: number): Generator<number> {
  yield 0;
  if (!Number.isFinite(qps)) {
    for (;;) yield 0;
  }
  const rng = makeRng(seed, `arrivals-${kind}`);
  const mean = 1 / qps;
  for (;;) yield kind === "poisson" ? rng.exp(mean) : mean;
}

/** The first `n` send times in seconds from the start. */
export function arrivalTimes(n: number, qps: number, kind: ArrivalKind, seed: number): number[] {
  const out: number[] = [];
  let t = 0;
  for (const gap of arrivalGaps(qps, kind, seed)) {
    if (out.length >= n) break;
    t += gap;
    out.push(t);
  }
  return out;
}

/** A given schedule's gaps (a replayed trace's), then Infinity: nothing more is due. */
export function* scheduledGaps(gaps: readonly number[]): Generator<number> {
  yield* gaps;
  for (;;) yield Infinity;
}
