// The service-level objective a plan is checked against: p90 bounds on TTFT, TPOT and (optionally)
// E2E latency, each kept `headroom` below its bound. A run meets the SLO when every simulated p90 is at
// or below bound × (1 − headroom), measured as `vllm bench serve` measures them. A run can be ended as
// soon as its p90 is certain to miss: once more than 10% of the requests it will send have missed.
import type { FleetReport } from "../fleet/report.js";
import type { ResolvedScenario } from "../fleet/scenario.js";
import { tpotOf, type RequestRecord } from "../workload/record.js";

export interface Slo {
  ttft_p90_ms: number;
  tpot_p90_ms: number;
  e2e_p90_ms?: number;
  headroom: number;
}

/** the bounds a run must keep: the SLO's less its headroom, ms */
export interface SloTargets {
  ttft: number;
  tpot: number;
  e2e: number | null;
}

export function sloOf(r: ResolvedScenario): Slo | null {
  return r.scenario.slo ?? null;
}

export function targetsOf(slo: Slo): SloTargets {
  const k = 1 - slo.headroom;
  return {
    ttft: slo.ttft_p90_ms * k,
    tpot: slo.tpot_p90_ms * k,
    e2e: slo.e2e_p90_ms !== undefined ? slo.e2e_p90_ms * k : null,
  };
}

/** what a run predicts, in the plan's words */
export interface Predicted {
  ttft_p50_ms: number;
  ttft_p90_ms: number;
  ttft_p99_ms: number;
  tpot_p50_ms: number;
  tpot_p90_ms: number;
  e2e_p50_ms: number;
  e2e_p90_ms: number;
  throughput_tok_s: number;
  request_throughput: number;
  requests: number;
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

export function predictedOf(rep: FleetReport): Predicted {
  const b = rep.bench;
  return {
    ttft_p50_ms: num(b.median_ttft_ms),
    ttft_p90_ms: num(b.p90_ttft_ms),
    ttft_p99_ms: num(b.p99_ttft_ms),
    tpot_p50_ms: num(b.median_tpot_ms),
    tpot_p90_ms: num(b.p90_tpot_ms),
    e2e_p50_ms: num(b.median_e2el_ms),
    e2e_p90_ms: num(b.p90_e2el_ms),
    throughput_tok_s: num(b.total_token_throughput),
    request_throughput: num(b.request_throughput),
    requests: rep.requests,
  };
}

export interface SloCheck {
  met: boolean;
  /** predicted p90 / target, per bound (> 1 misses) */
  ratios: { ttft: number; tpot: number; e2e: number | null };
  /** the bounds missed, in words with the numbers, e.g. "TTFT p90 4.10 s > 2.70 s" */
  misses: string[];
}

export const secs = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`);

/** a run stopped early has missed by construction; otherwise every p90 must be within its target */
export function checkSlo(p: Predicted, t: SloTargets, stoppedEarly: boolean): SloCheck {
  const ratios = {
    ttft: p.ttft_p90_ms / t.ttft,
    tpot: p.tpot_p90_ms / t.tpot,
    e2e: t.e2e === null ? null : p.e2e_p90_ms / t.e2e,
  };
  const misses: string[] = [];
  if (ratios.ttft > 1) misses.push(`TTFT p90 ${secs(p.ttft_p90_ms)} > ${secs(t.ttft)}`);
  if (ratios.tpot > 1) misses.push(`TPOT p90 ${secs(p.tpot_p90_ms)} > ${secs(t.tpot)}`);
  if (ratios.e2e !== null && ratios.e2e > 1) misses.push(`E2E p90 ${secs(p.e2e_p90_ms)} > ${secs(t.e2e!)}`);
  if (stoppedEarly && misses.length === 0) misses.push("over 10% of requests missed a bound");
  return { met: misses.length === 0 && !stoppedEarly, ratios, misses };
}

/**
 * Misses a p90 is certain of: with `samples` values in the end, the interpolated p90 lies at or above
 * the value of rank floor(0.9 (samples − 1)), so once `samples − that rank` values exceed the target,
 * so does the p90 (numpy's and vllm bench's linear percentile).
 */
export function certainMisses(samples: number): number {
  return samples - Math.floor(0.9 * (samples - 1));
}

/**
 * An early-stop predicate for a run of `samples` requests: true once any bound's p90 is certain to
 * miss. Stateful (counts as records arrive): one per run.
 */
export function missCounter(t: SloTargets, samples: number): (rec: RequestRecord) => boolean {
  const need = certainMisses(samples);
  let ttft = 0;
  let tpot = 0;
  let e2e = 0;
  return (rec) => {
    if (!rec.ok) return false;
    if (rec.ttft > t.ttft) ttft++;
    const tp = tpotOf(rec);
    if (tp !== null && tp > t.tpot) tpot++;
    if (t.e2e !== null && rec.e2el > t.e2e) e2e++;
    return ttft >= need || tpot >= need || e2e >= need;
  };
}

/**
 * The 95% interval of the sample rank a p90 is read at, as percentiles: with n samples the p90 is the
 * value below which 90% ± 1.96 √(0.09 / n) of the distribution lies (normal approximation).
 */
export function p90Interval(n: number): [number, number] {
  const h = 1.96 * Math.sqrt(0.09 / Math.max(1, n));
  return [Math.max(0, 0.9 - h) * 100, Math.min(1, 0.9 + h) * 100];
}
