// Routing benchmark, live: whether cache-aware routing beats round-robin where the cache matters. 4 sim
// engines publishing KV events, multi-round QA whose users' contexts exceed one engine's KV cache but
// fit the fleet, one run per policy on fresh engines, through the router, measured with `switchyard
// bench`. Sizing and expected figures: docs/routing.md (bench/routing/virtual.ts runs the same thing
// in virtual time).
// Prints per policy: steady-state TTFT p50/p99 and output throughput (round 0 left out: it is a cold
// prefill under every policy), all-round figures, the engines' prefix-cache hit rate, their modelled
// busy fraction (saturation), the largest waiting queue of each engine, failures by kind, and the CPU
// the sims, router and bench used (if the host is the bottleneck, the figures say nothing about
// routing). Times are modelled: wall-clock figures divided by --time-scale (throughput multiplied).
// Ends with a pass/fail table: every cache-aware policy ≥ 3× lower steady TTFT p50 and ≥ 1.5× the output
// throughput of round-robin.
//   node --import tsx bench/routing/compare.ts [--policies round-robin,least-load,prefix,kv,hybrid,predictive]
//     [--users 17] [--rounds 8] [--concurrency 0 (= users)] [--user-history-prompt 8000]
//     [--time-scale 2] [--gpu-memory-utilization 0.3] [--out-dir DIR] [--compare-session]
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { parseSamples } from "../../src/protocol/prometheus-text.js";
import { histogramBuckets, histogramQuantile } from "../../src/ops/fleet-status.js";
import { samplesFromBenchJson, steadyStats, type SteadyStats } from "./stats.js";
import { cli as spawnCli, cpuSeconds, metric, startStack } from "./live.js";

const specs: FlagSpecs = {
  policies: { type: "string", default: "round-robin,least-load,prefix,kv,hybrid,predictive", help: "" },
  // 17 users: not a multiple of the engine count, so round-robin cannot fall into a static
  // user → engine mapping when rounds run in lockstep
  users: { type: "int", default: 17, help: "" },
  rounds: { type: "int", default: 8, help: "" },
  concurrency: { type: "int", default: 0, help: "0 = users (every user active all run)" },
  "shared-system-prompt": { type: "int", default: 1000, help: "" },
  "user-history-prompt": { type: "int", default: 8000, help: "" },
  "question-len": { type: "int", default: 20, help: "" },
  "answer-len": { type: "int", default: 100, help: "" },
  "time-scale": { type: "number", default: 2, help: "" },
  "router-log-level": { type: "string", default: "info", help: "debug: one line per routing decision" },
  "compare-session": { type: "boolean", default: false, help: "also run session and bench-compare it" },
  "gpu-memory-utilization": { type: "number", default: 0.3, help: "" },
  "max-model-len": { type: "int", default: 16384, help: "" },
  model: { type: "string", default: "meta-llama/Llama-3.1-8B-Instruct", help: "" },
  gpu: { type: "string", default: "h100", help: "" },
  engines: { type: "int", default: 4, help: "" },
  "out-dir": { type: "string", help: "" },
  /** router worker processes (--workers); 1 = one process */
  "router-workers": { type: "int", default: 1, help: "" },
  /** router replicas exchanging load and picks (peers), behind one port (bench/support/tcp-balancer.ts) */
  replicas: { type: "int", default: 1, help: "" },
  json: { type: "string", help: "also write the rows here" },
};
const { flags } = benchFlags(specs);
const outDir = (flags["out-dir"] as string | undefined) ?? mkdtempSync(join(tmpdir(), "routing-compare-"));
mkdirSync(outDir, { recursive: true });
const cli = (args: string[], log?: string, inherit = false, level = "warn") =>
  spawnCli(outDir, args, log, inherit, level);

const scale = flags["time-scale"] as number;
const users = flags.users as number;
const concurrency = (flags.concurrency as number) > 0 ? (flags.concurrency as number) : users;

interface Row {
  policy: string;
  steady: SteadyStats;
  ttftP50: number;
  outTps: number;
  hitRate: number;
  busy: number[];
  maxWaiting: number[];
  failed: number;
  errors: Record<string, number>;
  decisions: Record<string, number>;
  /** router workers' claims by result (confirmed, refused, unconfirmed) */
  claims: Record<string, number>;
  /** router workers: how long picks waited for the primary's answer, wall ms (mean; p90 as Prometheus's histogram_quantile) */
  claimWaitMs?: { mean: number; p90: number | null };
  /** router workers: answers that came before their pick's word, and their mean wait for it (wall ms) */
  claimHeld?: { answers: number; meanMs: number };
  cpu: { sims: number; router: number; bench: number; load: number };
  wallS: number;
  file: string;
}

