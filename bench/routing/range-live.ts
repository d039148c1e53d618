// The load-range benchmark's live check (`npm run bench -- routing/range-live`): one point per workload of
// bench/routing/range.ts run on a live stack (`switchyard sim` engines publishing KV events, the router,
// `switchyard bench`, bench/routing/live.ts) and the same point in virtual time (same workload, seed and
// arrivals); the live TTFT p50/p90 and output throughput, as `vllm bench` defines them over the whole run,
// must be within 15% of the virtual figures. Then the SLO check: the predictive policy with a
// TTFT SLO, offered more than the fleet can serve within it: admitted requests must meet the SLO at p90,
// and refused ones must get their 429 within 50 ms.
// The sims run at --time-scale S (every modelled duration × S, so the host keeps up); live figures are
// converted back to modelled time (÷ S), except the refusals' wall-clock answer time, which is the
// router's own. The router's predictive timing is told the GPU and the time scale.
//   node dist/bench/routing/range-live.js [--workloads multi-round-qa,multi-tenant,random]
//     [--policy predictive] [--load 0.8] [--time-scale 8] [--requests 400] [--slo-ms 600] [--slo-load 1.5]
//     [--skip-slo] [--out-dir DIR]
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { recordsFromResult } from "../../src/bench/report.js";
import { percentile } from "../../src/workload/stats.js";
import type { RequestRecord } from "../../src/workload/record.js";
import type { PolicyName } from "../../src/routing/index.js";
import { runBench, startStack } from "./live.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { calibrationFor, WORKLOADS, type RangeWorkload } from "./range-setup.js";

const specs: FlagSpecs = {
  workloads: { type: "string", default: WORKLOADS.map((w) => w.name).join(","), help: "" },
  policy: { type: "string", default: "predictive", help: "" },
  load: { type: "number", default: 0.8, help: "fraction of round-robin's capacity (open loop)" },
  "time-scale": { type: "number", default: 8, help: "" },
  requests: { type: "int", default: 400, help: "requests per live run" },
  seed: { type: "int", default: 1, help: "" },
  "slo-ms": { type: "number", default: 600, help: "the SLO check's TTFT SLO, modelled ms" },
  "slo-load": {
    type: "number",
    default: 1.5,
    help: "the SLO check's load (fraction of round-robin's capacity)",
  },
  "slo-workload": { type: "string", default: "random", help: "" },
  "skip-slo": { type: "boolean", default: false, help: "" },
  "calibration-cache": {
    type: "string",
    help: "the JSON file bench/routing/range.ts keeps its calibration in",
  },
  "out-dir": { type: "string", help: "" },
};
const { flags } = benchFlags(specs);
const outDir = (flags["out-dir"] as string | undefined) ?? mkdtempSync(join(tmpdir(), "routing-range-live-"));
mkdirSync(outDir, { recursive: true });
const scale = flags["time-scale"] as number;
const seed = flags.seed as number;
const requests = flags.requests as number;
const policy = flags.policy as PolicyName;
const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");

/** round-robin's capacity per workload, req/s (bench/routing/range.ts's calibration, kept in a file) */
const capacityOf = (w: RangeWorkload) =>
  calibrationFor(w, seed, flags["calibration-cache"] as string | undefined).capacity;

/** the bench flags that send workload `w` as bench/routing/range-setup.ts builds it */
function workloadArgs(w: RangeWorkload): string[] {
  switch (w.name) {
    case "multi-round-qa":
      return [
        "--workload",
        "multi-round-qa",
        "--num-users",
        String(Math.ceil(requests / 8)),
        "--num-rounds",
        "8",
        "--shared-system-prompt",
        "1000",
        "--user-history-prompt",
        "8000",
        "--question-len",
        "20",
        "--answer-len",
        "100",
        "--concurrency",
        "1000000",
      ];
    case "multi-tenant":
      return [
        "--workload",
        "shared-prefix",
        "--num-groups",
        "150",
        "--prompts-per-group",
        String(Math.ceil(requests / 150)),
        "--system-prompt-len",
        "4500",
        "--question-len",
        "1500",
        "--output-len",
        "256",
      ];
    default:
      return ["--workload", "random", "--input-len", "2048", "--output-len", "128", "--range-ratio", "0.5"];
  }
}

