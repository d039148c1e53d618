// The agentic-session benchmark, in virtual time (`npm run bench -- routing/agentic`): coding-agent sessions
// (src/workload/agentic.ts: growing contexts, tool-call pauses, sub-agents) on 16 engines of the fleet
// simulator, routed by round-robin, predictive and the peers' agent-aware designs as named baselines
// (llm-d-sticky; vllm-router-program, its program scheduling's request pool; session, the plain session
// affinity; vllm-router-cache-aware), at loads from 25% to 125%
// of round-robin's capacity, seeds pooled. What it measures per policy and load:
//   - resumed-turn TTFT p50/p90: turns sent after a tool pause, where a policy that kept the session's KV
//     pays a few thousand tokens of prefill and one that lost it pays the whole context;
//   - prefill tokens recomputed per session: of each turn's previous context (the last prompt and its
//     answer), the tokens the engine did not find cached;
//   - goodput at an SLO (requests meeting TTFT and TPOT bounds, per second) and input tokens/s.
// The fleet: Qwen3-32B at TP 2 on H100 (the published llm-d runs' model and GPUs), context extended to
// 131,072 by YaRN as its model card describes (the code-gen prompts reach 72k), max-model-len 81,920.
//   code-gen: gpu-memory-utilization 0.9, 20,118 KV blocks (321,888 tokens) per engine: four or five
//     72k contexts, so paused sessions' KV competes with running ones once load passes a third.
//   b2b: 9,271 KV blocks per engine (the published multi-tenant llm-d runs' size): about twenty 7k
//     contexts, so at capacity the sessions waiting on tools outnumber what the engines hold.
// Round-robin's capacity: the highest Poisson request rate it keeps up with (as bench/routing/range-setup.ts).
// --decisions FILE: the decision log of every resumed turn (JSON lines): per engine what the policy
// predicted (cached tokens, TTFT, cost) and held (awaiting, in flight, KV in use), the engine holding the
// session's context then, the one picked, and how the turn came out; and per policy and load a line
// saying how many resumed turns stayed on their context, moved off it, or found it evicted everywhere.
//   node dist/bench/routing/agentic.js [--preset code-gen,b2b] [--policies ...] [--loads 0.25,0.75,1.25]
//     [--seeds 1,2,3] [--sessions N] [--json FILE] [--calibration-cache FILE] [--decisions FILE]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseFlags, type FlagSpecs } from "../../src/config/args.js";
import { BASELINE_POLICY_NAMES, type PolicyName } from "../../src/routing/index.js";
import {
  AGENTIC_PRESET_NAMES,
  agenticOptions,
  agenticWorkload,
  withForks,
  type AgenticPreset,
} from "../../src/workload/agentic.js";
import { type RequestRecord, tpotOf } from "../../src/workload/record.js";
import { percentile } from "../../src/workload/stats.js";
import { sentAfterPause, type Session } from "../../src/workload/types.js";
import { defaultEngineConfig, type EngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet, type FleetDecision } from "../../src/fleet/fleet.js";
import { steadyWindow } from "./range-setup.js";
import { addFates, logResumed, noFates, type Fates, type LogTag } from "./agentic-decisions.js";

