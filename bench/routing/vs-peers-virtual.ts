// The shared-prefix and agentic shapes of bench/routing/vs-peers.ts in virtual time: the same engines
// (4 × L4, Llama-3.1-8B, 16k context), workload and arrivals (routing-vs-peers-shapes.ts), run by the
// fleet simulator with our policies and vllm-router's cache_aware as the routing library's faithful
// baseline (`vllm-router-cache-aware`), so the live run's ordering of policies can be checked against
// what `switchyard simulate` predicts, and ideas tried in seconds before the live run. Seeds are pooled
// by their mean, or by their median (`--pool median`, as routing/vs-peers.js --seeds pools its runs: a
// run where one placement went wrong weighs on a mean as on no median). The live bench's own seed is
// 0: `--seeds 0` sends the very sessions it sent. Agentic
// shapes also report input tok/s and resumed turns' TTFT; shared-prefix shapes the prompts that found
// less than their group's prompt cached, and the TTFT of the rest (the floor a placement works above).
//   node dist/bench/routing/vs-peers-virtual.js
//     [--shapes kv-pressure,kv-pressure-light,kv-half,multi-tenant,agentic-b2b]
//     [--policies predictive,prefix,vllm-router-cache-aware,round-robin] [--seeds 1,2,3,4,5] [--json FILE]
//     (policy `clairvoyant`: the reference placement from every engine's exact state, src/fleet/clairvoyant.ts)
//     [--trace-dir DIR]   (where trace-conversation's file is: Mooncake's FAST25-release/traces)
//     [--queued-prompts N]   (predictive's late binding; 0 binds every request at once) [--pool median]
//     [--decisions]   (each policy's decisions summed up, seeds pooled, as routing/vs-peers.js sums up
//                      the live router's at --router-log-level debug: bench/support/decision-table.ts)
//     [--tiered [--shared-gib 64] [--shared-gbps 100] [--local-cpu-gib 0.25] [--chunk-tokens 256]
//               [--engines-per-server N]]   (a server per N engines, as one per node: the router's
//                                           tier index then tells engines apart by their server)
//     [--gpu-blocks N]   (each engine's KV blocks, vLLM's num_gpu_blocks_override: with --tiered, a
//                        huge --shared-gib and --shared-gbps and --chunk-tokens 64, an ideal cache that
//                        holds every block ever computed, for every engine, at no load time)
//     The tiered fleet: the same engines, each with LMCache's local CPU tier, sharing one LMCache cache
//     server (offload.shared_server) that every engine looks prompts up in and stores to. Its policies
//     (default predictive+tier,predictive,vllm-router-cache-aware,round-robin): `predictive+tier` is
//     predictive reading the server's tier index (simulation.tier_aware), `predictive` the same policy
//     blind to the server (it sees each engine's GPU and CPU tier), as the live router without
//     routing.cacheServers.
import { readFileSync, writeFileSync } from "node:fs";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { fleetReport } from "../../src/fleet/report.js";
import { parseScenarioText, withTrace } from "../../src/fleet/scenario.js";
import type { PolicyName } from "../../src/routing/index.js";
import { agenticOptions, agenticWorkload } from "../../src/workload/agentic.js";
import { resumedFigures } from "../../src/bench/report.js";
import { percentile } from "../../src/workload/stats.js";
import { parse, stringify } from "yaml";
import { shapeOf, type Shape } from "../support/routing-vs-peers-shapes.js";
import { decisionTable, type DecisionRow } from "../support/decision-table.js";

const specs: FlagSpecs = {
  shapes: {
    type: "string",
    default: "kv-pressure,kv-pressure-light,kv-half,multi-tenant,agentic-b2b",
    help: "",
  },
  policies: { type: "string", help: "(default: the untiered or the tiered fleet's list, above)" },
  seeds: { type: "string", default: "1,2,3,4,5", help: "" },
  json: { type: "string", help: "also write the rows here" },
  pool: { type: "string", default: "mean", help: "mean or median: how seeds are pooled" },
  decisions: {
    type: "boolean",
    default: false,
    help: "also each policy's decisions summed up as the live bench sums up its router's",
  },
  "trace-dir": {
    type: "string",
    default: "traces",
    help: "where the trace shapes' files are (Mooncake's FAST25-release/traces)",
  },
  "queued-prompts": {
    type: "int",
    help: "predictive's late binding (the router's --predictive-queued-prompts)",
  },
  tiered: { type: "boolean", default: false, help: "the engines share one LMCache cache server" },
  "shared-gib": { type: "number", default: 64, help: "tiered: the cache server's memory, GiB" },
  "shared-gbps": { type: "number", default: 100, help: "tiered: each engine's link to it, Gbit/s" },
  "engines-per-server": {
    type: "int",
    help: "tiered: a cache server per this many engines (a server per node); default: one for all",
  },
  "chunk-tokens": { type: "int", default: 256, help: "tiered: LMCache's chunk size, tokens" },
  "gpu-blocks": {
    type: "int",
    help: "each engine's KV blocks (num_gpu_blocks_override); default: what fits",
  },
  "local-cpu-gib": {
    type: "number",
    default: 0.25,
    help: "tiered: each engine's LMCache local CPU tier, GiB",
  },
};
const { flags } = benchFlags(specs);
const list = (k: string) => String(flags[k]).split(",").filter(Boolean);
const tiered = flags.tiered === true;
/** predictive reading the shared server's tier index (the tiered fleet's policy name) */
const TIER_AWARE = "predictive+tier";
const policies =
  flags.policies !== undefined
    ? list("policies")
    : tiered
      ? [TIER_AWARE, "predictive", "vllm-router-cache-aware", "round-robin"]
      : ["predictive", "prefix", "vllm-router-cache-aware", "round-robin"];
