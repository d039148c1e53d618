// The load-range routing benchmark, in virtual time (`npm run bench -- routing/range`): three workloads
// (multi-round QA, multi-tenant shared prefixes, random prompts with no reuse; bench/routing/range-setup.ts)
// × load from 20% to 175% of round-robin's capacity × every policy, in open loop (Poisson arrivals at a
// rate) and closed loop (a fixed number of sessions, each sending its next request when answered). The same
// engine model and routing code as the live router, on the fleet simulator's virtual clock: deterministic,
// independent of the host. Each point runs with several seeds (other prompts, arrivals and lengths); the
// tables pool their steady windows. Then a pass/fail table against:
//   1. at every point, least-load, kv, hybrid and predictive no worse than round-robin beyond noise: TTFT p50
//      and p90 within 10%, throughput within 3% — or, across the seeds (each paired with round-robin on
//      the same seed), not significantly beyond that (one-sided t-test on the log ratios, 95%);
//   2. at saturation on multi-tenant (open loop at the highest load, Poisson arrivals as the published
//      llm-d runs): the best of kv, hybrid, predictive ≥ 1.5× round-robin's throughput and ≥ 20× lower
//      TTFT p90; throughput best ≥ prefix > least-load. The closed loop at the highest load is printed too.
// Round-robin's capacity: the highest Poisson rate it keeps up with. Open loop at load x: Poisson arrivals
// at x × capacity. Closed loop at load x: x × the fewest sessions with which round-robin serves its capacity.
// In virtual time `hybrid` is `kv` (every engine's KV events flow), so its rows are kv's.
//   node dist/bench/routing/range.js [--workloads multi-round-qa,multi-tenant,random]
//     [--policies round-robin,least-load,prefix,kv,hybrid,predictive] [--loads 0.2,0.5,0.8,1,1.2,1.5,1.75]
//     [--loops open,closed] [--seeds 1,2,3] [--out results.json] [--plot-dir docs/img]
//     [--calibration-cache FILE] [--rates 15,20,25 (open loop, req/s)] [--open-cap N (open loop, in flight)]
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import type { PolicyName } from "../../src/routing/index.js";
import { percentile } from "../../src/workload/stats.js";
import { renderPanels, type Panel } from "../../src/bench/svg.js";
import { calibrationFor, runPoint, WORKLOADS, type Loop, type PointResult } from "./range-setup.js";

const specs: FlagSpecs = {
  workloads: { type: "string", default: WORKLOADS.map((w) => w.name).join(","), help: "" },
  policies: { type: "string", default: "round-robin,least-load,prefix,kv,hybrid,predictive", help: "" },
  loads: {
    type: "string",
    default: "0.2,0.5,0.8,1,1.2,1.5,1.75",
    help: "fractions of round-robin's capacity",
  },
  loops: { type: "string", default: "open,closed", help: "" },
  seeds: { type: "string", default: "1,2,3", help: "" },
  out: { type: "string", help: "write every figure as JSON" },
  "plot-dir": { type: "string", help: "write one SVG per workload (TTFT p50/p90 and throughput vs load)" },
  "calibration-cache": { type: "string", help: "JSON file keeping round-robin's calibration between runs" },
  rates: { type: "string", help: "open loop: these req/s instead of --loads" },
  "open-cap": { type: "number", min: 1, help: "open loop: at most this many requests in flight" },
};
const { flags } = benchFlags(specs);
const list = (k: string) => (flags[k] as string).split(",").filter(Boolean);
const policies = list("policies") as PolicyName[];
const loads = list("loads").map(Number);
const loops = list("loops") as Loop[];
const seeds = list("seeds").map(Number);
const rates = flags.rates === undefined ? undefined : list("rates").map(Number);
const openCap = flags["open-cap"] as number | undefined;
const workloads = list("workloads").map((n) => {
  const w = WORKLOADS.find((x) => x.name === n);
  if (!w) throw new Error(`unknown workload ${n} (known: ${WORKLOADS.map((x) => x.name).join(", ")})`);
  return w;
});

/** the policies held to round-robin's figures at every load (the others are shown, not judged) */
const JUDGED: readonly string[] = ["least-load", "kv", "hybrid", "predictive"];
const TTFT_SLACK = 1.1;
const TPUT_SLACK = 0.97;
/** one-sided 95% Student t quantiles by degrees of freedom */
const T95: Record<number, number> = {
  1: 6.31,
  2: 2.92,
  3: 2.35,
  4: 2.13,
  5: 2.02,
  6: 1.94,
  7: 1.89,
  8: 1.86,
  9: 1.83,
};

interface Point {
  /** figures pooled over the seeds: TTFT percentiles of every seed's window, throughput's mean */
  pooled: Omit<PointResult, "ttfts">;
  perSeed: PointResult[];
}

interface Row {
  workload: string;
  loop: Loop;
  load: number;
  level: number;
  policy: PolicyName;
  point: Point;
}

const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

