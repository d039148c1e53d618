// The routing benchmark in virtual time: the same engines (src/engine), the same policies
// (src/routing) and the same multi-round workload as bench/routing/compare.ts, run by the fleet
// simulator (src/fleet) in seconds instead of minutes. Used to choose the live benchmark's operating
// point and to state the figures the live run should reproduce.
//   node --import tsx bench/routing/virtual.ts [--policies round-robin,least-load,prefix,kv]
//     [--users 17] [--rounds 8] [--concurrency 17] [--shared-system-prompt 1000]
//     [--user-history-prompt 8000] [--question-len 20] [--answer-len 100]
//     [--gpu-memory-utilization 0.3] [--max-model-len 16384] [--sweep-concurrency 8,16,24]
import { performance } from "node:perf_hooks";
import { multiRoundQaWorkload, MULTI_ROUND_QA_DEFAULTS } from "../../src/workload/multi-round-qa.js";
import { summarize } from "../../src/workload/metrics.js";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { defaultEngineConfig, kvCapacity } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import type { PolicyName } from "../../src/routing/index.js";
import { steadyStats } from "./stats.js";

const specs: FlagSpecs = {
  policies: { type: "string", default: "round-robin,least-load,prefix,kv", help: "" },
  users: { type: "int", default: 17, help: "" },
  rounds: { type: "int", default: 8, help: "" },
  concurrency: { type: "int", default: 0, help: "0 = users" },
  "sweep-concurrency": { type: "string", default: "", help: "comma list; users = concurrency" },
  "shared-system-prompt": { type: "int", default: 1000, help: "" },
  "user-history-prompt": { type: "int", default: 8000, help: "" },
  "question-len": { type: "int", default: 20, help: "" },
  "answer-len": { type: "int", default: 100, help: "" },
  "gpu-memory-utilization": { type: "number", default: 0.3, help: "" },
  "max-model-len": { type: "int", default: 16384, help: "" },
  model: { type: "string", default: "meta-llama/Llama-3.1-8B-Instruct", help: "" },
  gpu: { type: "string", default: "h100", help: "" },
  engines: { type: "int", default: 4, help: "" },
  seed: { type: "int", default: 1, help: "" },
  routers: { type: "int", default: 1, help: "router processes sharing the group's counts" },
};
const { flags } = benchFlags(specs);
const model = resolveModel(flags.model as string);
const gpu = resolveGpu(flags.gpu as string);
const engine = defaultEngineConfig(model, gpu, {
  gpuMemoryUtilization: flags["gpu-memory-utilization"] as number,
  maxModelLen: flags["max-model-len"] as number,
  blockHashAlgo: "fast",
});
const cap = kvCapacity(engine);
const kvTokens = cap.numGpuBlocks * engine.blockSize;
const nEngines = flags.engines as number;

function run(policy: PolicyName, users: number, concurrency: number) {
  const rounds = flags.rounds as number;
  const workload = multiRoundQaWorkload({
    ...MULTI_ROUND_QA_DEFAULTS,
    numUsers: users,
    numRounds: rounds,
    sharedSystemPrompt: flags["shared-system-prompt"] as number,
    userHistoryPrompt: flags["user-history-prompt"] as number,
    questionLen: flags["question-len"] as number,
    answerLen: flags["answer-len"] as number,
    seed: flags.seed as number,
  });
  const t0 = performance.now();
  const res = simulateFleet({
    engine,
    engines: nEngines,
    policy,
    // as the live router keys them: the bench sends x-session-id on multi-round QA
    sessionKey: "router",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload,
    qps: Infinity,
    arrival: "poisson",
    concurrency,
    maxRequests: users * rounds,
    durationS: Infinity,
    seed: flags.seed as number,
    recordItl: false,
    routers: flags.routers as number,
  });
  const all = summarize(res.records, res.durationS, null);
  const steady = steadyStats(
    res.records.map((r) => ({
      session: r.sessionId,
      round: r.round,
      start: r.start,
      ttft: r.ttft,
      e2el: r.e2el,
      ok: r.ok,
      outputTokens: r.outputTokens,
    })),
  );
  let hits = 0;
  let queries = 0;
  let busyMax = 0;
  let busySum = 0;
  for (const c of res.counters) {
    hits += c.prefixCacheHits;
    queries += c.prefixCacheQueries;
    const b = res.durationS > 0 ? c.busySeconds / res.durationS : 0;
    busySum += b;
    busyMax = Math.max(busyMax, b);
  }
  const perEngine = res.counters.map((c) => c.promptTokens);
  return {
    policy,
    concurrency,
    steady,
    all,
    hitRate: queries > 0 ? hits / queries : NaN,
    busyMean: busySum / res.counters.length,
    busyMax,
    preemptions: res.counters.reduce((a, c) => a + c.numPreemptions, 0),
    promptShare: perEngine.map(
      (p) =>
        p /
        Math.max(
          1,
          perEngine.reduce((a, b) => a + b, 0),
        ),
    ),
    wallS: (performance.now() - t0) / 1000,
  };
}

const ctx =
  (flags["shared-system-prompt"] as number) +
  (flags["user-history-prompt"] as number) +
  (flags.rounds as number) * ((flags["question-len"] as number) + (flags["answer-len"] as number));
const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const sweep = (flags["sweep-concurrency"] as string)
  .split(",")
  .filter(Boolean)
  .map((s) => Number(s));
const points = sweep.length
  ? sweep
  : [(flags.concurrency as number) > 0 ? (flags.concurrency as number) : (flags.users as number)];
console.log(
  `${nEngines} × ${model.id} on ${gpu.id} at gpu-memory-utilization ${flags["gpu-memory-utilization"]}: ` +
    `${kvTokens} KV tokens each; user context up to ≈ ${ctx} tokens`,
);
console.log(
  "| policy | users (= concurrency) | working set / one engine's KV | steady TTFT p50 ms | steady TTFT p99 ms | steady output tok/s | steady req/s | all-rounds TTFT p50 ms | hit rate | engine busy mean / max | preemptions | prompt tokens per engine | sim wall s |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const c of points) {
  const users = sweep.length ? c : (flags.users as number);
  const rows = (flags.policies as string).split(",").map((p) => run(p as PolicyName, users, c));
  for (const r of rows)
    console.log(
      `| ${r.policy} | ${users} | ${f((users * ctx) / kvTokens, 2)} | ${f(r.steady.ttftP50)} | ${f(r.steady.ttftP99)} | ${f(r.steady.outputTps)} | ${f(r.steady.reqPs, 2)} | ${f(r.all.median_ttft_ms as number)} | ${f(r.hitRate * 100, 1)}% | ${f(r.busyMean * 100)}% / ${f(r.busyMax * 100)}% | ${r.preemptions} | ${r.promptShare.map((s) => f(s * 100)).join("/")}% | ${f(r.wallS, 1)} |`,
    );
  const rr = rows.find((r) => r.policy === "round-robin");
  if (rr)
    for (const r of rows)
      if (r !== rr)
        console.log(
          `  ${r.policy} vs round-robin at ${c}: steady TTFT p50 ${f(rr.steady.ttftP50 / r.steady.ttftP50, 2)}× lower, throughput ${f(r.steady.outputTps / rr.steady.outputTps, 2)}×`,
        );
}