if (!tiered && policies.includes(TIER_AWARE)) throw new Error(`--policies: ${TIER_AWARE} needs --tiered`);
/** the fields of the shared-prefix scenario a shape sets (the rest stay as the file has them) */
interface BaseScenario {
  fleet: { num_gpu_blocks_override?: number };
  workload: { qps: number; prompt_tokens: number };
  simulation: {
    policy: string;
    seed: number;
    queued_prompts?: number;
    tier_aware?: boolean;
    offload?: {
      mode: "lmcache";
      lmcache_local_cpu_gib: number;
      lmcache_chunk_size: number;
      shared_server: { size_gib: number; bandwidth_gbps: number; engines_per_server?: number };
    };
    generator: {
      num_groups: number;
      prompts_per_group: number;
      system_prompt_len: number;
      question_len: number;
    };
  };
}
const base = parse(
  readFileSync(
    new URL("../../../examples/scenarios/shared-prefix-kv-pressure-4xl4.yaml", import.meta.url),
    "utf8",
  ),
) as BaseScenario;

interface Row {
  shape: string;
  policy: string;
  outputTps: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
  gpuHitRate: number;
  /** tiered: the share of prompt tokens loaded from the shared server */
  serverHitRate?: number;
  inputTps: number;
  /** agentic shapes: turns sent after a tool pause */
  resumedTtftP50Ms?: number;
  resumedTtftP90Ms?: number;
  /** requests a run sent (pooled over seeds) */
  requests: number;
  /** shared-prefix shapes: prompts that found less than their group's prompt cached, and the TTFT of the rest */
  prefixMisses?: number;
  cachedTtftP10Ms?: number;
  cachedTtftP50Ms?: number;
}

interface Run {
  outputTps: number;
  inputTps: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
  gpuHitRate: number;
  serverHitRate: number;
  resumedP50?: number | undefined;
  resumedP90?: number | undefined;
  requests: number;
  prefixMisses?: number;
  cachedP10?: number;
  cachedP50?: number;
}

