// The plan as one Markdown page.
import type { OffloadMode } from "../fleet/build.js";
import type { Plan } from "./plan.js";

const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
const s1 = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export function planMarkdown(p: Plan): string {
  const out: string[] = [];
  out.push(`# Plan: ${p.scenario}`, "");
  out.push("## Stack", "");
  out.push(
    p.stack.kind === "helm-chart"
      ? `**Helm chart** \`${p.stack.chart}\`.`
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
  if (p.refusals.length) {
    out.push("", "### Refused along the way", "");
    for (const f of p.refusals) out.push(`- \`${f.rule}\`: ${f.reason}`);
  }
  out.push("", "## HBM monitoring", "");
  out.push(
    `- \`--gpu-memory-utilization ${p.hbm.gpu_memory_utilization}\` (KV cache ≈ ${p.hbm.kv_tokens_per_engine.toLocaleString("en-US")} tokens = ${p.hbm.kv_gb_per_engine.toFixed(1)} GB per engine)`,
  );
  out.push(
    `- alert (pre-preemption signal) for ${p.hbm.alert_for}: \`${p.hbm.alert_promql}\` (\`--emit-rules\` writes it as a PrometheusRule)`,
  );
  out.push("", "## Router integration", "");
  out.push(
    p.router.policy === "session"
      ? `- policy \`${p.router.policy}\`, session key: ${p.router.session_key}`
      : `- policy \`${p.router.policy}\``,
  );
  for (const f of p.router.engine_flags) out.push(`- engine flag: \`${f}\``);
  for (const [k, v] of Object.entries(p.router.engine_env)) out.push(`- engine env: \`${k}=${v}\``);
  for (const n of p.router.notes) out.push(`- ${n}`);
  out.push("", "## Observability", "");
  for (const o of p.observability) out.push(`- ${o}`);
  out.push("", `## Expected impact (simulated on your workload, routed by \`${p.router.policy}\`)`, "");
  out.push("| option | throughput | vs none | TTFT p50 | TTFT p90 | mean E2E | KV P99 | preemptions | |");
  out.push("|---|---|---|---|---|---|---|---|---|");
  for (const k of ["none", "native", "lmcache"] as OffloadMode[]) {
    const i = p.impact[k];
    out.push(
      `| ${k} | ${Math.round(i.throughput_tok_s).toLocaleString("en-US")} tok/s | ${pct(i.gain_vs_none)} | ${s1(i.ttft_p50_ms)} | ${s1(i.ttft_p90_ms)} | ${s1(i.e2e_mean_ms)} | ${(i.kv_usage_p99 * 100).toFixed(1)}% | ${i.preemptions} | ${i.refused ? "refused" : k === p.kv_offload.choice ? "**chosen**" : ""} |`,
    );
  }
  const pub = p.published;
  out.push(
    "",
    `Published 16× H100 shape (${pub.source}): when KV exceeds HBM, native ${pct(pub.high_cache.native_gain)} and LMCache ${pct(pub.high_cache.lmcache_gain)} throughput; when it fits, native ${pct(pub.low_cache.native_gain)} and LMCache ${pct(pub.low_cache.lmcache_gain)}. Note: ${pub.note}.`,
  );
  out.push("", "## KV-spill report", "");
  const sp = p.kv_spill;
  out.push(
    `With ${sp.option}: ${sp.reprefill_avoided_tokens.toLocaleString("en-US")} prompt tokens loaded instead of re-prefilled, throughput ${pct(sp.throughput_gain)}. Break-even: ${sp.break_even_kv_usage_p99 === null ? "offload did not pay anywhere in the sweep" : `offload pays (≥ +3%) once the baseline KV usage P99 reaches ${(sp.break_even_kv_usage_p99 * 100).toFixed(1)}%${sp.no_gain_below_kv_usage_p99 === null ? "" : ` (it did not at ${(sp.no_gain_below_kv_usage_p99 * 100).toFixed(1)}%)`}`}.`,
  );
  if (sp.sweep.length) {
    out.push(
      "",
      "| KV size × | KV tokens/engine | baseline KV P99 | baseline KV mean | preemptions | gain |",
      "|---|---|---|---|---|---|",
    );
    for (const s of sp.sweep)
      out.push(
        `| ${s.kv_scale} | ${s.kv_tokens_per_engine.toLocaleString("en-US")} | ${(s.baseline_kv_usage_p99 * 100).toFixed(1)}% | ${(s.baseline_kv_usage_mean * 100).toFixed(1)}% | ${s.baseline_preemptions} | ${pct(s.gain)} |`,
      );
  }
  out.push("", "## The gate", "");
  out.push(`${p.gate.metric} must stay ${p.gate.pass_if}:`, "", "```promql", p.gate.promql, "```", "");
  return out.join("\n");
}
