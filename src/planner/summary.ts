// The plan in words: its first lines (the verdict: SLO met or not and by how much, the fleet, its cost,
// the budget), why no fleet met the SLO, and why the KV-size sweep ran shorter than the impact table.
import type { Decision, SweepPoint } from "./decide.js";
import { choiceOf, type FleetJson, type Plan } from "./plan-json.js";
import { usd } from "./prices.js";
import { label, type ShapeOutcome } from "./search.js";
import { secs, type Predicted, type Slo, type SloTargets } from "./slo.js";

export const usdh = (x: number | null) => (x === null ? "no price" : `${usd(x)}/h`);

/** "TTFT p90 1.21 s (≤ 1.80 s)" for every bound */
function within(p: Predicted, t: SloTargets): string {
  const parts = [
    `TTFT p90 ${secs(p.ttft_p90_ms)} (≤ ${secs(t.ttft)})`,
    `TPOT p90 ${secs(p.tpot_p90_ms)} (≤ ${secs(t.tpot)})`,
  ];
  if (t.e2e !== null) parts.push(`E2E p90 ${secs(p.e2e_p90_ms)} (≤ ${secs(t.e2e)})`);
  return parts.join(", ");
}

/** why the sweep ran shorter than the impact table, and how far its ×1 row is from the table's runs */
export function sweepNote(
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

export function noFleetReason(slo: Slo, shapes: readonly ShapeOutcome[]): string {
  const notes = shapes
    .map((s) => `${s.shape.gpu} TP ${s.shape.tp}: ${s.note}`)
    .slice(0, 4)
    .join("; ");
  return `slo: no fleet meets TTFT p90 ≤ ${secs(slo.ttft_p90_ms)} and TPOT p90 ≤ ${secs(slo.tpot_p90_ms)}${slo.e2e_p90_ms !== undefined ? ` and E2E p90 ≤ ${secs(slo.e2e_p90_ms)}` : ""} with ${Math.round(slo.headroom * 100)}% headroom (${notes || "no shape fits"})`;
}

export function summaryLines(p: Plan, d: Decision, overBudget: string | null): string[] {
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
