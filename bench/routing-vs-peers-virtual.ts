// The shared-prefix shapes of bench/routing-vs-peers.ts in virtual time: the same engines (4 × L4,
// Llama-3.1-8B, 16k context), workload and arrivals, run by the fleet simulator with our policies and
// vllm-router's cache_aware as the routing library's faithful baseline (`vllm-router-cache-aware`), so
// the live run's ordering of policies can be checked against what `switchyard simulate` predicts, and
// ideas tried in seconds before the live run. Seeds are pooled by their mean.
//   node dist/bench/routing-vs-peers-virtual.js [--shapes kv-pressure,kv-pressure-light,kv-half]
//     [--policies predictive,prefix,vllm-router-cache-aware,round-robin] [--seeds 1,2,3,4,5] [--json FILE]
import { readFileSync, writeFileSync } from "node:fs";
import { parseFlags, type FlagSpecs } from "../src/config/args.js";
import { runScenario } from "../src/fleet/run.js";
import { parseScenarioText } from "../src/fleet/scenario.js";

/** shape → [groups, req/s], as the live benchmark's shapes */
const SHAPES: Record<string, [number, number]> = {
  "kv-pressure": [40, 6],
  "kv-pressure-light": [40, 4],
  "kv-half": [20, 6],
};

const specs: FlagSpecs = {
  shapes: { type: "string", default: Object.keys(SHAPES).join(","), help: "" },
  policies: { type: "string", default: "predictive,prefix,vllm-router-cache-aware,round-robin", help: "" },
  seeds: { type: "string", default: "1,2,3,4,5", help: "" },
  json: { type: "string", help: "also write the rows here" },
};
const { flags } = parseFlags(process.argv.slice(2), specs);
const list = (k: string) => String(flags[k]).split(",").filter(Boolean);
const base = readFileSync(
  new URL("../../examples/scenarios/shared-prefix-kv-pressure-4xl4.yaml", import.meta.url),
  "utf8",
);

interface Row {
  shape: string;
  policy: string;
  outputTps: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
  gpuHitRate: number;
}
const rows: Row[] = [];
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

for (const shape of list("shapes")) {
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown shape ${shape} (known: ${Object.keys(SHAPES).join(", ")})`);
  const [groups, qps] = s;
  console.log(`\n## ${shape}: ${groups} groups x 6 prompts, Poisson ${qps} req/s (seeds ${list("seeds")})\n`);
  console.log("| policy | output tok/s | TTFT p50 ms | TTFT p90 ms | GPU hit rate |\n|---|---|---|---|---|");
  for (const policy of list("policies")) {
    const text = base
      .replace(/policy: predictive/, `policy: ${policy}`)
      .replace(/qps: 6/, `qps: ${qps}`)
      .replace(/num_groups: 40/, `num_groups: ${groups}`);
    const runs = list("seeds").map((seed) => {
      const r = parseScenarioText(text.replace(/seed: 1/, `seed: ${seed}`), shape);
      return runScenario(r, "none");
    });
    const row: Row = {
      shape,
      policy,
      outputTps: mean(runs.map((r) => Number(r.bench.output_throughput))),
      ttftP50Ms: mean(runs.map((r) => Number(r.bench.median_ttft_ms))),
      ttftP90Ms: mean(runs.map((r) => Number(r.bench.p90_ttft_ms))),
      gpuHitRate: mean(runs.map((r) => r.hit_rates.gpu)),
    };
    rows.push(row);
    console.log(
      `| ${policy} | ${row.outputTps.toFixed(1)} | ${fmt(row.ttftP50Ms)} | ${fmt(row.ttftP90Ms)} | ${(100 * row.gpuHitRate).toFixed(1)}% |`,
    );
  }
  const of = rows.filter((r) => r.shape === shape);
  const order = (k: keyof Row, up: boolean) =>
    [...of].sort((a, b) => ((a[k] as number) - (b[k] as number)) * (up ? -1 : 1)).map((r) => r.policy);
  console.log(`\nordering: throughput ${order("outputTps", true).join(" > ")}`);
  console.log(`          TTFT p50 ${order("ttftP50Ms", false).join(" < ")}`);
  console.log(`          TTFT p90 ${order("ttftP90Ms", false).join(" < ")}`);
}
if (flags.json) writeFileSync(String(flags.json), JSON.stringify({ rows }, null, 2));
