// The load-range routing benchmark, in virtual time (`npm run bench:routing-range`): three workloads
// (multi-round QA, multi-tenant shared prefixes, random prompts with no reuse; bench/routing-range-setup.ts)
// × load from 20% to 150% of round-robin's capacity × every policy, in open loop (Poisson arrivals at a
// rate) and closed loop (a fixed number of sessions, each sending its next request when answered). The same
// engine model and routing code as the live router, on the fleet simulator's virtual clock: deterministic,
// independent of the host. Prints one table per workload and loop, then a pass/fail table against:
//   1. at every point, least-load, kv, hybrid and predictive within 10% of round-robin's TTFT p50 and p90
//      and within 3% of its throughput (or better);
//   2. at saturation (150%) on multi-tenant, closed loop: the best of kv, hybrid and predictive has ≥ 1.5×
//      round-robin's throughput and ≥ 20× lower TTFT p90; throughput best ≥ prefix > least-load.
// Round-robin's capacity: the highest Poisson rate it keeps up with. Open loop at load x: Poisson arrivals
// at x × capacity. Closed loop at load x: x × the fewest sessions with which round-robin serves its capacity.
//   node dist/bench/routing-range.js [--workloads multi-round-qa,multi-tenant,random]
//     [--policies round-robin,least-load,session,prefix,kv,hybrid,predictive] [--loads 0.2,0.5,0.8,1,1.2,1.5]
//     [--loops open,closed] [--seed 1] [--out results.json] [--plot-dir docs/img]
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseFlags, type FlagSpecs } from "../src/config/args.js";
import type { PolicyName } from "../src/routing/index.js";
import { renderPanels, type Panel } from "../src/bench/svg.js";
import {
  runPoint,
  WORKLOADS,
  type Loop,
  type PointResult,
  type RangeWorkload,
} from "./routing-range-setup.js";

const specs: FlagSpecs = {
  workloads: { type: "string", default: WORKLOADS.map((w) => w.name).join(","), help: "" },
  policies: {
    type: "string",
    default: "round-robin,least-load,session,prefix,kv,hybrid,predictive",
    help: "",
  },
  loads: { type: "string", default: "0.2,0.5,0.8,1,1.2,1.5", help: "fractions of round-robin's capacity" },
  loops: { type: "string", default: "open,closed", help: "" },
  seed: { type: "int", default: 1, help: "" },
  out: { type: "string", help: "write every figure as JSON" },
  "plot-dir": { type: "string", help: "write one SVG per workload (TTFT p50/p90 and throughput vs load)" },
  "calibration-cache": { type: "string", help: "JSON file keeping round-robin's calibration between runs" },
};
const { flags } = parseFlags(process.argv.slice(2), specs);
const list = (k: string) => (flags[k] as string).split(",").filter(Boolean);
const policies = list("policies") as PolicyName[];
const loads = list("loads").map(Number);
const loops = list("loops") as Loop[];
const seed = flags.seed as number;
const workloads = list("workloads").map((n) => {
  const w = WORKLOADS.find((x) => x.name === n);
  if (!w) throw new Error(`unknown workload ${n} (known: ${WORKLOADS.map((x) => x.name).join(", ")})`);
  return w;
});

/** policies acceptance 1 holds to round-robin */
const JUDGED: readonly string[] = ["least-load", "kv", "hybrid", "predictive"];
const TTFT_SLACK = 1.1;
const TPUT_SLACK = 0.97;

interface Row {
  workload: string;
  loop: Loop;
  load: number;
  level: number;
  policy: PolicyName;
  r: PointResult;
}

const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");

interface Calibration {
  /** the highest Poisson rate round-robin keeps up with, req/s */
  capacity: number;
  /** closed loop: the fewest sessions with which round-robin serves its capacity */
  full: number;
}

/**
 * Round-robin's capacity: the highest Poisson rate it keeps up with (its mean TTFT does not grow across the
 * run's steady window by more than 0.5 s or double; beyond that rate the queue grows for as long as the run
 * lasts), by bisection between a tenth of and the rate it serves with every request sent at once. The closed loop's 100%: the fewest sessions
 * with which it serves that rate.
 */
