// The plan: sizes the fleet to the SLO where the scenario leaves it open (search.ts), or checks the
// fleet it names, runs the decider at that fleet (decide.ts), and assembles the one-page answer. The
// first lines say whether the fleet meets the SLO, by how much, and what it costs.
import { sessionKeyFor, workloadFor, type OffloadMode } from "../fleet/build.js";
import type { FleetReport } from "../fleet/report.js";
import type { ResolvedScenario } from "../fleet/scenario.js";
import { GPUS } from "../models/index.js";
import { policyReadsKv } from "../routing/index.js";
import {
  breakEven,
  decideAt,
  sweepRequests,
  gain,
  kvSweep,
  type BreakEven,
  type Decision,
  type SweepPoint,
} from "./decide.js";
import {
  candidateShapes,
  fitShape,
  fixedFleetProblem,
  fleetOf,
  gpusOf,
  NO_OPEN_FIELDS,
  PlanInputError,
  type FleetChoice,
  type OpenFields,
} from "./input.js";
import { SimPool } from "./pool.js";
import { costOf, fleetCost, priceTable, PRICE_SOURCE, usd, type PriceTable } from "./prices.js";
import { frontOf, type Front } from "./front.js";
import { planL2, withL2, type L2Plan } from "./l2.js";
import { searchPd, type PdOutcome } from "./layouts.js";
import { KV_ALERT_THRESHOLD, planRefusal, REFUSALS, type Finding } from "./rules.js";
import {
  Evaluator,
  gpuCount,
  gpuCountPrices,
  label,
  usdh as usdPerHour,
  MAX_ENGINES,
  minEngines,
  searchFleet,
  type Evaluated,
  type ShapeOutcome,
  uncachedPromptTokens,
} from "./search.js";
import { p90Interval, secs, sloOf, targetsOf, type Predicted, type Slo, type SloTargets } from "./slo.js";
import { routerSection, stackSection, offloadConfig, OBSERVABILITY } from "./sections.js";
import { VLLM_GPU_MEMORY_UTILIZATION } from "../config/vllm-defaults.js";

export { SWEEP_SCALES } from "./sections.js";
export type { SweepPoint } from "./decide.js";

export const GATE_PROMQL = "max(quantile_over_time(0.99, vllm:kv_cache_usage_perc[24h]))";
/** vLLM's default; the 10% it leaves covers CUDA graphs, NCCL and allocator slack outside the profile */
export const RECOMMENDED_GPU_MEMORY_UTILIZATION = VLLM_GPU_MEMORY_UTILIZATION;
export const ALERT_FOR = "5m";

/** the published 16× H100 figures, set beside the user's own */
export const PUBLISHED = {
  source:
    'llm-d "tiered prefix cache" benchmark, 8 × Qwen3-32B TP2 on 16 × H100 (github.com/llm-d/llm-d, guides/tiered-prefix-cache)',
  high_cache: {
    baseline_tok_s: 38535,
    native_gain: 0.213,
    lmcache_gain: 0.217,
    native_mean_ttft_change: -0.256,
    lmcache_mean_ttft_change: -0.278,
  },
  low_cache: { baseline_tok_s: 23390, native_gain: -0.015, lmcache_gain: -0.026 },
  note: "other write-ups put LMCache's cost at 3–5% when KV fits; this run measured 1.5–2.6%, and that is what we quote",
};

export interface OptionImpact {
  throughput_tok_s: number;
  output_tok_s: number;
  ttft_p50_ms: number;
  ttft_p90_ms: number;
  ttft_mean_ms: number;
  tpot_p90_ms: number;
  e2e_mean_ms: number;
  e2e_p90_ms: number;
  kv_usage_p99: number;
  preemptions: number;
  reprefill_avoided_tokens: number;
  hit_rates: FleetReport["hit_rates"];
  gain_vs_none: number;
  refused: boolean;
}

export interface FleetJson {
  gpu: string;
  engines: number;
  tensor_parallel_size: number;
  /** set when the model's own context does not fit and the plan sized it to the workload */
  max_model_len?: number;
  /** a disaggregated fleet: `engines` is prefill + decode, `tensor_parallel_size` the decode engines' */
  disaggregated?: {
    prefill_engines: number;
    decode_engines: number;
    prefill_tensor_parallel_size: number;
    decode_tensor_parallel_size: number;
  };
  /** GPUs in all */
  gpus: number;
}