const specs: FlagSpecs = {
  preset: { type: "string", default: AGENTIC_PRESET_NAMES.join(","), help: "presets, comma-separated" },
  policies: {
    type: "string",
    default: "round-robin,predictive,llm-d-sticky,vllm-router-program,session,vllm-router-cache-aware",
    help: "",
  },
  loads: { type: "string", default: "0.25,0.75,1.25", help: "fractions of round-robin's capacity" },
  seeds: { type: "string", default: "1,2,3", help: "" },
  sessions: { type: "string", help: "sessions per run (default: the preset's)" },
  json: { type: "string", help: "write one row per preset, policy and load as JSON" },
  "calibration-cache": { type: "string", help: "JSON file keeping round-robin's capacity between runs" },
  decisions: { type: "string", help: "write the decision log of resumed turns (JSON lines) to this file" },
};
const { flags } = parseFlags(process.argv.slice(2), specs);
const list = (k: string) => (flags[k] as string).split(",").filter(Boolean);
const presets = list("preset").map((p) => {
  if (!(AGENTIC_PRESET_NAMES as string[]).includes(p))
    throw new Error(`unknown preset ${p} (known: ${AGENTIC_PRESET_NAMES.join(", ")})`);
  return p as AgenticPreset;
});
const policies = list("policies") as PolicyName[];
const loads = list("loads").map(Number);
const seeds = list("seeds").map(Number);
const sessionsOver = flags.sessions !== undefined ? Number(flags.sessions) : undefined;

/** the peers' designs: the named baselines, and `session` as plain session affinity */
const isBaseline = (p: string) => p === "session" || (BASELINE_POLICY_NAMES as readonly string[]).includes(p);

interface Setup {
  engine: EngineConfig;
  engines: number;
  /** the SLO goodput counts against */
  sloTtftMs: number;
  sloTpotMs: number;
  describe: string;
}

const qwen = { ...resolveModel("Qwen/Qwen3-32B"), maxContext: 131_072 };
const h100 = resolveGpu("h100");
const SETUPS: Record<AgenticPreset, Setup> = {
  "code-gen": {
    engine: defaultEngineConfig(qwen, h100, {
      tensorParallelSize: 2,
      maxModelLen: 81_920,
      blockHashAlgo: "fast",
    }),
    engines: 16,
    sloTtftMs: 2000,
    sloTpotMs: 100,
    describe: "16 × Qwen3-32B TP 2 on H100, 20,118 KV blocks each; SLO TTFT ≤ 2 s, TPOT ≤ 100 ms",
  },
  b2b: {
    engine: defaultEngineConfig(qwen, h100, {
      tensorParallelSize: 2,
      maxModelLen: 81_920,
      numGpuBlocksOverride: 9271,
      blockHashAlgo: "fast",
    }),
    engines: 16,
    sloTtftMs: 1000,
    sloTpotMs: 100,
    describe: "16 × Qwen3-32B TP 2 on H100, 9,271 KV blocks each; SLO TTFT ≤ 1 s, TPOT ≤ 100 ms",
  },
};

interface RunResult {
  records: RequestRecord[];
  cached: number[];
  sessions: Session[];
  routedTo: number[];
  /** by request index, when the decision log is on */
  decisions: Map<number, FleetDecision> | null;
}

function run(preset: AgenticPreset, policy: PolicyName, qps: number, seed: number): RunResult {
  const s = SETUPS[preset];
  const o = agenticOptions(preset, seed, sessionsOver !== undefined ? { sessions: sessionsOver } : {});
  const workload = agenticWorkload(o);
  const decisions = flags.decisions !== undefined ? new Map<number, FleetDecision>() : null;
  const res = simulateFleet({
    ...(decisions ? { onDecision: (d: FleetDecision) => decisions.set(d.index, d) } : {}),
    engine: s.engine,
    engines: s.engines,
    policy,
    // as the live router keys them (the agentic workload sends x-session-id)
    sessionKey: "router",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload,
    qps,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: Infinity,
    durationS: Infinity,
    seed,
    recordItl: false,
  });
  return {
    records: res.records,
    cached: res.cachedTokens,
    sessions: [...withForks(workload.sessions)],
    routedTo: res.routedTo,
    decisions,
  };
}

