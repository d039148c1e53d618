// The three workloads of the load-range routing benchmark (bench/routing/range.ts), each with the fleet it
// runs on, and one virtual-time run of a (workload, policy, load) point measured over its steady window.
//   multi-round-qa: 4 × Llama-3.1-8B on H100 at gpu-memory-utilization 0.3 (the live routing benchmark's
//     fleet, bench/routing/compare.ts): users with a 1,000-token shared prompt and 8,000-token histories
//     ask 8 questions each, every answer carried into the next round.
//   multi-tenant: 8 × Qwen3-32B at TP 2 on H100 with the KV size of the published llm-d runs (9,271
//     blocks): 150 tenants, each a 4,500-token system prompt, 1,500-token questions (6,000-token
//     prompts, 75% shared), 256-token answers.
//   random: 4 × Llama-3.1-8B on H100: independent prompts of 2,048 ± 50% tokens, 128 ± 50% answers.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { multiRoundQaWorkload, MULTI_ROUND_QA_DEFAULTS } from "../../src/workload/multi-round-qa.js";
import { randomWorkload } from "../../src/workload/random.js";
import { sharedPrefixWorkload } from "../../src/workload/shared-prefix.js";
import type { Workload } from "../../src/workload/types.js";
import type { RequestRecord } from "../../src/workload/record.js";
import { percentile } from "../../src/workload/stats.js";
import { defaultEngineConfig, type EngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet, type FleetOptions } from "../../src/fleet/fleet.js";
import type { PolicyName } from "../../src/routing/index.js";

export type Loop = "open" | "closed";

export interface RangeWorkload {
  name: string;
  /** one line: fleet and workload */
  describe: string;
  engine: EngineConfig;
  engines: number;
  /** the workload for a run of `requests` requests */
  workload(requests: number, seed: number): Workload;
  requests: number;
  /** the session policy's key (other policies get the router's own keys, as live) */
  sessionKey: FleetOptions["sessionKey"];
  /** open loop: at most this many sessions at once (multi-round sessions wait for their answers) */
  openSessionCap: number;
}

const llama = resolveModel("meta-llama/Llama-3.1-8B-Instruct");
const qwen = resolveModel("Qwen/Qwen3-32B");
const h100 = resolveGpu("h100");
const ROUNDS = 8;

export const WORKLOADS: readonly RangeWorkload[] = [
  {
    name: "multi-round-qa",
    describe:
      "4 × Llama-3.1-8B on H100 (gpu-memory-utilization 0.3, 57,936 KV tokens each); users with a 1,000-token shared prompt, 8,000-token histories, 8 rounds of 20-token questions and 100-token answers",
    engine: defaultEngineConfig(llama, h100, {
      gpuMemoryUtilization: 0.3,
      maxModelLen: 16384,
      blockHashAlgo: "fast",
    }),
    engines: 4,
    workload: (requests, seed) =>
      multiRoundQaWorkload({
        ...MULTI_ROUND_QA_DEFAULTS,
        numUsers: Math.ceil(requests / ROUNDS),
        numRounds: ROUNDS,
        sharedSystemPrompt: 1000,
        userHistoryPrompt: 8000,
        questionLen: 20,
        answerLen: 100,
        seed,
      }),
    requests: 1200,
    sessionKey: "session",
    openSessionCap: Infinity,
  },
  {
    name: "multi-tenant",
    describe:
      "8 × Qwen3-32B at TP 2 on H100 (9,271 KV blocks each, as the published llm-d runs); 150 tenants, 4,500-token system prompts + 1,500-token questions, 256-token answers",
    engine: defaultEngineConfig(qwen, h100, {
      tensorParallelSize: 2,
      gpuMemoryUtilization: 0.65,
      numGpuBlocksOverride: 9271,
      blockHashAlgo: "fast",
    }),
    engines: 8,
    workload: (requests, seed) =>
      sharedPrefixWorkload({
        numGroups: 150,
        promptsPerGroup: Math.ceil(requests / 150),
        systemPromptLen: 4500,
        questionLen: 1500,
        outputLen: 256,
        seed,
      }),
    requests: 2400,
    sessionKey: "group",
    openSessionCap: Infinity,
  },
  {
    name: "random",
    describe: "4 × Llama-3.1-8B on H100; independent prompts of 2,048 ± 50% tokens, 128 ± 50% answers",
    engine: defaultEngineConfig(llama, h100, { maxModelLen: 8192, blockHashAlgo: "fast" }),
    engines: 4,
    workload: (requests, seed) =>
      randomWorkload({ inputLen: 2048, outputLen: 128, rangeRatio: 0.5, seed, count: requests }),
    requests: 2400,
    sessionKey: "none",
    openSessionCap: Infinity,
  },
];

export interface PointResult {
  /** TTFTs of the steady window's requests, ms (pooled across seeds for percentiles) */
  ttfts: number[];
  ttftP50: number;
  ttftP90: number;
  /** output tokens/s over the steady window */
  outputTps: number;
  /** completed requests/s over the steady window */
  reqPs: number;
  /** mean end-to-end latency over the steady window, ms */
  e2elMean: number;
  /** mean TTFT of the window's first and last thirds, ms (a growing queue shows as last ≫ first) */
  ttftFirstThird: number;
  ttftLastThird: number;
  hitRate: number;
  wallS: number;
}

/** requests left out at each end of a run: the cold start, and the drain once sending stops */
const WARM_FRACTION = 0.15;
const TAIL_FRACTION = 0.15;

