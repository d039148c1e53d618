// The decider at one fleet: the scenario simulated under each KV offload option with the router the
// rules pick, the refusals and the selection applied to those runs, and the KV-size sweep around
// them. The impact table, the sweep's ×1 point and the text all read the same runs.
import type { OffloadMode } from "../fleet/build.js";
import type { FleetReport } from "../fleet/report.js";
import type { FleetChoice } from "./input.js";
import {
  offloadRefusals,
  OFFLOAD_PAYS_GAIN,
  REFUSALS,
  selectOffload,
  stackRefusals,
  type Concurrency,
  type Finding,
} from "./rules.js";
import type { Evaluated, Evaluator } from "./search.js";

export const MODES: readonly OffloadMode[] = ["none", "native", "lmcache"];

export interface Decision {
  fleet: FleetChoice;
  routing: { policy: string; finding: Finding };
  runs: Record<OffloadMode, Evaluated>;
  refusals: Finding[];
  choice: OffloadMode;
  finding: Finding;
  concurrency: Concurrency;
  /** refused options, by mode */
  refused: Record<OffloadMode, boolean>;
}

export const gain = (x: FleetReport, base: FleetReport) => {
  const b = base.bench.total_token_throughput as number;
  return b > 0 ? (x.bench.total_token_throughput as number) / b - 1 : 0;
};

/** the requests in flight: the scenario's concurrency, or QPS × mean E2E of the baseline (Little's law) */
export function concurrencyOf(ev: Evaluator, none: FleetReport): Concurrency {
  const w = ev.base.scenario.workload;
  if (w.concurrency !== undefined) return { value: w.concurrency, basis: null };
  const e2e = ((none.bench.mean_e2el_ms as number) || 0) / 1000;
  const qps = w.qps ?? 0;
  return { value: qps * e2e, basis: `${qps} QPS × ${e2e.toFixed(2)} s mean E2E, Little's law` };
}

export async function decideAt(ev: Evaluator, fleet: FleetChoice): Promise<Decision> {
  const [none, native, lmcache] = await Promise.all(MODES.map((m) => ev.run(fleet, m)));
  const runs = { none: none!, native: native!, lmcache: lmcache! };
  const { r, routing } = ev.scenario(fleet);
  const base = runs.none.report;
  const concurrency = concurrencyOf(ev, base);
  const refusals = [...stackRefusals(r), ...offloadRefusals(r, base.preemptions, concurrency)];
  const ids = new Set(refusals.map((f) => f.rule));
  const offloadRefused = ids.has(REFUSALS.shortPromptsLowConcurrency.id);
  const lmRefused =
    offloadRefused || ids.has(REFUSALS.lmcacheSingleEngine.id) || ids.has(REFUSALS.lmcacheNoReuse.id);
  const bestGain = Math.max(
    offloadRefused ? 0 : gain(runs.native.report, base),
    lmRefused ? 0 : gain(runs.lmcache.report, base),
  );
  const sel = selectOffload(r, {
    refusals,
    baselineKvP99: base.kv_usage.p99,
    baselinePreemptions: base.preemptions,
    offloadGain: bestGain,
  });
  return {
    fleet,
    routing,
    runs,
    refusals,
    choice: sel.choice,
    finding: sel.finding,
    concurrency,
    refused: { none: false, native: offloadRefused, lmcache: lmRefused },
  };
}

export interface SweepPoint {
  kv_scale: number;
  kv_tokens_per_engine: number;
  baseline_kv_usage_p99: number;
  baseline_kv_usage_mean: number;
  baseline_preemptions: number;
  gain: number;
}

/** prompt tokens one sweep point may compute (those no prefix cache serves) before the sweep shortens its runs */
export const SWEEP_TOKEN_BUDGET = 10e6;
/** the shortest sweep run */
export const SWEEP_MIN_REQUESTS = 300;

/**
 * Requests per sweep point: the impact runs' own count, unless their uncached prompt tokens exceed the
 * budget (32k-token documents by the thousand); then the first `n` requests of the same load.
 */
export function sweepRequests(impactRequests: number, uncachedTokens: number): number {
  const byBudget = Math.max(SWEEP_MIN_REQUESTS, Math.floor(SWEEP_TOKEN_BUDGET / Math.max(1, uncachedTokens)));
  return Math.min(impactRequests, byBudget);
}

/**
 * The same fleet with its KV cache scaled, baseline against `option`. At the impact runs' length the
 * ×1 point is the impact runs themselves; shortened (`requests` below theirs), every point, ×1
 * included, is its own run of the first `requests` requests of the same load.
 */
export async function kvSweep(
  ev: Evaluator,
  d: Decision,
  option: OffloadMode,
  scales: readonly number[],
  requests: number | null,
): Promise<SweepPoint[]> {
  const short = requests !== null ? { maxRequests: requests } : {};
  const pairs = await Promise.all(
    scales.map(async (kvScale) => {
      if (kvScale === 1 && requests === null) return [d.runs.none.report, d.runs[option].report] as const;
      const [b, o] = await Promise.all([
        ev.run(d.fleet, "none", { kvScale, ...short }),
        ev.run(d.fleet, option, { kvScale, ...short }),
      ]);
      return [b.report, o.report] as const;
    }),
  );
  return pairs.map(([b, o], i) => ({
    kv_scale: scales[i]!,
    kv_tokens_per_engine: b.capacity.kv_tokens_per_engine,
    baseline_kv_usage_p99: b.kv_usage.p99,
    baseline_kv_usage_mean: b.kv_usage.mean,
    baseline_preemptions: b.preemptions,
    gain: gain(o, b),
  }));
}

export interface BreakEven {
  /** the largest KV cache at which offload gains ≥ 3%, and the next larger one where it did not */
  pays_at: SweepPoint | null;
  not_at: SweepPoint | null;
}

/** walking from the largest cache (least pressure) down, the first point where offload pays */
export function breakEven(sweep: readonly SweepPoint[]): BreakEven {
  const bySize = [...sweep].sort((a, b) => b.kv_scale - a.kv_scale);
  const i = bySize.findIndex((p) => p.gain >= OFFLOAD_PAYS_GAIN);
  return { pays_at: i >= 0 ? bySize[i]! : null, not_at: i > 0 ? bySize[i - 1]! : null };
}
