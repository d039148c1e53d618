// What `predictive`'s late binding gives and costs, in the fleet simulator: each shape run with every
// request bound at once (`--predictive-queued-prompts 0`) and with late binding (`queuedPrompts` 2, the
// default), the same seeds. The shapes: the shared-prefix bursts under KV pressure of the live
// comparison with vllm-router (4 × L4, open loop), and closed loops of random prompts on the same
// engines, from moderate to far past what they serve (where holding requests in the router would move
// their wait from the engines' batches into the router's queue; `--min-cached-share 0` shows it).
//   node dist/bench/routing/late-binding.js [--seeds 1,2,3] [--queued-prompts 2] [--max-hold-ms 5000]
//     [--min-cached-share 0.2]
import { readFileSync } from "node:fs";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { LATE_BINDING_DEFAULTS } from "../../src/routing/index.js";
import { fleetReport } from "../../src/fleet/report.js";
import { parseScenarioText } from "../../src/fleet/scenario.js";
import { randomWorkload } from "../../src/workload/random.js";

const specs: FlagSpecs = {
  seeds: { type: "string", default: "1,2,3", help: "seeds, pooled by their mean" },
  "queued-prompts": { type: "int", default: 2, help: "late binding's setting to compare with 0" },
  "max-hold-ms": { type: "number", default: 5_000, help: "late binding's longest hold, ms" },
  "min-cached-share": {
    type: "number",
    default: LATE_BINDING_DEFAULTS.minCachedShare,
    help: "late binding holds only while the router's picks find this share of their prompts cached",
  },
};
const { flags } = benchFlags(specs);
const seeds = String(flags.seeds).split(",").map(Number);
const on = Number(flags["queued-prompts"]);
const window = Number(flags["max-hold-ms"]);
const minCachedShare = Number(flags["min-cached-share"]);
const scenario = readFileSync(
  new URL("../../../examples/scenarios/shared-prefix-kv-pressure-4xl4.yaml", import.meta.url),
  "utf8",
);

interface Shape {
  name: string;
  options: (seed: number) => ReturnType<typeof fleetOptionsFor>;
}

/** the KV-pressure scenario at `qps` with `groups` prefix groups */
const shared = (name: string, qps: number, groups: number): Shape => ({
  name,
  options: (seed) =>
    fleetOptionsFor(
      parseScenarioText(
        scenario
          .replace(/qps: 6/, `qps: ${qps}`)
          .replace(/num_groups: 40/, `num_groups: ${groups}`)
          .replace(/seed: 1/, `seed: ${seed}`),
        name,
      ),
      "none",
    ),
});

/** a closed loop of `clients` sending random prompts of `input` ± 50% tokens, `output` tokens back */
const closed = (input: number, output: number, clients: number): Shape => ({
  name: `random ${input}/${output}, ${clients} clients`,
  options: (seed) => {
    const o = shared("base", 6, 40).options(seed);
    return {
      ...o,
      workload: randomWorkload({ inputLen: input, outputLen: output, rangeRatio: 0.5, seed, count: 2000 }),
      qps: Infinity,
      concurrency: clients,
      maxRequests: 2000,
    };
  },
});

const shapes: Shape[] = [
  shared("40 groups, 6 req/s", 6, 40),
  shared("40 groups, 4 req/s", 4, 40),
  shared("20 groups, 6 req/s", 6, 20),
  closed(500, 16, 64),
  closed(2000, 128, 32),
  closed(300, 16, 256),
  closed(500, 16, 256),
  closed(100, 16, 256),
];

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

function figures(s: Shape, queuedPrompts: number) {
  const runs = seeds.map((seed) => {
    const o = { ...s.options(seed), lateBinding: { queuedPrompts, maxHoldMs: window, minCachedShare } };
    const b = fleetReport(o, simulateFleet(o), 0).bench;
    return [Number(b.output_throughput), Number(b.median_ttft_ms), Number(b.p90_ttft_ms)] as const;
  });
  return [0, 1, 2].map((k) => mean(runs.map((r) => r[k]!)));
}

console.log(
  `# late binding (queuedPrompts ${on}, held at most ${window} ms, while picks find ${minCachedShare} cached) against binding at once, 4 × L4, seeds ${seeds.join(",")}\n`,
);
console.log("| shape | bound at once: tok/s, TTFT p50 / p90 ms | late binding | ratio (tok/s, p50, p90) |");
console.log("|---|---|---|---|");
for (const s of shapes) {
  const [t0, p50a, p90a] = figures(s, 0);
  const [t1, p50b, p90b] = figures(s, on);
  console.log(
    `| ${s.name} | ${t0!.toFixed(1)}, ${fmt(p50a!)} / ${fmt(p90a!)} | ${t1!.toFixed(1)}, ${fmt(p50b!)} / ${fmt(p90b!)} | ` +
      `${(t1! / t0!).toFixed(2)}× ${(p50a! / p50b!).toFixed(2)}× ${(p90a! / p90b!).toFixed(2)}× |`,
  );
}
console.log("\nratios: higher is better (TTFT: bound at once over late binding)");