/** `switchyard sim` flags for the workload's fleet */
function simArgs(w: RangeWorkload): string[] {
  const e = w.engine;
  const args = [
    "--gpu",
    e.gpu.id,
    "--gpu-memory-utilization",
    String(e.gpuMemoryUtilization),
    "--max-model-len",
    String(e.maxModelLen),
    "--tensor-parallel-size",
    String(e.tensorParallelSize),
    "--time-scale",
    String(scale),
  ];
  if (e.numGpuBlocksOverride !== undefined)
    args.push("--num-gpu-blocks-override", String(e.numGpuBlocksOverride));
  return args;
}

/**
 * A run's figures as `vllm bench` defines them, over every request (a short run has no steady window):
 * TTFT percentiles, output tokens over the span from the first send to the last answer.
 */
function whole(records: readonly RequestRecord[]): { ttftP50: number; ttftP90: number; outputTps: number } {
  const ok = records.filter((r) => r.ok);
  const ttfts = ok.map((r) => r.ttft).sort((a, b) => a - b);
  const first = Math.min(...records.map((r) => r.start));
  const last = Math.max(...ok.map((r) => r.start + r.e2el));
  const tokens = ok.reduce((a, r) => a + r.outputTokens, 0);
  return {
    ttftP50: percentile(ttfts, 50),
    ttftP90: percentile(ttfts, 90),
    outputTps: tokens / ((last - first) / 1000),
  };
}

/** the same point in virtual time: the same workload, seed and arrivals through the fleet simulator */
function virtualRecords(w: RangeWorkload, qps: number): RequestRecord[] {
  return simulateFleet({
    engine: w.engine,
    engines: w.engines,
    policy,
    // as the live router keys them
    sessionKey: "router",
    // the live router scrapes every 1 s of wall time: 1/S s of the sims' modelled time
    scrapeIntervalS: 1 / scale,
    sharedServer: null,
    workload: w.workload(requests, seed),
    qps,
    arrival: "poisson",
    concurrency: w.openSessionCap,
    maxRequests: requests,
    durationS: Infinity,
    seed,
    recordItl: false,
  }).records;
}

/** live records in modelled time (wall ÷ the sims' time scale) */
const modelled = (r: RequestRecord): RequestRecord => ({
  ...r,
  start: r.start / scale,
  ttft: r.ttft / scale,
  e2el: r.e2el / scale,
});

async function live(
  w: RangeWorkload,
  qps: number,
  tag: string,
  routerArgs: string[] = [],
  headers: string[] = [],
): Promise<{ records: RequestRecord[]; load: number; overheadMs: number }> {
  const stack = await startStack({
    outDir,
    tag,
    engines: w.engines,
    model: w.engine.model.id,
    simArgs: simArgs(w),
    policy,
    routerArgs: [
      "--predictive-gpu",
      w.engine.gpu.id,
      "--predictive-tp",
      String(w.engine.tensorParallelSize),
      "--predictive-time-scale",
      String(scale),
      ...routerArgs,
    ],
  });
  const loads: number[] = [];
  const timer = setInterval(() => loads.push(loadavg()[0]!), 1000);
  try {
    const overheadMs = await stackOverheadMs(stack.routerUrl, w.engine.model.id);
    const file = join(outDir, `${tag}.json`);
    await runBench(
      outDir,
      tag,
      [
        "--base-url",
        stack.routerUrl,
        "--model",
        w.engine.model.id,
        ...workloadArgs(w),
        "--num-requests",
        String(requests),
        "--qps",
        String(qps / scale),
        "--seed",
        String(seed),
        "--ignore-eos",
        ...headers.flatMap((h) => ["--header", h]),
      ],
      file,
    );
    const j = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    return {
      records: recordsFromResult(j),
      load: loads.reduce((a, b) => a + b, 0) / Math.max(1, loads.length),
      overheadMs,
    };
  } finally {
    clearInterval(timer);
    await stack.close();
  }
}

/**
 * What the live path adds to every TTFT that virtual time does not have (HTTP, the router's parsing and
 * tokenizing, the sim's, the host): the median time to the first streamed byte of a one-token prompt on
 * the idle stack, wall ms.
 */
async function stackOverheadMs(base: string, model: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    const r = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, prompt: "hi", max_tokens: 1, stream: true }),
    });
    const reader = r.body!.getReader();
    await reader.read();
    times.push(performance.now() - t0);
    while (!(await reader.read()).done);
  }
  return percentile(
    times.sort((a, b) => a - b),
    50,
  );
}