/**
 * Steady-window figures. TTFT: the requests between the first 15% and the last 15% sent (the cold start
 * and the drain left out). Throughput: completions between the 15th and the 85th percentile of completion
 * times, over that span (in overload it is the rate the fleet serves at, not the rate requests arrive at).
 */
export function steadyWindow(records: readonly RequestRecord[]): Omit<PointResult, "hitRate" | "wallS"> {
  const byIndex = [...records].sort((a, b) => a.index - b.index);
  const lo = Math.floor(byIndex.length * WARM_FRACTION);
  const hi = Math.max(lo + 1, Math.ceil(byIndex.length * (1 - TAIL_FRACTION)));
  const mid = byIndex.slice(lo, hi);
  const ttft = mid.filter((r) => r.ok).map((r) => r.ttft);
  const ends = byIndex.filter((r) => r.ok).map((r) => r.start + r.e2el);
  ends.sort((a, b) => a - b);
  const t0 = ends[Math.floor(ends.length * WARM_FRACTION)]!;
  const t1 = ends[Math.min(ends.length - 1, Math.ceil(ends.length * (1 - TAIL_FRACTION)))]!;
  let tokens = 0;
  let done = 0;
  for (const r of byIndex) {
    const end = r.start + r.e2el;
    if (!r.ok || end <= t0 || end > t1) continue;
    tokens += r.outputTokens;
    done++;
  }
  let e2el = 0;
  for (const r of mid) e2el += r.e2el;
  const third = Math.max(1, Math.floor(mid.length / 3));
  const meanTtft = (rs: readonly RequestRecord[]) => {
    const ok = rs.filter((r) => r.ok);
    return ok.reduce((a, r) => a + r.ttft, 0) / Math.max(1, ok.length);
  };
  const spanS = Math.max(1e-9, (t1 - t0) / 1000);
  return {
    ttfts: ttft,
    ttftP50: percentile(ttft, 50),
    ttftP90: percentile(ttft, 90),
    outputTps: tokens / spanS,
    reqPs: done / spanS,
    e2elMean: e2el / mid.length,
    ttftFirstThird: meanTtft(mid.slice(0, third)),
    ttftLastThird: meanTtft(mid.slice(mid.length - third)),
  };
}

export interface PointSpec {
  w: RangeWorkload;
  policy: PolicyName;
  loop: Loop;
  /** open loop: requests/s; closed loop: sessions */
  level: number;
  seed: number;
  requests?: number;
}

export function runPoint(p: PointSpec): PointResult {
  const t0 = performance.now();
  const requests = p.requests ?? p.w.requests;
  const res = simulateFleet({
    engine: p.w.engine,
    engines: p.w.engines,
    policy: p.policy,
    // the router's own session keys, as live (the bench's x-session-id on multi-round QA, inferred
    // elsewhere); the session policy's where it stands in for a tenant header
    sessionKey: p.policy === "session" ? p.w.sessionKey : "router",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload: p.w.workload(requests, p.seed),
    qps: p.loop === "open" ? p.level : Infinity,
    arrival: "poisson",
    concurrency: p.loop === "open" ? p.w.openSessionCap : Math.max(1, Math.round(p.level)),
    maxRequests: requests,
    durationS: Infinity,
    seed: p.seed,
    recordItl: false,
  });
  let hits = 0;
  let queries = 0;
  for (const c of res.counters) {
    hits += c.prefixCacheHits;
    queries += c.prefixCacheQueries;
  }
  return {
    ...steadyWindow(res.records),
    hitRate: queries > 0 ? hits / queries : 0,
    wallS: (performance.now() - t0) / 1000,
  };
}

export interface Calibration {
  /** the highest Poisson rate round-robin keeps up with, req/s */
  capacity: number;
  /** closed loop: the fewest sessions with which round-robin serves its capacity */
  full: number;
}

/**
 * Round-robin's capacity (first seed): the highest Poisson rate it keeps up with (its mean TTFT does not
 * grow across the run's steady window by more than 0.5 s or double; beyond that rate the queue grows for as
 * long as the run lasts), by bisection between a tenth of and the rate it serves with every request sent at
 * once. The closed loop's 100%: the fewest sessions with which it serves that rate.
 */
export function calibrate(w: RangeWorkload, seed: number): Calibration {
  const point = (loop: Loop, level: number) => runPoint({ w, policy: "round-robin", loop, level, seed });
  const keepsUp = (qps: number) => {
    const r = point("open", qps);
    return r.ttftLastThird - r.ttftFirstThird <= Math.max(500, r.ttftFirstThird);
  };
  let hi = point("open", Infinity).reqPs;
  let lo = hi / 10;
  while (hi - lo > hi / 50) {
    const mid = (lo + hi) / 2;
    if (keepsUp(mid)) lo = mid;
    else hi = mid;
  }
  const capacity = lo;
  let nlo = 1;
  let nhi = 2;
  while (point("closed", nhi).reqPs < capacity && nhi < 4096) {
    nlo = nhi;
    nhi *= 2;
  }
  while (nhi - nlo > Math.max(1, nlo / 32)) {
    const mid = Math.round((nlo + nhi) / 2);
    if (point("closed", mid).reqPs >= capacity) nhi = mid;
    else nlo = mid;
  }
  return { capacity, full: nhi };
}

/** round-robin's calibration for a workload, kept in `file` (JSON) between runs when one is given */
export function calibrationFor(w: RangeWorkload, seed: number, file?: string): Calibration {
  const all: Record<string, Calibration> =
    file && existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, Calibration>) : {};
  const key = `${w.name}/${w.requests}/${seed}`;
  const cal = (all[key] ??= calibrate(w, seed));
  if (file) writeFileSync(file, JSON.stringify(all, null, 1));
  return cal;
}