async function runPolicy(policy: string): Promise<Row> {
  const stack = await startStack({
    outDir,
    tag: policy,
    engines: flags.engines as number,
    model: flags.model as string,
    simArgs: [
      "--gpu",
      flags.gpu as string,
      "--gpu-memory-utilization",
      String(flags["gpu-memory-utilization"]),
      "--max-model-len",
      String(flags["max-model-len"]),
      "--time-scale",
      String(scale),
    ],
    policy,
    routerArgs: [
      ...(policy === "session" ? ["--session-header", "x-user-id"] : []),
      ...(policy === "predictive"
        ? ["--predictive-gpu", flags.gpu as string, "--predictive-time-scale", String(scale)]
        : []),
    ],
    routerLogLevel: flags["router-log-level"] as string,
    routerWorkers: flags["router-workers"] as number,
    replicas: flags.replicas as number,
  });
  const { urls, sims, routers } = stack;
  const rurl = stack.routerUrl;
  const maxWaiting = urls.map(() => 0);
  const sampler = setInterval(() => {
    urls.forEach((u, i) => {
      void fetch(`${u}/metrics`)
        .then((r) => r.text())
        .then((t) => (maxWaiting[i] = Math.max(maxWaiting[i]!, metric(t, "vllm:num_requests_waiting"))))
        .catch(() => undefined);
    });
  }, 250);
  const busyOf = async () =>
    Promise.all(
      urls.map(async (u) =>
        metric(await (await fetch(`${u}/metrics`)).text(), "switchyard_sim_busy_seconds_total"),
      ),
    );
  const busy0 = await busyOf();
  const file = join(outDir, `${policy}.json`);
  const bargs = [
    "bench",
    "--base-url",
    rurl,
    "--model",
    flags.model as string,
    "--workload",
    "multi-round-qa",
    "--num-users",
    String(users),
    "--num-rounds",
    String(flags.rounds),
    "--concurrency",
    String(concurrency),
    "--shared-system-prompt",
    String(flags["shared-system-prompt"]),
    "--user-history-prompt",
    String(flags["user-history-prompt"]),
    "--question-len",
    String(flags["question-len"]),
    "--answer-len",
    String(flags["answer-len"]),
    // every answer runs to --answer-len: equal work under every policy, and no answer that is only an
    // end-of-sequence token (the bench counts those as "no_output" failures)
    "--ignore-eos",
    "--seed",
    "1",
    "--out",
    file,
  ];
  for (const u of urls) bargs.push("--scrape", `${u}/metrics`);
  const cpu0 = sims.map((c) => cpuSeconds(c.pid));
  const rcpu0 = routers.reduce((a, r) => a + cpuSeconds(r.pid), 0);
  const t0 = Date.now();
  const bench = cli(bargs, `${policy}-bench.log`);
  // the bench's own CPU, read while it runs (its /proc entry is gone once it exits)
  let benchCpu = 0;
  const load: number[] = [];
  const loadTimer = setInterval(() => {
    load.push(loadavg()[0]!);
    const c = cpuSeconds(bench.pid);
    if (Number.isFinite(c)) benchCpu = c;
  }, 1000);
  await new Promise((r) => bench.once("exit", r));
  const wallS = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  clearInterval(loadTimer);
  const busy1 = await busyOf();
  // why the router picked what it picked (cache-aware policies): reason → decisions
  const decisions: Record<string, number> = {};
  const claims: Record<string, number> = {};
  let waitSum = 0;
  let waitCount = 0;
  let heldSum = 0;
  let heldCount = 0;
  let waitBuckets = new Map<number, number>();
  try {
    const samples = parseSamples(await (await fetch(`${rurl}/metrics`)).text());
    waitBuckets = histogramBuckets(samples, "switchyard_routing_claim_wait_seconds");
    for (const x of samples) {
      const reason = x.labels.reason;
      if (x.name === "switchyard_routing_decisions_total" && reason !== undefined)
        decisions[reason] = (decisions[reason] ?? 0) + x.value;
      // router workers: how many load-aware picks the primary confirmed or refused
      const result = x.labels.result;
      if (x.name === "switchyard_routing_claims_total" && result !== undefined)
        claims[result] = (claims[result] ?? 0) + x.value;
      if (x.name === "switchyard_routing_claim_wait_seconds_sum") waitSum += x.value;
      if (x.name === "switchyard_routing_claim_wait_seconds_count") waitCount += x.value;
      if (x.name === "switchyard_routing_claim_held_seconds_sum") heldSum += x.value;
      if (x.name === "switchyard_routing_claim_held_seconds_count") heldCount += x.value;
    }
  } catch {
    // the router is gone: no breakdown
  }
  const waitP90 = histogramQuantile(0.9, waitBuckets);
  const simCpu = sims.reduce((a, c, i) => a + cpuSeconds(c.pid) - cpu0[i]!, 0);
  const routerCpu = routers.reduce((a, r) => a + cpuSeconds(r.pid), 0) - rcpu0;
  await stack.close();
  const j = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  const server = (j.server ?? {}) as Record<string, unknown>;
  const duration = (j.duration as number) || wallS;
  const steady = steadyStats(samplesFromBenchJson(j));
  // modelled time: wall-clock durations divided by the sims' time scale
  steady.ttftP50 /= scale;
  steady.ttftP99 /= scale;
  steady.outputTps *= scale;
  steady.reqPs *= scale;
  return {
    policy,
    steady,
    ttftP50: (j.median_ttft_ms as number) / scale,
    outTps: (j.output_throughput as number) * scale,
    hitRate: (server.prefix_cache_hit_rate as number) ?? NaN,
    busy: busy1.map((b, i) => (b - busy0[i]!) / (duration / scale)),
    maxWaiting,
    failed: j.failed as number,
    errors: (j.errors_by_kind as Record<string, number>) ?? {},
    decisions,
    claims,
    ...(waitCount > 0
      ? {
          claimWaitMs: {
            mean: (1000 * waitSum) / waitCount,
            p90: waitP90 === null ? null : 1000 * waitP90,
          },
          claimHeld: { answers: heldCount, meanMs: heldCount > 0 ? (1000 * heldSum) / heldCount : 0 },
        }
      : {}),
    cpu: {
      sims: simCpu / wallS,
      router: routerCpu / wallS,
      bench: benchCpu / wallS,
      load: load.length ? load.reduce((a, b) => a + b, 0) / load.length : loadavg()[0]!,
    },
    wallS,
    file,
  };
}

