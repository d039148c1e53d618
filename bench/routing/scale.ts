// Does routing stay as good when the router runs as a process group or as replicas? The routing
// benchmark (bench/routing/compare.ts: sims, multi-round QA through the router) with one router process,
// with `--workers 2`, and with two replicas (peered, behind a round-robin TCP balancer), in interleaved
// rounds (each round starts with the next layout), for one policy. Reports each layout's steady TTFT p50
// and output throughput (medians over rounds, modelled time) as ratios against one process, then the
// steady requests of all rounds pooled per layout (p50 with a bootstrap interval, and the mean).
// `--control` runs one process twice a round: the second's ratios to the first are this box's noise.
//   node --import tsx bench/routing/scale.ts [--policy predictive] [--rounds 3] [--control]
//     [--out-dir DIR] [-- routing-compare flags...]
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { mulberry32 } from "../../src/random/rng.js";
import { mean, percentile, percentileSorted } from "../../src/workload/stats.js";
import { samplesFromBenchJson } from "./stats.js";

const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
const specs: FlagSpecs = {
  policy: { type: "string", default: "predictive", help: "the routing policy" },
  rounds: { type: "int", default: 3, min: 1, help: "interleaved rounds (the median is reported)" },
  "out-dir": { type: "string", help: "results and logs (default: a temporary folder)" },
  control: {
    type: "boolean",
    default: false,
    help: "also run one process a second time each round: its ratio to the first is this box's noise",
  },
};
const { flags } = benchFlags(specs, sep < 0 ? argv : argv.slice(0, sep));
const passOn = sep < 0 ? [] : argv.slice(sep + 1);
const outDir = (flags["out-dir"] as string | undefined) ?? mkdtempSync(join(tmpdir(), "routing-scale-"));
mkdirSync(outDir, { recursive: true });
const here = fileURLToPath(new URL(".", import.meta.url));
const isTs = import.meta.url.endsWith(".ts");
const compare = isTs ? ["--import", "tsx", join(here, "compare.ts")] : [join(here, "compare.js")];

// the control is the reference layout run again: what its ratios show is the box, not the layout
const layouts = [
  { name: "1 process", args: ["--router-workers", "1"] },
  ...(flags.control ? [{ name: "1 process (control)", args: ["--router-workers", "1"] }] : []),
  { name: "--workers 2", args: ["--router-workers", "2"] },
  { name: "2 replicas", args: ["--router-workers", "1", "--replicas", "2"] },
];

interface Steady {
  ttftP50: number;
  outputTps: number;
}

const median = (xs: readonly number[]): number => percentile(xs, 50);