export interface Alternative {
  fleet: FleetJson;
  cost_usd_per_hour: number | null;
  predicted: Predicted;
  /** the run was ended once it was certain to miss: its figures cover the requests finished by then */
  stopped_early?: boolean;
}

export interface Plan {
  scenario: string;
  /** the verdict in a few lines: SLO met or not and by how much, the fleet, its cost */
  summary: string[];
  fleet: FleetJson;
  slo: (Slo & { targets_ms: SloTargets }) | null;
  /** null without an SLO */
  slo_met: boolean | null;
  headroom: number | null;
  cost_usd_per_hour: number | null;
  budget_usd_per_hour: number | null;
  within_budget: boolean | null;
  predicted: Predicted;
  /**
   * the same fleet with one engine fewer (a sized fleet's evidence that it is not over-built); for a
   * disaggregated fleet, one decode engine fewer
   */
  one_engine_fewer: (Alternative & { slo_met: boolean; misses: string[] }) | null;
  /** a disaggregated fleet with one prefill engine fewer */
  one_prefill_fewer: (Alternative & { slo_met: boolean; misses: string[] }) | null;
  /** `--target-rps` / `--target-concurrency`: the load the fleet is sized for, and the objective */
  target: { rps: number | null; concurrency: number | null; objective: string } | null;
  /** the disaggregated (xPyD) layouts searched, per GPU and TP pair; null when none was */
  disaggregated_search: PdOutcome[] | null;
  /** output tokens/s per GPU against tokens/s per user over every layout simulated to the end */
  front: Front;
  /** a fixed fleet that misses the SLO: by how much, and the fleet that would meet it */
  undersized: { over_by: Record<string, number>; meets_slo_with: Alternative | null; note: string } | null;
  search: {
    shapes: {
      gpu: string;
      tensor_parallel_size: number;
      engines: number | null;
      cost_usd_per_hour: number | null;
      note: string;
    }[];
    runs: number;
  } | null;
  prices: { usd_per_gpu_hour: PriceTable; source: string };
  stack: ReturnType<typeof stackSection>;
  kv_offload: { choice: OffloadMode; rule: string; reason: string; config: Record<string, unknown> };
  /** the shared tier's store (LMCache's L2) where the scenario has one (offload.shared_server) */
  kv_l2: L2Plan | null;
  refusals: Finding[];
  decisions: Finding[];
  hbm: {
    gpu_memory_utilization: number;
    alert_threshold: number;
    alert_for: string;
    alert_promql: string;
    kv_tokens_per_engine: number;
    kv_gb_per_engine: number;
  };
  router: ReturnType<typeof routerSection>;
  observability: string[];
  impact: Record<OffloadMode, OptionImpact>;
  published: typeof PUBLISHED;
  kv_spill: {
    option: OffloadMode;
    reprefill_avoided_tokens: number;
    throughput_gain: number;
    /** baseline KV usage P99 of the largest KV cache at which offload gains ≥ 3% */
    break_even_kv_usage_p99: number | null;
    /** the same figure at the next larger KV cache, where offload did not pay yet */
    no_gain_below_kv_usage_p99: number | null;
    break_even: BreakEven;
    /** requests per sweep point; the impact runs' own count makes its ×1 point those runs */
    sweep_requests: number;
    /** why the sweep's runs are shorter than the impact table's, when they are */
    sweep_note: string | null;
    sweep: SweepPoint[];
  };
  gate: { metric: string; promql: string; threshold: number; pass_if: string };
  simulation: {
    engines: number;
    requests: number;
    generator: string;
    /** how well a p90 is known from that many requests */
    confidence: string;
    runs: number;
    wall_s: number;
  };
}

export type PlanOutcome = { ok: true; plan: Plan } | { ok: false; refusals: Finding[] };

