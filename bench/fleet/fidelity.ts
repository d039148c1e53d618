// Fidelity: the published 16× H100 tiered-prefix-cache runs (examples/scenarios/llmd-16xh100-*.yaml)
// simulated with each offload option, beside the published figures. Usage:
// node dist/bench/fleet/fidelity.js [seeds, default 1]  (prints Markdown tables and a JSON line)
import { readFileSync } from "node:fs";
import { parseScenarioText } from "../../src/fleet/scenario.js";
import { runScenario } from "../../src/fleet/run.js";
import type { FleetReport } from "../../src/fleet/report.js";

const seeds = Number(process.argv[2] ?? 1);
const published = {
  high: { none: 38534.8, native: 46751, lmcache: 46911, ttft: { none: 9.0, native: 6.7, lmcache: 6.5 } },
  low: { none: 23390, native: 23033, lmcache: 22773, ttft: { none: 0.12, native: 0.13, lmcache: 0.15 } },
};
const modes = ["none", "native", "lmcache"] as const;
const out: Record<string, unknown> = {};
for (const which of ["high", "low"] as const) {
  // run from the repository root (npm run bench -- fleet/fidelity)
  const text = readFileSync(`examples/scenarios/llmd-16xh100-${which}-cache.yaml`, "utf8");
  const rows: string[] = [];
  const gains: Record<string, number[]> = { native: [], lmcache: [] };
  for (let seed = 1; seed <= seeds; seed++) {
    const r = parseScenarioText(text);
    r.scenario.simulation.seed = seed;
    const reps = {} as Record<(typeof modes)[number], FleetReport>;
    for (const m of modes) reps[m] = runScenario(r, m, { recordItl: false });
    const base = reps.none.bench.total_token_throughput as number;
    for (const m of modes) {
      const b = reps[m].bench;
      const thr = b.total_token_throughput as number;
      const g = thr / base - 1;
      if (m !== "none") gains[m]!.push(g);
      const p = published[which];
      const pg = p[m] / p.none - 1;
      rows.push(
        `| ${seed} | ${m} | ${Math.round(thr).toLocaleString("en-US")} | ${m === "none" ? "" : `${(g * 100).toFixed(1)}%`} | ${((b.mean_ttft_ms as number) / 1000).toFixed(2)} s | ${((b.p90_ttft_ms as number) / 1000).toFixed(2)} s | ${((b.mean_e2el_ms as number) / 1000).toFixed(1)} s | ${reps[m].preemptions} | ${(reps[m].kv_usage.p99 * 100).toFixed(1)}% | ${Math.round(p[m]).toLocaleString("en-US")} | ${m === "none" ? "" : `${(pg * 100).toFixed(1)}%`} | ${p.ttft[m]} s | ${reps[m].sim.wall_s.toFixed(1)} s |`,
      );
    }
  }
  console.log(`\n### ${which} cache\n`);
  console.log(
    "| seed | option | sim tok/s | sim gain | sim mean TTFT | sim P90 TTFT | sim mean E2E | preemptions | KV P99 | published tok/s | published gain | published mean TTFT | wall |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  console.log(rows.join("\n"));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  out[which] = { native_gain: mean(gains.native!), lmcache_gain: mean(gains.lmcache!) };
}
console.log("\n" + JSON.stringify(out));