const verdicts: { criterion: string; figures: string; pass: boolean }[] = [];
const within = (a: number, b: number) => Math.abs(a / b - 1) <= 0.15;

for (const name of (flags.workloads as string).split(",").filter(Boolean)) {
  const w = WORKLOADS.find((x) => x.name === name);
  if (!w) throw new Error(`unknown workload ${name}`);
  const qps = (flags.load as number) * capacityOf(w);
  process.stderr.write(`${w.name}: ${policy} at ${f2(qps)} req/s, live (time scale ${scale}) ...\n`);
  const l = await live(w, qps, `${w.name}-${policy}`);
  const lv = whole(l.records.map(modelled));
  const v = whole(virtualRecords(w, qps));
  // the live TTFTs carry the stack's fixed overhead (modelled ms); within 15% once it is taken off
  const over = l.overheadMs / scale;
  const ttftOk = (live: number, virt: number) => within(live, virt) || within(live - over, virt);
  const ok =
    ttftOk(lv.ttftP50, v.ttftP50) && ttftOk(lv.ttftP90, v.ttftP90) && within(lv.outputTps, v.outputTps);
  verdicts.push({
    criterion: `${w.name}, ${policy}, open loop at ${Math.round((flags.load as number) * 100)}% (${f2(qps)} req/s): live within 15% of virtual (TTFT: once the stack's own overhead is taken off)`,
    figures: `TTFT p50 ${f0(lv.ttftP50)} vs ${f0(v.ttftP50)} ms, p90 ${f0(lv.ttftP90)} vs ${f0(v.ttftP90)} ms, output ${f0(lv.outputTps)} vs ${f0(v.outputTps)} tok/s; stack overhead ${f2(over)} ms modelled (${f0(l.overheadMs)} ms wall); host load ${f2(l.load)}`,
    pass: ok,
  });
}

if (!flags["skip-slo"]) {
  const w = WORKLOADS.find((x) => x.name === (flags["slo-workload"] as string))!;
  const slo = flags["slo-ms"] as number;
  const qps = (flags["slo-load"] as number) * capacityOf(w);
  process.stderr.write(`SLO: ${w.name}, predictive, TTFT SLO ${slo} ms at ${f2(qps)} req/s ...\n`);
  // the SLO travels per request (x-slo-ttft-ms, wall ms at the sims' time scale)
  const l = await live(w, qps, `${w.name}-slo`, [], [`x-slo-ttft-ms: ${slo * scale}`]);
  const admitted = l.records.filter((r) => r.ok).map((r) => r.ttft / scale);
  // the bench's result file keeps each failure's text ("HTTP 429: ..."), not its status
  const isRefusal = (r: RequestRecord) => r.httpStatus === 429 || /HTTP 429\b/.test(r.error);
  const refused = l.records.filter(isRefusal);
  const other = l.records.filter((r) => !r.ok && !isRefusal(r));
  admitted.sort((a, b) => a - b);
  const refusedMs = refused.map((r) => r.e2el).sort((a, b) => a - b);
  const p90 = percentile(admitted, 90);
  verdicts.push({
    criterion: `SLO ${slo} ms, ${w.name} at ${Math.round((flags["slo-load"] as number) * 100)}%: admitted requests' TTFT p90 ≤ the SLO`,
    figures: `${admitted.length} admitted, TTFT p50 ${f0(percentile(admitted, 50))} ms, p90 ${f0(p90)} ms; ${refused.length} refused; ${other.length} other failures`,
    pass: admitted.length > 0 && p90 <= slo && other.length === 0,
  });
  const worst = refusedMs[refusedMs.length - 1] ?? 0;
  verdicts.push({
    criterion: "refused requests answered (429 + Retry-After) within 50 ms, wall clock",
    figures: `${refused.length} refused: p50 ${f2(percentile(refusedMs, 50))} ms, p99 ${f2(percentile(refusedMs, 99))} ms, max ${f2(worst)} ms (host load ${f2(l.load)})`,
    pass: refused.length > 0 && worst <= 50,
  });
}

console.log(
  `\nlive stacks at time scale ${scale}, ${requests} requests per run; logs and results in ${outDir}`,
);
console.log("\n| criterion | figures | result |\n|---|---|---|");
for (const v of verdicts) console.log(`| ${v.criterion} | ${v.figures} | ${v.pass ? "pass" : "FAIL"} |`);
process.exitCode = verdicts.every((v) => v.pass) ? 0 : 1;