export interface PlanOptions {
  /** sweep points (KV-size factors); [] skips the sweep */
  sweep?: readonly number[];
  /** the fleet fields the scenario left to the planner */
  open?: OpenFields;
  /** simulations run here; default: in this thread */
  pool?: SimPool;
  prices?: PriceTable;
  /** a profiles YAML loaded here and by every worker (`--profiles`) */
  profiles?: string;
  /** the layouts searched where the fleet is open: aggregated, disaggregated (P/D) or both (default) */
  layouts?: "agg" | "pd" | "both";
  /** the load a `--target-rps` / `--target-concurrency` plan is sized for: fewest GPUs, then cost */
  target?: { rps: number | null; concurrency: number | null };
}

function impactOf(e: Evaluated, base: FleetReport, refused: boolean): OptionImpact {
  const b = e.report.bench;
  return {
    throughput_tok_s: b.total_token_throughput as number,
    output_tok_s: b.output_throughput as number,
    ttft_p50_ms: b.median_ttft_ms as number,
    ttft_p90_ms: b.p90_ttft_ms as number,
    ttft_mean_ms: b.mean_ttft_ms as number,
    tpot_p90_ms: b.p90_tpot_ms as number,
    e2e_mean_ms: b.mean_e2el_ms as number,
    e2e_p90_ms: b.p90_e2el_ms as number,
    kv_usage_p99: e.report.kv_usage.p99,
    preemptions: e.report.preemptions,
    reprefill_avoided_tokens: e.report.reprefill_avoided_tokens,
    hit_rates: e.report.hit_rates,
    gain_vs_none: gain(e.report, base),
    refused,
  };
}

export const fleetJson = (f: FleetChoice): FleetJson => ({
  gpu: f.gpu,
  engines: f.engines,
  tensor_parallel_size: f.tp,
  ...(f.maxModelLen !== undefined ? { max_model_len: f.maxModelLen } : {}),
  ...(f.pd
    ? {
        disaggregated: {
          prefill_engines: f.pd.prefill,
          decode_engines: f.pd.decode,
          prefill_tensor_parallel_size: f.pd.prefillTp,
          decode_tensor_parallel_size: f.pd.decodeTp,
        },
      }
    : {}),
  gpus: gpusOf(f),
});

/** the FleetChoice a plan's fleet JSON stands for */
export function choiceOf(f: FleetJson): FleetChoice {
  const d = f.disaggregated;
  return {
    gpu: f.gpu,
    tp: f.tensor_parallel_size,
    engines: f.engines,
    ...(f.max_model_len !== undefined ? { maxModelLen: f.max_model_len } : {}),
    ...(d
      ? {
          pd: {
            prefill: d.prefill_engines,
            decode: d.decode_engines,
            prefillTp: d.prefill_tensor_parallel_size,
            decodeTp: d.decode_tensor_parallel_size,
          },
        }
      : {}),
  };
}

const usdh = (x: number | null) => (x === null ? "no price" : `${usd(x)}/h`);

/** "TTFT p90 1.21 s (≤ 1.80 s)" for every bound */
function within(p: Predicted, t: SloTargets): string {
  const parts = [
    `TTFT p90 ${secs(p.ttft_p90_ms)} (≤ ${secs(t.ttft)})`,
    `TPOT p90 ${secs(p.tpot_p90_ms)} (≤ ${secs(t.tpot)})`,
  ];
  if (t.e2e !== null) parts.push(`E2E p90 ${secs(p.e2e_p90_ms)} (≤ ${secs(t.e2e)})`);
  return parts.join(", ");
}