function pool(perSeed: PointResult[]): Point {
  const ttfts = perSeed.flatMap((r) => r.ttfts).sort((a, b) => a - b);
  const m = (k: keyof Omit<PointResult, "ttfts">) => mean(perSeed.map((r) => r[k]));
  return {
    pooled: {
      ttftP50: percentile(ttfts, 50),
      ttftP90: percentile(ttfts, 90),
      outputTps: m("outputTps"),
      reqPs: m("reqPs"),
      e2elMean: m("e2elMean"),
      ttftFirstThird: m("ttftFirstThird"),
      ttftLastThird: m("ttftLastThird"),
      hitRate: m("hitRate"),
      wallS: perSeed.reduce((a, r) => a + r.wallS, 0),
    },
    perSeed,
  };
}

const cacheFile = flags["calibration-cache"] as string | undefined;
const rows: Row[] = [];
const t0 = performance.now();
const cell = (p: Point) =>
  `${f0(p.pooled.ttftP50)} / ${f0(p.pooled.ttftP90)} · ${f0(p.pooled.outputTps)} · ${(p.pooled.hitRate * 100).toFixed(0)}%`;
for (const w of workloads) {
  const cal = calibrationFor(w, seeds[0]!, cacheFile);
  console.log(`\n## ${w.name}: ${w.describe}`);
  console.log(
    `round-robin's capacity ${f2(cal.capacity)} req/s (the highest Poisson rate it keeps up with); closed loop 100% = ${cal.full} sessions (the fewest with which it serves that); ${w.requests} requests per run, seeds ${seeds.join(", ")} pooled`,
  );
  for (const loop of loops) {
    const cap = loop === "open" && openCap !== undefined ? ` (at most ${openCap} in flight)` : "";
    console.log(
      `\n### ${w.name}, ${loop} loop${cap}: TTFT p50 / p90 ms · output tok/s · prefix-cache hit rate\n`,
    );
    console.log(`| load | ${loop === "open" ? "req/s" : "sessions"} | ${policies.join(" | ")} |`);
    console.log(`|---|---|${policies.map(() => "---").join("|")}|`);
    const levels = loop === "open" && rates ? rates.map((r) => r / cal.capacity) : loads;
    for (const load of levels) {
      const level = loop === "open" ? load * cal.capacity : Math.max(1, Math.round(load * cal.full));
      const cells: string[] = [];
      const done = new Map<string, Point>();
      for (const policy of policies) {
        const reuse = policy === "hybrid" ? done.get("kv") : undefined;
        // open loop with --open-cap: a client holding its sends to a cap, so once it is reached every new
        // request follows an answer's end (round-robin's calibration stays the uncapped one)
        const wl = loop === "open" && openCap !== undefined ? { ...w, openSessionCap: openCap } : w;
        const point = reuse ?? pool(seeds.map((seed) => runPoint({ w: wl, policy, loop, level, seed })));
        done.set(policy, point);
        rows.push({ workload: w.name, loop, load, level, policy, point });
        cells.push(cell(point));
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

/**
 * Whether `x` is no worse than round-robin's `rr` beyond `slack` (a ratio: > 1 for latencies, where higher
 * is worse; < 1 for throughput): pooled within it, or per seed not significantly beyond it.
 */
function noWorse(
  x: Point,
  rr: Point,
  metric: "ttftP50" | "ttftP90" | "outputTps",
  slack: number,
): { ratio: number; pass: boolean } {
  const ratio = x.pooled[metric] / rr.pooled[metric];
  const higherWorse = slack > 1;
  if (higherWorse ? ratio <= slack : ratio >= slack) return { ratio, pass: true };
  const logs = x.perSeed.map((r, i) => Math.log(r[metric] / rr.perSeed[i]![metric]));
  const n = logs.length;
  if (n < 2) return { ratio, pass: false };
  const m = mean(logs);
  const sd = Math.sqrt(logs.reduce((a, l) => a + (l - m) ** 2, 0) / (n - 1));
  const t = T95[n - 1] ?? 1.8;
  const bound = higherWorse ? m - (t * sd) / Math.sqrt(n) : m + (t * sd) / Math.sqrt(n);
  return { ratio, pass: higherWorse ? bound <= Math.log(slack) : bound >= Math.log(slack) };
}

for (const p of policies.filter((x) => JUDGED.includes(x))) {
  let worst = { p50: 0, p90: 0, tput: Infinity };
  const fails: string[] = [];
  const noisy: string[] = [];
  for (const x of rows.filter((y) => y.policy === p)) {
    const rr = find(x.workload, x.loop, x.load, "round-robin");
    if (!rr) continue;
    const p50 = noWorse(x.point, rr.point, "ttftP50", TTFT_SLACK);
    const p90 = noWorse(x.point, rr.point, "ttftP90", TTFT_SLACK);
    const tput = noWorse(x.point, rr.point, "outputTps", TPUT_SLACK);
    worst = {
      p50: Math.max(worst.p50, p50.ratio),
      p90: Math.max(worst.p90, p90.ratio),
      tput: Math.min(worst.tput, tput.ratio),
    };
    const where = `${x.workload} ${x.loop} ${Math.round(x.load * 100)}%: p50 ${f2(p50.ratio)}×, p90 ${f2(p90.ratio)}×, throughput ${f2(tput.ratio)}×`;
    if (!p50.pass || !p90.pass || !tput.pass) fails.push(where);
    else if (p50.ratio > TTFT_SLACK || p90.ratio > TTFT_SLACK || tput.ratio < TPUT_SLACK) noisy.push(where);
  }
  verdicts.push({
    criterion: `1. ${p} vs round-robin at every point (TTFT p50, p90 ≤ 1.10×; throughput ≥ 0.97×; beyond that only within seed noise)`,
    figures:
      `pooled worst: p50 ${f2(worst.p50)}×, p90 ${f2(worst.p90)}×, throughput ${f2(worst.tput)}×` +
      (noisy.length ? `; within noise: ${noisy.join("; ")}` : "") +
      (fails.length ? `; FAILS: ${fails.join("; ")}` : ""),
    pass: fails.length === 0 && worst.tput !== Infinity,
  });
}
const sat = Math.max(...loads);
for (const loop of loops) {
  if (!workloads.some((w) => w.name === "multi-tenant")) break;
  const at = (p: string) => find("multi-tenant", loop, sat, p);
  const rr = at("round-robin");
  const cands = ["kv", "hybrid", "predictive"].map(at).filter((x): x is Row => x !== undefined);
  const best = cands.sort((a, b) => b.point.pooled.outputTps - a.point.pooled.outputTps)[0];
  const prefix = at("prefix");
  const ll = at("least-load");
  if (!rr || !best) continue;
  const tput = best.point.pooled.outputTps / rr.point.pooled.outputTps;
  const p90 = rr.point.pooled.ttftP90 / best.point.pooled.ttftP90;
  const judged = loop === "open";
  verdicts.push({
    criterion: `2a. multi-tenant, ${loop} loop at ${Math.round(sat * 100)}%: best of kv/hybrid/predictive ≥ 1.5× round-robin's throughput, ≥ 20× lower TTFT p90${judged ? "" : " (information)"}`,
    figures: `${best.policy}: ${f2(tput)}× throughput, ${f2(p90)}× lower TTFT p90 (${f0(best.point.pooled.ttftP90)} vs ${f0(rr.point.pooled.ttftP90)} ms)`,
    pass: !judged || (tput >= 1.5 && p90 >= 20),
  });
  if (prefix && ll)
    verdicts.push({
      criterion: `2b. multi-tenant, ${loop} loop at ${Math.round(sat * 100)}%: throughput best ≥ prefix > least-load${judged ? "" : " (information)"}`,
      figures: `${best.policy} ${f0(best.point.pooled.outputTps)} ≥ prefix ${f0(prefix.point.pooled.outputTps)} > least-load ${f0(ll.point.pooled.outputTps)} tok/s`,
      pass:
        !judged ||
        (best.point.pooled.outputTps >= prefix.point.pooled.outputTps &&
          prefix.point.pooled.outputTps > ll.point.pooled.outputTps),
    });
}
console.log("\n### Acceptance\n\n| criterion | figures | result |\n|---|---|---|");
for (const v of verdicts) console.log(`| ${v.criterion} | ${v.figures} | ${v.pass ? "pass" : "FAIL"} |`);
console.log(`\n${rows.length} points in ${f0((performance.now() - t0) / 1000)} s wall`);

if (flags.out)
  writeFileSync(
    flags.out as string,
    JSON.stringify(
      {
        seeds,
        rows: rows.map((r) => ({ ...r, point: { pooled: r.point.pooled } })),
        verdicts,
      },
      null,
      1,
    ),
  );
const plotDir = flags["plot-dir"] as string | undefined;
if (plotDir) {
  mkdirSync(plotDir, { recursive: true });
  for (const w of workloads) {
    const panels: Panel[] = [];
    for (const loop of loops) {
      const of = (metric: (r: Point["pooled"]) => number) =>
        policies
          .filter((p) => p !== "hybrid")
          .map((p) => ({
            name: p === "kv" && policies.includes("hybrid") ? "kv = hybrid" : p,
            dashed: p === "round-robin",
            points: rows
              .filter((x) => x.workload === w.name && x.loop === loop && x.policy === p)
              .map((x) => [x.load * 100, metric(x.point.pooled)] as [number, number]),
          }));
      const xLabel = `load, % of round-robin's capacity`;
      panels.push(
        {
          title: `TTFT p50, ${loop} loop`,
          xLabel,
          yLabel: "log10(ms)",
          series: of((r) => Math.log10(r.ttftP50)),
        },
        {
          title: `TTFT p90, ${loop} loop`,
          xLabel,
          yLabel: "log10(ms)",
          series: of((r) => Math.log10(r.ttftP90)),
        },
        { title: `throughput, ${loop} loop`, xLabel, yLabel: "output tok/s", series: of((r) => r.outputTps) },
      );
    }
    writeFileSync(
      join(plotDir, `routing-range-${w.name}.svg`),
      renderPanels(`${w.name}: ${w.describe}`, panels, 3),
    );
  }
}
process.exitCode = verdicts.every((v) => v.pass) ? 0 : 1;