const results = layouts.map(() => [] as Steady[]);
/** every steady request's TTFT (rounds ≥ 1, wall ms) of every round, per layout: the pooled figures */
const pooled = layouts.map(() => [] as number[]);
/** router workers' claims by result, summed over rounds, per layout */
const claims = layouts.map(() => ({}) as Record<string, number>);
/** router workers: each round's mean wait for the primary's answer (wall ms), per layout */
const claimWait = layouts.map(() => [] as number[]);
/** router workers: answers that came before their pick's word, and their summed wait (wall ms), per layout */
const claimHeld = layouts.map(() => ({ answers: 0, ms: 0 }));
const policy = flags.policy as string;
console.log(
  `routing-scale: ${policy}, ${flags.rounds} interleaved rounds, load average ${loadavg()[0]!.toFixed(1)}; results in ${outDir}`,
);
for (let r = 0; r < (flags.rounds as number); r++) {
  for (let k = 0; k < layouts.length; k++) {
    const i = (r + k) % layouts.length;
    const l = layouts[i]!;
    const json = join(outDir, `r${r}-${i}.json`);
    const run = spawnSync(
      process.execPath,
      [
        ...compare,
        "--policies",
        policy,
        ...l.args,
        "--json",
        json,
        "--out-dir",
        join(outDir, `r${r}-${i}`),
        ...passOn,
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    if (run.status !== 0) throw new Error(`routing-compare (${l.name}) exited ${run.status}`);
    const row = (
      JSON.parse(readFileSync(json, "utf8")) as {
        steady: Steady;
        claims?: Record<string, number>;
        claimWaitMs?: { mean: number };
        claimHeld?: { answers: number; meanMs: number };
      }[]
    )[0]!;
    if (row.claimWaitMs) claimWait[i]!.push(row.claimWaitMs.mean);
    if (row.claimHeld) {
      claimHeld[i]!.answers += row.claimHeld.answers;
      claimHeld[i]!.ms += row.claimHeld.answers * row.claimHeld.meanMs;
    }
    results[i]!.push(row.steady);
    for (const [k, v] of Object.entries(row.claims ?? {})) claims[i]![k] = (claims[i]![k] ?? 0) + v;
    const bench = JSON.parse(readFileSync(join(outDir, `r${r}-${i}`, `${policy}.json`), "utf8")) as Record<
      string,
      unknown
    >;
    for (const x of samplesFromBenchJson(bench)) if (x.round > 0 && x.ok) pooled[i]!.push(x.ttft);
    console.log(
      `round ${r + 1} ${l.name.padEnd(19)} steady TTFT p50 ${row.steady.ttftP50.toFixed(1)} ms, output ${row.steady.outputTps.toFixed(0)} tok/s, load ${loadavg()[0]!.toFixed(1)}`,
    );
  }
}
const ref = {
  ttft: median(results[0]!.map((s) => s.ttftP50)),
  tps: median(results[0]!.map((s) => s.outputTps)),
};
console.log(`\n| layout | steady TTFT p50 ms | output tok/s | TTFT vs 1 process | throughput vs 1 process |`);
console.log("|---|---|---|---|---|");
layouts.forEach((l, i) => {
  const ttft = median(results[i]!.map((s) => s.ttftP50));
  const tps = median(results[i]!.map((s) => s.outputTps));
  console.log(
    `| ${l.name} | ${ttft.toFixed(1)} | ${tps.toFixed(0)} | ${(ttft / ref.ttft).toFixed(3)}× | ${(tps / ref.tps).toFixed(3)}× |`,
  );
});

// The median of a few rounds' p50s moves by several percent from run to run on a shared box (each
// round has ~120 steady requests), so the pooled requests of all rounds are set side by side too:
// their p50 and mean against one process's, with a 90% bootstrap interval of the p50 ratio
// (requests resampled within each layout; rounds are not independent of the box's load, so read it
// as a lower bound on the uncertainty).
const rand = mulberry32(1);
const resampledMedian = (xs: readonly number[]) =>
  median(Array.from(xs, () => xs[Math.floor(rand() * xs.length)]!));
console.log(
  `\n| layout | steady requests (all rounds) | pooled TTFT p50 vs 1 process (90% interval) | mean TTFT vs 1 process |`,
);
console.log("|---|---|---|---|");
const ref0 = pooled[0]!;
layouts.forEach((l, i) => {
  const xs = pooled[i]!;
  let ci = "";
  if (i > 0) {
    const ratios: number[] = [];
    for (let b = 0; b < 1000; b++) ratios.push(resampledMedian(xs) / resampledMedian(ref0));
    ratios.sort((a, b) => a - b);
    ci = ` (${percentileSorted(ratios, 5).toFixed(3)}–${percentileSorted(ratios, 95).toFixed(3)})`;
  }
  console.log(
    `| ${l.name} | ${xs.length} | ${(median(xs) / median(ref0)).toFixed(3)}×${ci} | ${(mean(xs) / mean(ref0)).toFixed(3)}× |`,
  );
});

// with workers, a load-aware pick is confirmed by the primary while its request is at the engine, the
// engine's answer held until then; a refused one is decided again (claims.ts)
layouts.forEach((l, i) => {
  const c = claims[i]!;
  const all = Object.values(c).reduce((a, b) => a + b, 0);
  const h = claimHeld[i]!;
  if (all > 0)
    console.log(
      `${l.name}: ${all} claims, ${(((c.refused ?? 0) / all) * 100).toFixed(1)}% refused, ${c.unconfirmed ?? 0} unanswered, ` +
        `wait for the answer ${mean(claimWait[i]!).toFixed(1)} ms (wall; the mean of the rounds' means); ` +
        `${h.answers} answers came before the word and waited ${h.answers > 0 ? (h.ms / h.answers).toFixed(1) : "0"} ms on average`,
    );
});