export async function makePlan(scenario: ResolvedScenario, opts: PlanOptions = {}): Promise<PlanOutcome> {
  const stop = planRefusal(scenario);
  if (stop) return { ok: false, refusals: [stop] };
  // the shared tier's store, chosen first: every run simulates the tier it will be (a cluster at its size)
  const l2 = planL2(scenario);
  const r0 = l2 ? withL2(scenario, l2) : scenario;
  const t0 = performance.now();
  const open = opts.open ?? NO_OPEN_FIELDS;
  const anyOpen = open.gpu || open.engines || open.tensorParallelSize;
  const slo = sloOf(r0);
  const targets = slo ? targetsOf(slo) : null;
  const prices = opts.prices ?? priceTable(r0);
  const budget = r0.scenario.ops.budget_usd_per_hour ?? null;
  const pool = opts.pool ?? new SimPool(1);
  const progress = pool.progress;
  const ev = new Evaluator(r0, pool, targets, opts.profiles);
  try {
    // ---- the fleet: searched, or the scenario's own ----
    let fleet: FleetChoice;
    let search: Plan["search"] = null;
    let pdSearch: PdOutcome[] | null = null;
    let overBudgetNote: string | null = null;
    if (anyOpen) {
      if (!targets) throw new PlanInputError("slo: needed to size a fleet");
      const { shapes, rejected } = candidateShapes(
        { r: r0, open },
        GPUS.map((g) => g.id),
      );
      if (shapes.length === 0)
        throw new PlanInputError(
          `fleet.tensor_parallel_size: ${r0.model.id} fits no GPU and TP searched (${rejected.map((x) => `${x.gpu} TP ${x.tp}`).join(", ")})`,
        );
      // a target load is met with the fewest GPUs (then the cheapest): searched with prices that count GPUs
      const byGpus = opts.target !== undefined;
      const searchPrices = byGpus ? gpuCountPrices(prices) : prices;
      const money = byGpus ? gpuCount : usdPerHour;
      const layouts = opts.layouts ?? "both";
      const o = {
        prices: searchPrices,
        budget: byGpus ? null : budget,
        engines: open.engines ? null : r0.scenario.fleet.engines,
        maxEngines: r0.scenario.ops.kubernetes ? MAX_ENGINES : 1,
        mode: "none" as OffloadMode,
        money,
      };
      progress.set(`searching ${shapes.length} fleet shapes`);
      let res: Awaited<ReturnType<typeof searchFleet>> =
        layouts === "pd" ? { found: null, shapes: [] } : await searchFleet(ev, shapes, o);
      // disaggregated layouts need two engines at least, and the chart (Kubernetes)
      if (layouts !== "agg" && open.engines && o.maxEngines > 1) {
        progress.set("searching disaggregated (P/D) layouts");
        const pd = await searchPd(ev, shapes, { ...o, cap: res.found?.cost ?? Infinity });
        pdSearch = pd.outcomes.map((x) => ({
          ...x,
          cost_usd_per_hour:
            x.prefill_engines === null || x.decode_engines === null
              ? null
              : costOf(prices, {
                  gpu: x.gpu,
                  tp: x.decode_tensor_parallel_size,
                  engines: x.prefill_engines + x.decode_engines,
                  pd: {
                    prefill: x.prefill_engines,
                    decode: x.decode_engines,
                    prefillTp: x.prefill_tensor_parallel_size,
                    decodeTp: x.decode_tensor_parallel_size,
                  },
                }),
        }));
        // a tie goes to the aggregated fleet: the simpler one to run
        if (pd.found && (!res.found || pd.found.cost < res.found.cost - 1e-9))
          res = { found: pd.found, shapes: res.shapes };
      }
      if (!res.found && budget !== null && !byGpus && layouts !== "pd") {
        progress.set("no fleet within the budget: searching beyond it");
        const beyond = await searchFleet(ev, shapes, { ...o, budget: null });
        if (beyond.found)
          overBudgetNote = `no fleet within the ${usdh(budget)} budget meets the SLO; the cheapest that does costs ${usdh(beyond.found.cost)}`;
        res = {
          found: beyond.found,
          shapes: [...res.shapes, ...beyond.shapes.filter((s) => s.engines !== null)],
        };
      }
      if (!res.found) throw new PlanInputError(noFleetReason(slo!, res.shapes));
      fleet = res.found.fleet;
      // real prices (a target-load search ran on GPU counts)
      for (const x of res.shapes)
        x.cost = x.engines === null ? null : fleetCost(prices, x.shape.gpu, x.engines, x.shape.tp);
      // fleets that meet the SLO first, cheapest first; then the shapes dropped, in search order
      const ranked = [...res.shapes].sort(
        (a, b) =>
          (a.cost ?? Infinity) - (b.cost ?? Infinity) || (a.cost === null ? 0 : a.shape.tp - b.shape.tp),
      );
      search = {
        shapes: [
          ...ranked.map((s: ShapeOutcome) => ({
            gpu: s.shape.gpu,
            tensor_parallel_size: s.shape.tp,
            engines: s.engines,
            cost_usd_per_hour: s.cost,
            note: s.note,
          })),
          ...rejected.map((x) => ({
            gpu: x.gpu,
            tensor_parallel_size: x.tp,
            engines: null,
            cost_usd_per_hour: null,
            note: x.problem,
          })),
        ],
        runs: 0,
      };
    } else {
      const problem = fixedFleetProblem(r0);
      if (problem) throw new PlanInputError(problem);
      const fit = fitShape(r0, r0.gpu.id, r0.scenario.fleet.tensor_parallel_size);
      const pd = fleetOf(r0).pd;
      fleet = {
        gpu: r0.gpu.id,
        tp: r0.scenario.fleet.tensor_parallel_size,
        engines: r0.scenario.fleet.engines,
        ...("shape" in fit ? fit.shape : {}),
        ...(pd ? { pd } : {}),
      };
    }

    // ---- the decider at that fleet; a sized fleet is re-sized for the offload option chosen ----
    progress.set(`deciding offload at ${label(fleet)}`);
    const deciding = decideAt(ev, fleet);
    // a fixed fleet whose baseline already misses is all but certainly under-sized: start sizing it
    // beside the offload runs instead of after them (dropped if the chosen option meets the SLO)
    let sizing: Promise<RightSize> | null = null;
    if (targets && !anyOpen && !(await ev.run(fleet, "none")).check!.met) {
      sizing = rightSize(ev, fleet, prices);
      sizing.catch(() => {});
    }
    let d = await deciding;
    if (open.engines && targets && !fleet.pd) {
      for (let i = 0; i < 3 && d.choice !== "none"; i++) {
        const s = await minEngines(
          (n) => ev.run({ ...fleet, engines: n }, d.choice, { stop: true }),
          fleet.engines,
          () => fleet.engines * 2,
          pool.size,
        );
        if (s.engines === null || s.engines === fleet.engines) break;
        fleet = { ...fleet, engines: s.engines };
        progress.set(`deciding offload at ${label(fleet)}`);
        d = await decideAt(ev, fleet);
      }
    }
    // disaggregated engines run NixlConnector, and a vLLM engine takes one KV connector
    if (fleet.pd && d.choice !== "none")
      d = {
        ...d,
        choice: "none",
        finding: {
          rule: "select.offload.none.disaggregated",
          reason: `No offload: prefill and decode engines move KV with NixlConnector, and a vLLM engine runs one KV connector (${d.choice} alone was chosen: ${d.finding.reason})`,
        },
      };
    const chosen = d.runs[d.choice];
    const check = chosen.check;
    const cost = costOf(prices, fleet);

    // ---- evidence around it: one engine fewer, or for a fixed fleet that misses, the fleet that meets ----
    const fewerOf = async (f: FleetChoice): Promise<Plan["one_engine_fewer"]> => {
      const b = await ev.run(f, d.choice, { stop: true });
      return {
        fleet: fleetJson(b.fleet),
        cost_usd_per_hour: costOf(prices, f),
        predicted: b.predicted,
        stopped_early: b.stoppedEarly,
        slo_met: b.check!.met,
        misses: b.check!.misses,
      };
    };
    let fewer: Plan["one_engine_fewer"] = null;
    let prefillFewer: Plan["one_prefill_fewer"] = null;
    const pd = fleet.pd;
    if (targets && check?.met && pd) {
      const less = (p: number, dd: number): FleetChoice => ({
        ...fleet,
        engines: p + dd,
        pd: { ...pd, prefill: p, decode: dd },
      });
      [fewer, prefillFewer] = await Promise.all([
        pd.decode > 1 ? fewerOf(less(pd.prefill, pd.decode - 1)) : null,
        pd.prefill > 1 ? fewerOf(less(pd.prefill - 1, pd.decode)) : null,
      ]);
    } else if (targets && check?.met && fleet.engines > 1)
      fewer = await fewerOf({ ...fleet, engines: fleet.engines - 1 });
    let undersized: Plan["undersized"] = null;
    if (targets && check && !check.met && !open.engines) {
      const r = check.ratios;
      undersized = {
        over_by: { ttft_p90: r.ttft, tpot_p90: r.tpot, ...(r.e2e !== null ? { e2e_p90: r.e2e } : {}) },
        ...(await (sizing ?? rightSize(ev, d.fleet, prices))),
      };
    }

    // ---- the KV-size sweep around the chosen option (native when none is chosen); a fleet that
    // misses its SLO is swept only once it is sized (where offload starts to pay says little about a
    // fleet that cannot carry the load)
    const spillOption: OffloadMode = d.choice === "none" ? "native" : d.choice;
    const sweepScales = undersized ? [] : (opts.sweep ?? []);
    const impactRequests = d.runs.none.report.requests;
    const perPoint = sweepRequests(impactRequests, uncachedPromptTokens(r0));
    progress.set("KV-size sweep");
    const sweep = await kvSweep(ev, d, spillOption, sweepScales, perPoint < impactRequests ? perPoint : null);
    const be = breakEven(sweep);
    progress.clear();

    const r = ev.scenario(fleet).r;
    const s = r.scenario;
    const base = d.runs.none.report;
    const policy = d.routing.policy;
    const { generator } = workloadFor(r, base.requests);
    const noK8s = d.refusals.some((f) => f.rule === REFUSALS.noKubernetes.id);
    const gpuUtil = s.fleet.gpu_memory_utilization ?? RECOMMENDED_GPU_MEMORY_UTILIZATION;
    const [lo, hi] = p90Interval(chosen.report.requests);
    const plan: Plan = {
      scenario: s.name ?? "scenario",
      summary: [],
      fleet: fleetJson(fleet),
      slo: slo && targets ? { ...slo, targets_ms: targets } : null,
      slo_met: check ? check.met : null,
      headroom: slo ? slo.headroom : null,
      cost_usd_per_hour: cost,
      budget_usd_per_hour: budget,
      within_budget: budget === null || cost === null ? null : cost <= budget + 1e-9,
      predicted: chosen.predicted,
      one_engine_fewer: fewer,
      one_prefill_fewer: prefillFewer,
      target: opts.target
        ? { ...opts.target, objective: "the fewest GPUs that meet the SLO at this load, then the cheapest" }
        : null,
      disaggregated_search: pdSearch,
      front: frontOf(ev.tried.values(), fleet, d.choice, targets),
      undersized,
      search: search ? { ...search, runs: pool.runs } : null,
      prices: { usd_per_gpu_hour: prices, source: PRICE_SOURCE },
      stack: stackSection(noK8s),
      kv_offload: {
        choice: d.choice,
        rule: d.finding.rule,
        reason: d.finding.reason,
        config: offloadConfig(d.choice, s),
      },
      kv_l2: l2,
      refusals: d.refusals,
      decisions: [d.finding, d.routing.finding],
      hbm: {
        gpu_memory_utilization: gpuUtil,
        alert_threshold: KV_ALERT_THRESHOLD,
        alert_for: ALERT_FOR,
        alert_promql: `max by (namespace, pod, model_name) (vllm:kv_cache_usage_perc) >= ${KV_ALERT_THRESHOLD}`,
        kv_tokens_per_engine: base.capacity.kv_tokens_per_engine,
        kv_gb_per_engine: base.capacity.kv_gb_per_engine,
      },
      router: routerSection(policy, sessionKeyFor(r, generator), policyReadsKv(policy)),
      observability: OBSERVABILITY,
      impact: {
        none: impactOf(d.runs.none, base, false),
        native: impactOf(d.runs.native, base, d.refused.native),
        lmcache: impactOf(d.runs.lmcache, base, d.refused.lmcache),
      },
      published: PUBLISHED,
      kv_spill: {
        option: spillOption,
        reprefill_avoided_tokens: d.runs[spillOption].report.reprefill_avoided_tokens,
        throughput_gain: gain(d.runs[spillOption].report, base),
        break_even_kv_usage_p99: be.pays_at?.baseline_kv_usage_p99 ?? null,
        no_gain_below_kv_usage_p99: be.not_at?.baseline_kv_usage_p99 ?? null,
        break_even: be,
        sweep_requests: sweep.length ? Math.min(perPoint, impactRequests) : 0,
        sweep_note:
          sweep.length && perPoint < impactRequests
            ? sweepNote(perPoint, impactRequests, uncachedPromptTokens(r0), d, sweep)
            : null,
        sweep,
      },
      gate: {
        metric: "HBM (KV cache) utilisation P99 over the last 24 h",
        promql: GATE_PROMQL,
        threshold: KV_ALERT_THRESHOLD,
        pass_if: `< ${KV_ALERT_THRESHOLD}`,
      },
      simulation: {
        engines: fleet.engines,
        requests: base.requests,
        generator,
        confidence: `each run simulates ${base.requests} requests: a p90 read from ${base.requests} samples is the ${lo.toFixed(1)}th–${hi.toFixed(1)}th percentile at 95% confidence`,
        runs: pool.runs,
        wall_s: (performance.now() - t0) / 1000,
      },
    };
    plan.summary = summaryLines(plan, d, overBudgetNote);
    return { ok: true, plan };
  } finally {
    progress.clear();
    if (!opts.pool) await pool.close();
  }
}