const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const policies = (flags.policies as string).split(",").filter(Boolean);
if (flags["compare-session"] && !policies.includes("session")) policies.push("session");
const rows: Row[] = [];
for (const p of policies) {
  process.stderr.write(`running ${p} ...\n`);
  rows.push(await runPolicy(p));
  const r = rows[rows.length - 1]!;
  process.stderr.write(`${JSON.stringify({ ...r, file: undefined })}\n`);
}
const ctx =
  (flags["shared-system-prompt"] as number) +
  (flags["user-history-prompt"] as number) +
  (flags.rounds as number) * ((flags["question-len"] as number) + (flags["answer-len"] as number));
console.log(
  `\n${flags.engines} × ${flags.model} sims on ${flags.gpu} at gpu-memory-utilization ${flags["gpu-memory-utilization"]}, ` +
    `time scale ${scale} (figures in modelled time); ${users} users × ${flags.rounds} rounds, concurrency ${concurrency}, ` +
    `${flags["shared-system-prompt"]}-token shared prompt + ${flags["user-history-prompt"]}-token histories ` +
    `(contexts up to ≈ ${ctx} tokens, ≈ ${users * ctx} in all); results and logs in ${outDir}`,
);
console.log(
  "| policy | steady TTFT p50 ms | steady TTFT p99 ms | steady output tok/s | all-round TTFT p50 ms | all-round output tok/s | prefix hit rate | engine busy | max waiting per engine | failed | routing decisions | CPU sims / router / bench (cores), load avg | wall s |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.policy} | ${f(r.steady.ttftP50)} | ${f(r.steady.ttftP99)} | ${f(r.steady.outputTps)} | ${f(r.ttftP50)} | ${f(r.outTps)} | ${f(r.hitRate * 100, 1)}% | ${r.busy.map((b) => f(b * 100)).join("/")}% | ${r.maxWaiting.join("/")} | ${r.failed}${r.failed ? ` ${JSON.stringify(r.errors)}` : ""} | ${
      Object.entries(r.decisions)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ") || "–"
    } | ${f(r.cpu.sims, 2)} / ${f(r.cpu.router, 2)} / ${f(r.cpu.bench, 2)}, ${f(r.cpu.load, 1)} | ${f(r.wallS)} |`,
  );
if (flags.json) writeFileSync(flags.json as string, JSON.stringify(rows, null, 2));
const rr = rows.find((r) => r.policy === "round-robin");
if (rr) {
  for (const r of rows)
    if (r !== rr)
      console.log(
        `${r.policy} vs round-robin (steady state): TTFT p50 ${f(rr.steady.ttftP50 / r.steady.ttftP50, 2)}× lower, output throughput ${f(r.steady.outputTps / rr.steady.outputTps, 2)}×`,
      );
  // the acceptance: cache-aware policies keep ≥ 3× lower steady TTFT p50 and ≥ 1.5× the throughput
  console.log("\n| policy | TTFT p50 ≥ 3× lower | throughput ≥ 1.5× | result |\n|---|---|---|---|");
  for (const r of rows) {
    if (!["prefix", "kv", "hybrid", "predictive"].includes(r.policy)) continue;
    const lower = rr.steady.ttftP50 / r.steady.ttftP50;
    const tput = r.steady.outputTps / rr.steady.outputTps;
    console.log(
      `| ${r.policy} | ${f(lower, 2)}× | ${f(tput, 2)}× | ${lower >= 3 && tput >= 1.5 ? "pass" : "FAIL"} |`,
    );
  }
  const session = rows.find((r) => r.policy === "session");
  if (session) {
    const cmp = cli(["bench", "compare", rr.file, session.file], undefined, true);
    await new Promise((r) => cmp.once("exit", r));
  }
}