/** one seed of a shape under a policy, on the engines of the shared-prefix scenario */
function runShape(s: Shape, policy: string, seed: number, name: string, decisions?: DecisionRow[]): Run {
  if (s.kind === "multi-round-qa") throw new Error(`${name}: no virtual rendering of multi-round QA here`);
  const sp = s.kind === "shared-prefix" ? s : undefined;
  // the base scenario with the shape's load, lengths, policy and seed set on its fields
  const doc = structuredClone(base);
  if (s.kind !== "trace") doc.workload.qps = s.qps;
  doc.simulation.policy = policy === TIER_AWARE ? "predictive" : policy;
  doc.simulation.seed = seed;
  if (tiered) {
    doc.simulation.tier_aware = policy === TIER_AWARE;
    doc.simulation.offload = {
      mode: "lmcache",
      lmcache_local_cpu_gib: Number(flags["local-cpu-gib"]),
      lmcache_chunk_size: Number(flags["chunk-tokens"]),
      shared_server: {
        size_gib: Number(flags["shared-gib"]),
        bandwidth_gbps: Number(flags["shared-gbps"]),
        ...(flags["engines-per-server"] !== undefined
          ? { engines_per_server: Number(flags["engines-per-server"]) }
          : {}),
      },
    };
  }
  if (flags["gpu-blocks"] !== undefined) doc.fleet.num_gpu_blocks_override = Number(flags["gpu-blocks"]);
  if (flags["queued-prompts"] !== undefined) doc.simulation.queued_prompts = Number(flags["queued-prompts"]);
  if (sp) {
    const g = doc.simulation.generator;
    g.num_groups = sp.groups;
    g.prompts_per_group = sp.promptsPerGroup ?? g.prompts_per_group;
    g.system_prompt_len = sp.systemPromptLen ?? g.system_prompt_len;
    g.question_len = sp.questionLen ?? g.question_len;
    doc.workload.prompt_tokens = g.system_prompt_len + g.question_len;
  }
  if (s.kind === "trace") {
    // the trace at its own times (the scenario's qps is not used); the generator reads the window
    (doc.simulation as Record<string, unknown>).generator = {
      name: "trace",
      trace_file: `${String(flags["trace-dir"])}/${s.file}`,
      trace_start_s: s.startS,
      trace_duration_s: s.durationS,
      trace_speed: s.speed,
      trace_block_tokens: s.blockTokens,
      trace_max_output: s.maxOutput,
    };
  }
  const text = stringify(doc);
  const o = fleetOptionsFor(
    withTrace(parseScenarioText(text, name), (p) => readFileSync(p, "utf8")),
    tiered ? "lmcache" : "none",
  );
  if (s.kind === "agentic") {
    // the live bench's agentic workload: sessions keyed by their x-session-id, as the router keys them
    o.workload = agenticWorkload(
      agenticOptions(s.preset, seed, { sessions: s.sessions, outputTokens: s.outputTokens }),
    );
    o.sessionKey = "router";
    o.maxRequests = Infinity;
  }
  // each pick as the router saw it: when (virtual s), the engine's KV as scraped, the predicted TTFT
  const picks = new Map<number, { at: number; kv: number; predictedMs: number }>();
  if (decisions)
    o.onDecision = (d) => {
      if (d.picked >= 0)
        picks.set(d.index, { at: d.at, kv: d.scrapedKvUsage[d.picked]!, predictedMs: d.ttftMs[d.picked]! });
    };
  const res = simulateFleet(o);
  if (decisions)
    for (const r of res.records) {
      const p = picks.get(r.index);
      if (!p || !r.ok) continue;
      const heldMs = p.at * 1000 - r.start;
      decisions.push({ kvUsage: p.kv, predictedMs: p.predictedMs, fromPickMs: r.ttft - heldMs, heldMs });
    }
  const rep = fleetReport(o, res, 0);
  const resumed = resumedFigures(res.records);
  // the two modes a shared-prefix run's TTFTs fall into: prompts that found their group's prompt cached
  // (its whole blocks) and the rest (first prompts of a group, evicted or moved prefixes), whose count no
  // placement brings below the groups' number, and which the engine's LRU adds to
  // (docs/design-notes/2026-11-26-routing-under-kv-pressure.md)
  let prefix: Pick<Run, "prefixMisses" | "cachedP10" | "cachedP50"> = {};
  if (sp) {
    const system = doc.simulation.generator.system_prompt_len;
    const whole = Math.floor(system / o.engine.blockSize) * o.engine.blockSize;
    const cached = res.records.filter((_, i) => res.cachedTokens[i]! >= whole).map((r) => r.ttft);
    prefix = {
      prefixMisses: res.records.length - cached.length,
      cachedP10: percentile(cached, 10),
      cachedP50: percentile(cached, 50),
    };
  }
  return {
    ...prefix,
    requests: res.records.length,
    outputTps: Number(rep.bench.output_throughput),
    inputTps: Number(rep.bench.total_input_tokens) / Number(rep.bench.duration),
    ttftP50Ms: Number(rep.bench.median_ttft_ms),
    ttftP90Ms: Number(rep.bench.p90_ttft_ms),
    gpuHitRate: rep.hit_rates.gpu,
    serverHitRate: rep.hit_rates.remote,
    resumedP50: resumed?.resumed_ttft_p50_ms,
    resumedP90: resumed?.resumed_ttft_p90_ms,
  };
}
const rows: Row[] = [];
if (flags.pool !== "mean" && flags.pool !== "median")
  throw new Error(`--pool: mean or median, got ${flags.pool}`);