/** the fleet that meets the SLO where the planned one misses, and how it was found */
interface RightSize {
  meets_slo_with: Alternative | null;
  note: string;
}

/**
 * The fewest engines of the same shape that meet the SLO, else the cheapest fleet of any shape. Searched
 * without offload: the option chosen for an overloaded fleet answers its pressure, which a fleet sized
 * to the load does not have (its own plan decides again).
 */
async function rightSize(ev: Evaluator, f: FleetChoice, prices: PriceTable): Promise<RightSize> {
  ev.pool.progress.set(`under-sized: sizing ${f.gpu.toUpperCase()} TP ${f.tp} fleets`);
  const shape = {
    gpu: f.gpu,
    tp: f.tp,
    ...(f.maxModelLen !== undefined ? { maxModelLen: f.maxModelLen } : {}),
  };
  // any count, any cost, no offload
  const open = {
    prices,
    budget: null,
    engines: null,
    maxEngines: ev.base.scenario.ops.kubernetes ? MAX_ENGINES : 1,
    mode: "none" as OffloadMode,
  };
  const same = await searchFleet(ev, [shape], open);
  const found = same.found;
  if (found && found.fleet.engines > f.engines)
    return {
      meets_slo_with: {
        fleet: fleetJson(found.fleet),
        cost_usd_per_hour: found.cost,
        predicted: found.at.predicted,
      },
      note: `${label(found.fleet)} meet it without offload (${found.fleet.engines - f.engines} more engines)`,
    };
  const why = same.shapes[0]?.note ?? "";
  // no count of this shape will do: search every GPU and TP the model fits on
  ev.pool.progress.set("under-sized: searching other GPUs and TP sizes");
  const { shapes } = candidateShapes(
    { r: ev.base, open: { gpu: true, engines: true, tensorParallelSize: true } },
    GPUS.map((g) => g.id),
  );
  const other = await searchFleet(
    ev,
    shapes.filter((x) => x.gpu !== f.gpu || x.tp !== f.tp),
    open,
  );
  const alt = other.found;
  return {
    meets_slo_with: alt
      ? { fleet: fleetJson(alt.fleet), cost_usd_per_hour: alt.cost, predicted: alt.at.predicted }
      : null,
    note: `no count of ${f.gpu.toUpperCase()} TP ${f.tp} engines meets it${why ? ` (${why})` : ""}; ${alt ? `the cheapest fleet that does is ${label(alt.fleet)}` : "no GPU and TP searched does either"}`,
  };
}

