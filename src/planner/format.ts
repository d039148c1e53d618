// The plan as one Markdown page. The verdict comes first (SLO met or not, by how much, the fleet and
// its cost); every figure below it is read from the same runs as the JSON.
import type { OffloadMode } from "../fleet/build.js";
import { frontSvg } from "./front.js";
import { choiceOf, type FleetJson, type Plan } from "./plan-json.js";
import { loraSection } from "./lora.js";
import { label } from "./search.js";
import { usd } from "./prices.js";
import { secs } from "./slo.js";

const pct = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x * 100).toFixed(1)}%`;
const p1 = (x: number) => `${(x * 100).toFixed(1)}%`;
const tok = (n: number) => Math.round(n).toLocaleString("en-US");

function sloSection(p: Plan, out: string[]): void {
  const s = p.slo;
  if (!s) return;
  const t = s.targets_ms;
  out.push("## SLO", "");
  out.push(
    `Bounds (p90): TTFT ${secs(s.ttft_p90_ms)}, TPOT ${secs(s.tpot_p90_ms)}${s.e2e_p90_ms !== undefined ? `, E2E ${secs(s.e2e_p90_ms)}` : ""}; the plan keeps ${Math.round(s.headroom * 100)}% headroom, so the simulated p90s must stay within TTFT ${secs(t.ttft)}, TPOT ${secs(t.tpot)}${t.e2e !== null ? `, E2E ${secs(t.e2e)}` : ""}.`,
    "",
  );
  out.push(
    "| fleet | cost | TTFT p90 | TPOT p90 | E2E p90 | throughput | SLO |",
    "|---|---|---|---|---|---|---|",
  );
  const f = p.fleet;
  // a stopped run's E2E and throughput cover only the requests finished by then: not shown
  const row = (name: string, cost: number | null, q: Plan["predicted"], verdict: string, stopped = false) =>
    out.push(
      `| ${name} | ${cost === null ? "—" : `${usd(cost)}/h`} | ${secs(q.ttft_p90_ms)} | ${secs(q.tpot_p90_ms)} | ${stopped ? "—" : secs(q.e2e_p90_ms)} | ${stopped ? "—" : `${tok(q.throughput_tok_s)} tok/s`} | ${verdict}${stopped ? `; stopped after ${q.requests} requests` : ""} |`,
    );
  const name = (x: FleetJson) =>
    x.disaggregated
      ? `${label(choiceOf(x))} (${x.gpus} GPUs)`
      : `${x.engines} × ${x.gpu.toUpperCase()} TP ${x.tensor_parallel_size}`;
  row(`**${name(f)}** (this plan)`, p.cost_usd_per_hour, p.predicted, p.slo_met ? "met" : "**missed**");
  const fw = p.one_engine_fewer;
  if (fw)
    row(
      name(fw.fleet),
      fw.cost_usd_per_hour,
      fw.predicted,
      fw.slo_met ? "met" : `missed${fw.misses.length ? ` (${fw.misses.join(", ")})` : ""}`,
      fw.stopped_early === true,
    );
  const pf = p.one_prefill_fewer;
  if (pf)
    row(
      name(pf.fleet),
      pf.cost_usd_per_hour,
      pf.predicted,
      pf.slo_met ? "met" : `missed${pf.misses.length ? ` (${pf.misses.join(", ")})` : ""}`,
      pf.stopped_early === true,
    );
  const u = p.undersized?.meets_slo_with;
  if (u) row(name(u.fleet), u.cost_usd_per_hour, u.predicted, "met");
  out.push("");
  out.push(
    `A run that is certain to miss (more than 10% of its requests over a bound) is stopped there; its percentiles cover the requests finished by then. ${p.simulation.confidence[0]!.toUpperCase()}${p.simulation.confidence.slice(1)}.`,
  );
  if (p.search) {
    out.push("", "### Fleet search", "");
    out.push("| GPU | TP | fewest engines meeting the SLO | cost | note |", "|---|---|---|---|---|");
    for (const x of p.search.shapes)
      out.push(
        `| ${x.gpu} | ${x.tensor_parallel_size} | ${x.engines ?? "—"} | ${x.cost_usd_per_hour === null ? "—" : `${usd(x.cost_usd_per_hour)}/h`} | ${x.note} |`,
      );
    const pd = p.disaggregated_search;
    if (pd) {
      out.push("", "### Disaggregated (P/D) layouts", "");
      out.push(
        "Prefill and decode engines sized apart, the router in P/D mode, every point simulated: decode engines against the TPOT bound with a generous prefill pool, then prefill engines against the whole SLO.",
        "",
        "| GPU | prefill TP | decode TP | fewest prefill + decode engines | cost | note |",
        "|---|---|---|---|---|---|",
      );
      for (const x of pd)
        out.push(
          `| ${x.gpu} | ${x.prefill_tensor_parallel_size || "—"} | ${x.decode_tensor_parallel_size || "—"} | ${x.prefill_engines !== null && x.decode_engines !== null ? `${x.prefill_engines}P + ${x.decode_engines}D` : "—"} | ${x.cost_usd_per_hour === null ? "—" : `${usd(x.cost_usd_per_hour)}/h`} | ${x.note} |`,
        );
    }
    out.push("", `${p.search.runs} fleet simulations in all. Prices: ${p.prices.source}.`);
  }
  out.push("");
  frontSection(p, out);
}

function frontSection(p: Plan, out: string[]): void {
  const f = p.front;
  if (f.points.length === 0) return;
  out.push("## Throughput against interactivity", "");
  out.push(
    `Every layout simulated to the end (${f.points.length}), by output tokens/s per GPU against tokens/s per user (1000 ÷ mean TPOT); **front** marks the Pareto front (no layout tried is better on both)${f.slo_tok_s_per_user !== null ? `, and layouts left of ${f.slo_tok_s_per_user.toFixed(1)} tokens/s per user cannot meet the TPOT bound` : ""}.`,
    "",
    `![front](data:image/svg+xml;base64,${Buffer.from(frontSvg(p.scenario, f)).toString("base64")})`,
    "",
    "| layout | GPUs | offload | output tok/s per GPU | tok/s per user | TTFT p90 | TPOT p90 | SLO | |",
    "|---|---|---|---|---|---|---|---|---|",
  );
  for (const x of [...f.points].reverse())
    out.push(
      `| ${x.chosen ? `**${x.layout}**` : x.layout} | ${x.gpus} | ${x.offload} | ${tok(x.output_tok_s_per_gpu)} | ${x.tok_s_per_user.toFixed(1)} | ${secs(x.ttft_p90_ms)} | ${secs(x.tpot_p90_ms)} | ${x.slo_met === null ? "—" : x.slo_met ? "met" : "missed"} | ${[x.on_front ? "front" : "", x.chosen ? "**chosen**" : ""].filter(Boolean).join(", ")} |`,
    );
  out.push("");
}

export function planMarkdown(p: Plan): string {
  const out: string[] = [];
  out.push(`# Plan: ${p.scenario}`, "");
  // the words before the first colon in bold; a line without one, whole
  for (const l of p.summary)
    out.push(l.includes(":") ? `**${l.split(":")[0]}:**${l.slice(l.indexOf(":") + 1)}` : `**${l}**`, "");
  sloSection(p, out);
  out.push("## Stack", "");
  out.push(
    p.stack.kind === "helm-chart"
      ? `**Helm chart** \`${p.stack.chart}\`, ${p.fleet.disaggregated ? `${p.fleet.disaggregated.prefill_engines} prefill engine${p.fleet.disaggregated.prefill_engines === 1 ? "" : "s"} at TP ${p.fleet.disaggregated.prefill_tensor_parallel_size} and ${p.fleet.disaggregated.decode_engines} decode engine${p.fleet.disaggregated.decode_engines === 1 ? "" : "s"} at TP ${p.fleet.disaggregated.decode_tensor_parallel_size} on ${p.fleet.gpu.toUpperCase()} (${p.fleet.gpus} GPUs), the router in P/D mode (docs/disaggregated.md)` : `${p.fleet.engines} × ${p.fleet.gpu.toUpperCase()} engine${p.fleet.engines === 1 ? "" : "s"} at TP ${p.fleet.tensor_parallel_size}`}${p.fleet.max_model_len !== undefined ? `, \`--max-model-len ${p.fleet.max_model_len}\` (the model's full context does not fit; sized to the workload)` : ""}.`
      : "**Single engine + simple proxy** (no chart).",
  );
  for (const o of p.stack.operators) out.push(`- ${o}`);
  for (const n of p.stack.notes) out.push(`- ${n}`);
  out.push("", "## KV offload", "");
  out.push(`**${p.kv_offload.choice}** — \`${p.kv_offload.rule}\`: ${p.kv_offload.reason}`);
  const cfg = Object.entries(p.kv_offload.config);
  if (cfg.length) {
    out.push("");
    for (const [k, v] of cfg) out.push(`- \`${k}\` = \`${String(v)}\``);
  }
  if (p.kv_l2) {
    const l = p.kv_l2;
    out.push("", "### Shared tier (LMCache's L2)", "");
    out.push(`**${l.choice}** — \`${l.rule}\`: ${l.reason}.`);
    out.push(
      "",
      `- working set ${l.working_set_gib} GiB (${l.working_set_source}); the tier holds ${l.needed_gib} GiB at least; one node gives it ${l.node_memory_gib} GiB; HA ${l.ha ? "required" : "not required"}`,
    );
    if (l.cluster)
      out.push(
        `- Helm: \`engines.offload.l2.type: cluster\`, \`shards: ${l.cluster.shards}\`, \`replicasPerShard: ${l.cluster.replicas_per_shard}\`, \`maxMemoryGB: ${l.cluster.memory_per_shard_gib}\` (${l.cluster.nodes} pods); simulated as one shared tier of ${l.size_gib} GiB`,
      );
    else
      out.push(
        `- Helm: \`engines.offload.l2.type: cache-server\`, \`cacheServer.maxMemory: ${l.size_gib}GiB\``,
      );
  }
  if (p.refusals.length) {
    out.push("", "### Refused along the way", "");
    for (const f of p.refusals) out.push(`- \`${f.rule}\`: ${f.reason}`);
  }
  out.push("", "## HBM monitoring", "");
  out.push(
    `- \`--gpu-memory-utilization ${p.hbm.gpu_memory_utilization}\` (KV cache ≈ ${tok(p.hbm.kv_tokens_per_engine)} tokens = ${p.hbm.kv_gb_per_engine.toFixed(1)} GB per engine)`,
  );
  out.push(
    `- alert (pre-preemption signal) for ${p.hbm.alert_for}: \`${p.hbm.alert_promql}\` (\`--emit-rules\` writes it as a PrometheusRule, \`--emit-prometheus-rules\` as a plain rule file)`,
  );
  out.push("", "## Router integration", "");
  const routing = p.decisions.find((d) => d.rule.startsWith("select.router."));
  out.push(
    p.router.policy === "session"
      ? `- policy \`${p.router.policy}\`, session key: ${p.router.session_key}`
      : `- policy \`${p.router.policy}\``,
  );
  if (routing) out.push(`- \`${routing.rule}\`: ${routing.reason}`);
  for (const f of p.router.engine_flags) out.push(`- engine flag: \`${f}\``);
  for (const [k, v] of Object.entries(p.router.engine_env)) out.push(`- engine env: \`${k}=${v}\``);
  for (const n of p.router.notes) out.push(`- ${n}`);
  if (p.lora) out.push("", ...loraSection(p.lora));
  out.push("", "## Observability", "");
  for (const o of p.observability) out.push(`- ${o}`);
  out.push(
    "",
    `## Expected impact (simulated on your workload: ${p.fleet.engines} engines, ${p.simulation.requests} requests, routed by \`${p.router.policy}\`)`,
    "",
  );
  out.push(
    "| option | throughput | vs none | TTFT p50 | TTFT p90 | TPOT p90 | mean E2E | KV P99 | preemptions | |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|");
  for (const k of ["none", "native", "lmcache"] as OffloadMode[]) {
    const i = p.impact[k];
    out.push(
      `| ${k} | ${tok(i.throughput_tok_s)} tok/s | ${pct(i.gain_vs_none)} | ${secs(i.ttft_p50_ms)} | ${secs(i.ttft_p90_ms)} | ${secs(i.tpot_p90_ms)} | ${secs(i.e2e_mean_ms)} | ${p1(i.kv_usage_p99)} | ${i.preemptions} | ${i.refused ? "refused" : k === p.kv_offload.choice ? "**chosen**" : ""} |`,
    );
  }
  const pub = p.published;
  out.push(
    "",
    `Published 16× H100 shape (${pub.source}): when KV exceeds HBM, native ${pct(pub.high_cache.native_gain)} and LMCache ${pct(pub.high_cache.lmcache_gain)} throughput; when it fits, native ${pct(pub.low_cache.native_gain)} and LMCache ${pct(pub.low_cache.lmcache_gain)}. Note: ${pub.note}.`,
  );
  spillSection(p, out);
  out.push("", "## The gate", "");
  out.push(`${p.gate.metric} must stay ${p.gate.pass_if}:`, "", "```promql", p.gate.promql, "```", "");
  return out.join("\n");
}