function calibrate(w: RangeWorkload): Calibration {
  const point = (loop: Loop, level: number) => runPoint({ w, policy: "round-robin", loop, level, seed });
  const run = (loop: Loop, level: number) => point(loop, level).reqPs;
  // keeping up: TTFT does not grow across the steady window (by more than 0.5 s, or double)
  const keepsUp = (qps: number) => {
    const r = point("open", qps);
    return r.ttftLastThird - r.ttftFirstThird <= Math.max(500, r.ttftFirstThird);
  };
  let hi = run("open", Infinity);
  let lo = hi / 10;
  while (hi - lo > hi / 50) {
    const mid = (lo + hi) / 2;
    if (keepsUp(mid)) lo = mid;
    else hi = mid;
  }
  const capacity = lo;
  let nlo = 1;
  let nhi = 2;
  while (run("closed", nhi) < capacity && nhi < 4096) {
    nlo = nhi;
    nhi *= 2;
  }
  while (nhi - nlo > Math.max(1, nlo / 32)) {
    const mid = Math.round((nlo + nhi) / 2);
    if (run("closed", mid) >= capacity) nhi = mid;
    else nlo = mid;
  }
  return { capacity, full: nhi };
}

const cacheFile = flags["calibration-cache"] as string | undefined;
const calibrations: Record<string, Calibration> =
  cacheFile && existsSync(cacheFile)
    ? (JSON.parse(readFileSync(cacheFile, "utf8")) as Record<string, Calibration>)
    : {};
const rows: Row[] = [];
const t0 = performance.now();
for (const w of workloads) {
  const key = `${w.name}/${w.requests}/${seed}`;
  const cal = (calibrations[key] ??= calibrate(w));
  if (cacheFile) writeFileSync(cacheFile, JSON.stringify(calibrations, null, 1));
  console.log(`\n## ${w.name}: ${w.describe}`);
  console.log(
    `round-robin's capacity ${f2(cal.capacity)} req/s (the highest Poisson rate it keeps up with); closed loop 100% = ${cal.full} sessions (the fewest with which it serves that); ${w.requests} requests per run, seed ${seed}`,
  );
  for (const loop of loops) {
    console.log(`\n### ${w.name}, ${loop} loop\n`);
    console.log(
      `| load | ${loop === "open" ? "req/s" : "sessions"} | ${policies.map((p) => `${p} TTFT p50 / p90 ms · out tok/s · hit`).join(" | ")} |`,
    );
    console.log(`|---|---|${policies.map(() => "---").join("|")}|`);
    for (const load of loads) {
      const level = loop === "open" ? load * cal.capacity : Math.max(1, Math.round(load * cal.full));
      const cells: string[] = [];
      for (const policy of policies) {
        const r = runPoint({ w, policy, loop, level, seed });
        rows.push({ workload: w.name, loop, load, level, policy, r });
        cells.push(
          `${f0(r.ttftP50)} / ${f0(r.ttftP90)} · ${f0(r.outputTps)} · ${(r.hitRate * 100).toFixed(0)}%`,
        );
      }
      console.log(
        `| ${Math.round(load * 100)}% | ${loop === "open" ? f2(level) : level} | ${cells.join(" | ")} |`,
      );
    }
  }
}

// ---- acceptance ----
const verdicts: { criterion: string; figures: string; pass: boolean }[] = [];
const find = (w: string, loop: Loop, load: number, p: string) =>
  rows.find((x) => x.workload === w && x.loop === loop && x.load === load && x.policy === p);