/** why the sweep ran shorter than the impact table, and how far its ×1 row is from the table's runs */
function sweepNote(
  n: number,
  impact: number,
  promptTokens: number,
  d: Decision,
  sweep: readonly SweepPoint[],
): string {
  const one = sweep.find((p) => p.kv_scale === 1);
  const base = d.runs.none.report;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  return (
    `the sweep runs the first ${n} of the impact table's ${impact} requests at each point (${impact} prompts of ${promptTokens.toLocaleString("en-US")} tokens to compute each, at every point, would make the plan slow); ` +
    (one
      ? `its ×1 row is that shorter run of the same fleet: KV P99 ${pct(one.baseline_kv_usage_p99)} and ${one.baseline_preemptions} preemptions against the impact table's ${pct(base.kv_usage.p99)} and ${base.preemptions}`
      : "it has no ×1 row")
  );
}

function noFleetReason(slo: Slo, shapes: readonly ShapeOutcome[]): string {
  const notes = shapes
    .map((s) => `${s.shape.gpu} TP ${s.shape.tp}: ${s.note}`)
    .slice(0, 4)
    .join("; ");
  return `slo: no fleet meets TTFT p90 ≤ ${secs(slo.ttft_p90_ms)} and TPOT p90 ≤ ${secs(slo.tpot_p90_ms)}${slo.e2e_p90_ms !== undefined ? ` and E2E p90 ≤ ${secs(slo.e2e_p90_ms)}` : ""} with ${Math.round(slo.headroom * 100)}% headroom (${notes || "no shape fits"})`;
}