function spillSection(p: Plan, out: string[]): void {
  out.push("", "## KV-spill report", "");
  const sp = p.kv_spill;
  const at = (x: {
    kv_scale: number;
    kv_tokens_per_engine: number;
    baseline_kv_usage_p99: number;
    baseline_preemptions: number;
    gain: number;
  }) =>
    `${x.kv_scale}× the KV cache (${tok(x.kv_tokens_per_engine)} tokens per engine; baseline KV P99 ${p1(x.baseline_kv_usage_p99)}, ${x.baseline_preemptions} preemptions; gain ${pct(x.gain)})`;
  const be = sp.break_even;
  const verdict =
    sp.sweep.length === 0
      ? "no sweep run (--no-sweep)"
      : be.pays_at === null
        ? "offload did not gain ≥ +3% at any KV size swept"
        : `offload pays (≥ +3%) from ${at(be.pays_at)} down${be.not_at ? `; at ${at(be.not_at)} it does not` : ""}`;
  out.push(
    `With ${sp.option}: ${tok(sp.reprefill_avoided_tokens)} prompt tokens loaded instead of re-prefilled, throughput ${pct(sp.throughput_gain)} (the impact table's runs). Break-even: ${verdict}.`,
  );
  if (sp.sweep.length) {
    out.push(
      "",
      sp.sweep_note
        ? `Note: ${sp.sweep_note}.`
        : `Every sweep point runs the impact table's load (${p.simulation.requests} requests); the 1× row is the impact table's own runs.`,
      "",
      "| KV size × | KV tokens/engine | baseline KV P99 | baseline KV mean | preemptions | gain |",
      "|---|---|---|---|---|---|",
    );
    for (const s of sp.sweep)
      out.push(
        `| ${s.kv_scale} | ${tok(s.kv_tokens_per_engine)} | ${p1(s.baseline_kv_usage_p99)} | ${p1(s.baseline_kv_usage_mean)} | ${s.baseline_preemptions} | ${pct(s.gain)} |`,
      );
  }
}
