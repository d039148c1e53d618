// The plan: sizes the fleet to the SLO where the scenario leaves it open (search.ts), or checks the
// fleet it names, runs the decider at that fleet (decide.ts), and assembles the one-page answer. The
// first lines say whether the fleet meets the SLO, by how much, and what it costs.
import { sessionKeyFor, workloadFor, type OffloadMode } from "../fleet/build.js";
import type { ResolvedScenario } from "../fleet/scenario.js";
import { GPUS } from "../models/index.js";
import { policyReadsKv } from "../routing/index.js";
import { breakEven, decideAt, sweepRequests, gain, kvSweep } from "./decide.js";
import {
  candidateShapes,
  fitShape,
  fixedFleetProblem,
  fleetOf,
  NO_OPEN_FIELDS,
  PlanInputError,
  type FleetChoice,
  type OpenFields,
} from "./input.js";
import { SimPool } from "./pool.js";
import { costOf, fleetCost, priceTable, PRICE_SOURCE, type PriceTable } from "./prices.js";
import { frontOf } from "./front.js";
import { planL2, withL2 } from "./l2.js";
import { searchPd, type PdOutcome } from "./layouts.js";
import { KV_ALERT_THRESHOLD, planRefusal, REFUSALS } from "./rules.js";
import {
  Evaluator,
  gpuCount,
  gpuCountPrices,
  label,
  usdh as usdPerHour,
  MAX_ENGINES,
  minEngines,
  searchFleet,
  type ShapeOutcome,
  uncachedPromptTokens,
} from "./search.js";
import { p90Interval, sloOf, targetsOf } from "./slo.js";
import { routerSection, stackSection, offloadConfig, OBSERVABILITY } from "./sections.js";
import {
  ALERT_FOR,
  fleetJson,
  GATE_PROMQL,
  impactOf,
  PUBLISHED,
  RECOMMENDED_GPU_MEMORY_UTILIZATION,
  type Plan,
  type PlanOutcome,
} from "./plan-json.js";
import { rightSize, type RightSize } from "./right-size.js";
import { loraSummary, planLora, withLoraFlags } from "./lora.js";
import { noFleetReason, summaryLines, sweepNote, usdh } from "./summary.js";

export { SWEEP_SCALES } from "./sections.js";
export type { SweepPoint } from "./decide.js";

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
  if (r0.scenario.workload.lora && !targets)
    throw new PlanInputError("slo: needed to choose max_loras and max_cpu_loras for workload.lora");
  if (r0.scenario.workload.lora && fleetOf(r0).pd)
    throw new PlanInputError(
      "fleet.disaggregated: LoRA is planned on aggregated engines; drop fleet.disaggregated for workload.lora",
    );
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
      // LoRA is planned on aggregated engines (the LoRA fleet simulator has no P/D roles)
      const layouts = r0.scenario.workload.lora ? "agg" : (opts.layouts ?? "both");
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
    if (r0.scenario.workload.lora && targets) progress.set(`choosing max_loras at ${label(fleet)}`);
    const lora =
      r0.scenario.workload.lora && targets ? planLora(ev.scenario(fleet).r, fleet.engines, targets) : null;
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
      lora,
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
      router: withLoraFlags(routerSection(policy, sessionKeyFor(r, generator), policyReadsKv(policy)), lora),
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
    if (lora) plan.summary.push(loraSummary(lora));
    return { ok: true, plan };
  } finally {
    progress.clear();
    if (!opts.pool) await pool.close();
  }
}