/** seeds pooled: by their mean, or by their median */
const pooled =
  flags.pool === "median"
    ? (xs: number[]) => percentile(xs, 50)
    : (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

for (const shape of list("shapes")) {
  const s = shapeOf(shape);
  const what =
    s.kind === "shared-prefix"
      ? `${s.groups} groups x ${s.promptsPerGroup ?? 6} prompts (${s.systemPromptLen ?? 3000} + ${s.questionLen ?? 600} tokens), Poisson ${s.qps} req/s`
      : s.kind === "agentic"
        ? `${s.sessions} ${s.preset} agent sessions, ${s.outputTokens}-token answers, Poisson ${s.qps} req/s`
        : s.kind === "trace"
          ? `${s.file} from ${s.startS} s for ${s.durationS} s at ${s.speed}x, ${s.blockTokens} tokens a block, answers of ${s.maxOutput} at most`
          : `${s.users} users`;
  const fleet = tiered
    ? `; ${flags["engines-per-server"] !== undefined ? `each ${flags["engines-per-server"]} engines` : "engines"} sharing a ${flags["shared-gib"]} GiB cache server at ${flags["shared-gbps"]} Gbit/s, ${flags["local-cpu-gib"]} GiB local CPU each`
    : "";
  console.log(`\n## ${shape}${tiered ? " (tiered)" : ""}: ${what}${fleet} (seeds ${list("seeds")})\n`);
  const agentic = s.kind === "agentic";
  const shared = s.kind === "shared-prefix";
  console.log(
    "| policy | output tok/s | TTFT p50 ms | TTFT p90 ms | GPU hit rate |" +
      (tiered ? " server hit rate |" : "") +
      (agentic ? " input tok/s | resumed TTFT p50 ms | p90 ms |" : "") +
      (shared ? " prefix misses | prefix cached: TTFT p10 / p50 ms |" : "") +
      "\n|---|---|---|---|---|" +
      (tiered ? "---|" : "") +
      (agentic ? "---|---|---|" : "") +
      (shared ? "---|---|" : ""),
  );
  const decided = new Map<string, DecisionRow[]>();
  for (const policy of policies) {
    const d = flags.decisions ? [] : undefined;
    if (d) decided.set(policy, d);
    const runs = list("seeds").map((seed) => runShape(s, policy as PolicyName, Number(seed), shape, d));
    const row: Row = {
      shape,
      policy,
      outputTps: pooled(runs.map((r) => r.outputTps)),
      ttftP50Ms: pooled(runs.map((r) => r.ttftP50Ms)),
      ttftP90Ms: pooled(runs.map((r) => r.ttftP90Ms)),
      gpuHitRate: pooled(runs.map((r) => r.gpuHitRate)),
      ...(tiered ? { serverHitRate: pooled(runs.map((r) => r.serverHitRate)) } : {}),
      inputTps: pooled(runs.map((r) => r.inputTps)),
      requests: pooled(runs.map((r) => r.requests)),
      ...(agentic
        ? {
            resumedTtftP50Ms: pooled(runs.map((r) => r.resumedP50 ?? NaN)),
            resumedTtftP90Ms: pooled(runs.map((r) => r.resumedP90 ?? NaN)),
          }
        : {}),
      ...(shared
        ? {
            prefixMisses: pooled(runs.map((r) => r.prefixMisses ?? NaN)),
            cachedTtftP10Ms: pooled(runs.map((r) => r.cachedP10 ?? NaN)),
            cachedTtftP50Ms: pooled(runs.map((r) => r.cachedP50 ?? NaN)),
          }
        : {}),
    };
    rows.push(row);
    console.log(
      `| ${policy} | ${row.outputTps.toFixed(1)} | ${fmt(row.ttftP50Ms)} | ${fmt(row.ttftP90Ms)} | ${(100 * row.gpuHitRate).toFixed(1)}% |` +
        (tiered ? ` ${(100 * row.serverHitRate!).toFixed(1)}% |` : "") +
        (agentic
          ? ` ${fmt(row.inputTps)} | ${fmt(row.resumedTtftP50Ms!)} | ${fmt(row.resumedTtftP90Ms!)} |`
          : "") +
        (shared
          ? ` ${row.prefixMisses!.toFixed(1)} of ${row.requests} | ${fmt(row.cachedTtftP10Ms!)} / ${fmt(row.cachedTtftP50Ms!)} |`
          : ""),
    );
  }
  const of = rows.filter((r) => r.shape === shape);
  const order = (k: keyof Row, up: boolean) =>
    [...of].sort((a, b) => ((a[k] as number) - (b[k] as number)) * (up ? -1 : 1)).map((r) => r.policy);
  console.log(`\nordering: throughput ${order("outputTps", true).join(" > ")}`);
  console.log(`          TTFT p50 ${order("ttftP50Ms", false).join(" < ")}`);
  console.log(`          TTFT p90 ${order("ttftP90Ms", false).join(" < ")}`);
  for (const [policy, d] of decided)
    console.log(`\n${shape}, ${policy}: decisions\n${decisionTable(d).join("\n")}`);
}
if (flags.json) writeFileSync(String(flags.json), JSON.stringify({ rows }, null, 2));