/** Round-robin's capacity: the highest Poisson rate at which its mean TTFT does not grow across the run. */
function capacity(preset: AgenticPreset, seed: number): number {
  const point = (qps: number) => steadyWindow(run(preset, "round-robin", qps, seed).records);
  const keepsUp = (qps: number) => {
    const r = point(qps);
    return r.ttftLastThird - r.ttftFirstThird <= Math.max(500, r.ttftFirstThird);
  };
  let hi = point(Infinity).reqPs;
  let lo = hi / 10;
  while (hi - lo > hi / 25) {
    const mid = (lo + hi) / 2;
    if (keepsUp(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

function capacityFor(preset: AgenticPreset, seed: number): number {
  const file = flags["calibration-cache"] as string | undefined;
  const all: Record<string, number> =
    file && existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, number>) : {};
  const key = `${preset}/${sessionsOver ?? "default"}/${seed}`;
  const cap = (all[key] ??= capacity(preset, seed));
  if (file) writeFileSync(file, JSON.stringify(all, null, 1));
  return cap;
}

interface Measures {
  /** TTFTs of the steady window's turns sent after a tool pause, ms */
  resumedTtfts: number[];
  /** prefill tokens recomputed, and sessions (forks counted as sessions) */
  recomputed: number;
  sessions: number;
  /** over the steady window's completions: span, input and output tokens, requests and input tokens within the SLO */
  spanS: number;
  inputTokens: number;
  outputTokens: number;
  good: number;
  goodInputTokens: number;
  /** resumed turns by what became of their context (the decision log only) */
  fates: Fates;
}

function measure(r: RunResult, setup: Setup, tag: LogTag): Measures {
  const byId = new Map(r.sessions.map((s) => [s.id, s]));
  const recs = [...r.records].sort((a, b) => a.index - b.index);
  // what each turn left as context for the next: its prompt and its answer
  const context = new Map<string, number>();
  for (const x of recs) if (x.ok) context.set(`${x.sessionId}#${x.round}`, x.promptTokens + x.outputTokens);
  let recomputed = 0;
  for (const x of recs) {
    if (!x.ok) continue;
    const s = byId.get(x.sessionId);
    if (!s) continue;
    const start = s.startRound ?? 0;
    const prev =
      x.round > start
        ? context.get(`${x.sessionId}#${x.round - 1}`)
        : s.parentId !== undefined
          ? context.get(`${s.parentId}#${start - 1}`)
          : undefined;
    if (prev !== undefined) recomputed += Math.max(0, prev - (r.cached[x.index] ?? 0));
  }
  const lo = Math.floor(recs.length * 0.15);
  const hi = Math.max(lo + 1, Math.ceil(recs.length * 0.85));
  const resumedTtfts: number[] = [];
  const resumed: RequestRecord[] = [];
  for (const x of recs.slice(lo, hi)) {
    const s = byId.get(x.sessionId);
    if (x.ok && s && sentAfterPause(s, x.round)) {
      resumedTtfts.push(x.ttft);
      resumed.push(x);
    }
  }
  const byTurn = new Map(recs.map((x) => [`${x.sessionId}#${x.round}`, x]));
  const fates =
    r.decisions && flags.decisions
      ? logResumed(
          flags.decisions as string,
          tag,
          resumed,
          r.decisions,
          r.routedTo,
          r.cached,
          (x) => byTurn.get(`${x.sessionId}#${x.round - 1}`),
          byId,
        )
      : noFates();
  const ends = recs.filter((x) => x.ok).map((x) => x.start + x.e2el);
  ends.sort((a, b) => a - b);
  const t0 = ends[Math.floor(ends.length * 0.15)] ?? 0;
  const t1 = ends[Math.min(ends.length - 1, Math.ceil(ends.length * 0.85))] ?? 0;
  const m: Measures = {
    resumedTtfts,
    recomputed,
    sessions: byId.size,
    spanS: Math.max(1e-9, (t1 - t0) / 1000),
    inputTokens: 0,
    outputTokens: 0,
    good: 0,
    goodInputTokens: 0,
    fates,
  };
  for (const x of recs) {
    const end = x.start + x.e2el;
    if (!x.ok || end <= t0 || end > t1) continue;
    m.inputTokens += x.promptTokens;
    m.outputTokens += x.outputTokens;
    const tpot = tpotOf(x);
    if (x.ttft <= setup.sloTtftMs && (tpot === null || tpot <= setup.sloTpotMs)) {
      m.good++;
      m.goodInputTokens += x.promptTokens;
    }
  }
  return m;
}

interface Row {
  preset: AgenticPreset;
  policy: PolicyName;
  baseline: boolean;
  load: number;
  qps: number;
  input_tps: number;
  output_tps: number;
  goodput_rps: number;
  goodput_input_tps: number;
  resumed_ttft_p50_ms: number;
  resumed_ttft_p90_ms: number;
  recomputed_prefill_tokens_per_session: number;
  seeds: number[];
}

const rows: Row[] = [];
const t0 = performance.now();
if (flags.decisions) writeFileSync(flags.decisions as string, "");
for (const preset of presets) {
  const fateLines: string[] = [];
  const setup = SETUPS[preset];
  const caps = new Map(seeds.map((s) => [s, capacityFor(preset, s)]));
  console.log(`\n## ${preset}: ${setup.describe}`);
  console.log(
    `round-robin's capacity: ${seeds.map((s) => `${caps.get(s)!.toFixed(2)} req/s (seed ${s})`).join(", ")}`,
  );
  console.log(
    "\n| policy | load | input tok/s | goodput req/s | goodput input tok/s | resumed TTFT p50 ms | p90 ms | prefill recomputed / session |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const load of loads) {
    for (const policy of policies) {
      const per = seeds.map((seed) =>
        measure(run(preset, policy, caps.get(seed)! * load, seed), setup, { preset, policy, load, seed }),
      );
      const ttfts = per.flatMap((m) => m.resumedTtfts);
      const mean = (f: (m: Measures) => number) => per.reduce((a, m) => a + f(m), 0) / per.length;
      const row: Row = {
        preset,
        policy,
        baseline: isBaseline(policy),
        load,
        qps: seeds.reduce((a, s) => a + caps.get(s)! * load, 0) / seeds.length,
        input_tps: mean((m) => m.inputTokens / m.spanS),
        output_tps: mean((m) => m.outputTokens / m.spanS),
        goodput_rps: mean((m) => m.good / m.spanS),
        goodput_input_tps: mean((m) => m.goodInputTokens / m.spanS),
        resumed_ttft_p50_ms: percentile(ttfts, 50),
        resumed_ttft_p90_ms: percentile(ttfts, 90),
        recomputed_prefill_tokens_per_session:
          per.reduce((a, m) => a + m.recomputed, 0) /
          Math.max(
            1,
            per.reduce((a, m) => a + m.sessions, 0),
          ),
        seeds,
      };
      rows.push(row);
      const f = per.reduce((a, m) => addFates(a, m.fates), noFates());
      fateLines.push(
        `${policy} ${Math.round(load * 100)}%: resumed turns stayed on their context ${f.stayed}, moved off it ${f.moved}, found it evicted ${f.lost} (${f.lostUnderNewSessions} with new sessions placed on their engine during the pause)`,
      );
      const n = (x: number) => Math.round(x).toLocaleString("en-US");
      console.log(
        `| ${policy} | ${Math.round(load * 100)}% | ${n(row.input_tps)} | ${row.goodput_rps.toFixed(2)} | ${n(row.goodput_input_tps)} | ${n(row.resumed_ttft_p50_ms)} | ${n(row.resumed_ttft_p90_ms)} | ${n(row.recomputed_prefill_tokens_per_session)} |`,
      );
    }
  }
  if (flags.decisions) console.log(`\n${fateLines.join("\n")}`);
}
console.log(`\n${((performance.now() - t0) / 1000).toFixed(0)} s`);
if (flags.json) writeFileSync(flags.json as string, JSON.stringify({ rows }, null, 1));