function summaryLines(p: Plan, d: Decision, overBudget: string | null): string[] {
  const f = d.fleet;
  const out: string[] = [];
  const cost = usdh(p.cost_usd_per_hour);
  const t = p.slo?.targets_ms;
  if (p.slo_met === null || !t) {
    out.push(
      `Fleet: ${label(f)} at ${cost}. No SLO given: add slo.ttft_p90_ms and slo.tpot_p90_ms to have the fleet sized and checked.`,
    );
  } else if (p.slo_met) {
    out.push(
      `SLO met: ${label(f)} at ${cost}, with ${Math.round(p.headroom! * 100)}% headroom: ${within(p.predicted, t)}${d.choice !== "none" ? `, with ${d.choice} offload` : ""}.`,
    );
    const fw = p.one_engine_fewer;
    const pd = p.fleet.disaggregated;
    const gpus = (x: FleetJson) => `${x.gpus} GPU${x.gpus === 1 ? "" : "s"}`;
    if (fw && pd)
      out.push(
        fw.slo_met
          ? `${fw.fleet.disaggregated!.decode_engines} decode engines would also meet it (${usdh(fw.cost_usd_per_hour)}).`
          : `One decode engine fewer (${label(choiceOf(fw.fleet))}, ${gpus(fw.fleet)}) misses it: ${fw.misses.join(", ")}.`,
      );
    else if (fw)
      out.push(
        fw.slo_met
          ? `${fw.fleet.engines} engines would also meet it (${usdh(fw.cost_usd_per_hour)}).`
          : `One engine fewer (${fw.fleet.engines}, ${gpus(fw.fleet)}) misses it: ${fw.misses.join(", ")}.`,
      );
    const pf = p.one_prefill_fewer;
    if (pf)
      out.push(
        pf.slo_met
          ? `${pf.fleet.disaggregated!.prefill_engines} prefill engines would also meet it (${usdh(pf.cost_usd_per_hour)}).`
          : `One prefill engine fewer (${label(choiceOf(pf.fleet))}, ${gpus(pf.fleet)}) misses it: ${pf.misses.join(", ")}.`,
      );
    if (p.target)
      out.push(
        `Target: ${p.target.rps !== null ? `${p.target.rps} requests/s` : `${p.target.concurrency} concurrent requests`}: ${gpus(p.fleet)}, the fewest that meet the SLO (then the cheapest).`,
      );
  } else {
    const worst = Math.max(...Object.values(p.undersized?.over_by ?? { x: 1 }));
    out.push(
      `UNDER-SIZED: ${label(f)} misses the SLO by ${worst.toFixed(1)}×: ${d.runs[d.choice].check!.misses.join(", ")} (bounds less ${Math.round(p.headroom! * 100)}% headroom).`,
    );
    const u = p.undersized;
    if (u?.meets_slo_with)
      out.push(
        `${u.note}: ${usdh(u.meets_slo_with.cost_usd_per_hour)}, ${within(u.meets_slo_with.predicted, t)}.`,
      );
    else if (u) out.push(`${u.note}.`);
  }
  const b = p.budget_usd_per_hour;
  const needed = p.undersized?.meets_slo_with?.cost_usd_per_hour ?? null;
  if (overBudget) out.push(`Over budget: ${overBudget}.`);
  else if (b !== null && needed !== null && needed > b + 1e-9)
    out.push(`Over budget: meeting the SLO costs ${usdh(needed)} against a budget of ${usdh(b)}.`);
  else if (b !== null && p.cost_usd_per_hour !== null)
    out.push(
      p.within_budget
        ? `Budget ${usdh(b)}: this fleet costs ${cost}.`
        : `Over budget: this fleet costs ${cost} against ${usdh(b)}.`,
    );
  return out;
}