for (const p of policies.filter((x) => JUDGED.includes(x))) {
  let worst = { p50: 0, p90: 0, tput: Infinity };
  const fails: string[] = [];
  for (const x of rows.filter((y) => y.policy === p)) {
    const rr = find(x.workload, x.loop, x.load, "round-robin");
    if (!rr) continue;
    const p50 = x.r.ttftP50 / rr.r.ttftP50;
    const p90 = x.r.ttftP90 / rr.r.ttftP90;
    const tput = x.r.outputTps / rr.r.outputTps;
    worst = {
      p50: Math.max(worst.p50, p50),
      p90: Math.max(worst.p90, p90),
      tput: Math.min(worst.tput, tput),
    };
    if (p50 > TTFT_SLACK || p90 > TTFT_SLACK || tput < TPUT_SLACK)
      fails.push(
        `${x.workload} ${x.loop} ${Math.round(x.load * 100)}%: p50 ${f2(p50)}×, p90 ${f2(p90)}×, tput ${f2(tput)}×`,
      );
  }
  verdicts.push({
    criterion: `1. ${p} vs round-robin at every point (TTFT p50, p90 ≤ 1.10×; throughput ≥ 0.97×)`,
    figures: `worst: p50 ${f2(worst.p50)}×, p90 ${f2(worst.p90)}×, throughput ${f2(worst.tput)}×${fails.length ? `; fails: ${fails.join("; ")}` : ""}`,
    pass: fails.length === 0 && worst.tput !== Infinity,
  });
}
const sat = Math.max(...loads);
if (workloads.some((w) => w.name === "multi-tenant") && loops.includes("closed")) {
  const at = (p: string) => find("multi-tenant", "closed", sat, p);
  const rr = at("round-robin");
  const cands = ["kv", "hybrid", "predictive"].map(at).filter((x): x is Row => x !== undefined);
  const best = cands.sort((a, b) => b.r.outputTps - a.r.outputTps)[0];
  const prefix = at("prefix");
  const ll = at("least-load");
  if (rr && best) {
    const tput = best.r.outputTps / rr.r.outputTps;
    const p90 = rr.r.ttftP90 / best.r.ttftP90;
    verdicts.push({
      criterion: `2a. multi-tenant closed loop at ${Math.round(sat * 100)}%: best of kv/hybrid/predictive ≥ 1.5× round-robin's throughput, ≥ 20× lower TTFT p90`,
      figures: `${best.policy}: ${f2(tput)}× throughput, ${f2(p90)}× lower TTFT p90 (${f0(best.r.ttftP90)} vs ${f0(rr.r.ttftP90)} ms)`,
      pass: tput >= 1.5 && p90 >= 20,
    });
    if (prefix && ll)
      verdicts.push({
        criterion: "2b. throughput ordering best ≥ prefix > least-load",
        figures: `${best.policy} ${f0(best.r.outputTps)} ≥ prefix ${f0(prefix.r.outputTps)} > least-load ${f0(ll.r.outputTps)} tok/s`,
        pass: best.r.outputTps >= prefix.r.outputTps && prefix.r.outputTps > ll.r.outputTps,
      });
  }
}
console.log("\n### Acceptance\n\n| criterion | figures | result |\n|---|---|---|");
for (const v of verdicts) console.log(`| ${v.criterion} | ${v.figures} | ${v.pass ? "pass" : "FAIL"} |`);
console.log(`\n${rows.length} runs in ${f0((performance.now() - t0) / 1000)} s wall`);

if (flags.out) writeFileSync(flags.out as string, JSON.stringify({ seed, rows, verdicts }, null, 1));
const plotDir = flags["plot-dir"] as string | undefined;
if (plotDir) {
  mkdirSync(plotDir, { recursive: true });
  for (const w of workloads) {
    const panels: Panel[] = [];
    for (const loop of loops) {
      const of = (metric: (r: PointResult) => number) =>
        policies.map((p) => ({
          name: p,
          dashed: p === "round-robin",
          points: rows
            .filter((x) => x.workload === w.name && x.loop === loop && x.policy === p)
            .map((x) => [x.load * 100, metric(x.r)] as [number, number]),
        }));
      const lbl = `load (% of round-robin's capacity), ${loop} loop`;
      panels.push(
        {
          title: `TTFT p50, ${loop} loop`,
          xLabel: lbl,
          yLabel: "log10 ms",
          series: of((r) => Math.log10(r.ttftP50)),
        },
        {
          title: `TTFT p90, ${loop} loop`,
          xLabel: lbl,
          yLabel: "log10 ms",
          series: of((r) => Math.log10(r.ttftP90)),
        },
        {
          title: `throughput, ${loop} loop`,
          xLabel: lbl,
          yLabel: "output tok/s",
          series: of((r) => r.outputTps),
        },
      );
    }
    writeFileSync(
      join(plotDir, `routing-range-${w.name}.svg`),
      renderPanels(`${w.name}: ${w.describe}`, panels, 3),
    );
  }
}
process.exitCode = verdicts.every((v) => v.pass) ? 0 : 1;
