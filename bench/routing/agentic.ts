// The agentic-session benchmark, in virtual time (`npm run bench -- routing/agentic`): coding-agent sessions
// (src/workload/agentic.ts: growing contexts, tool-call pauses, sub-agents) on 16 engines of the fleet
// simulator, routed by round-robin, predictive and the peers' agent-aware designs as named baselines
// (llm-d-sticky; vllm-router-program, its program scheduling's request pool; session, the plain session
// affinity; vllm-router-cache-aware). Its figure is each policy's capacity within the SLO: the highest
// load (a fraction of round-robin's capacity) at which TTFT p90 ≤ 2 s over all turns and resumed-turn
// TTFT p90 ≤ 1 s hold, the turns of every seed pooled (bench/support/capacity.ts: doubling from 50%, then
// bisection to --resolution). Below capacity every policy carries what it is offered, so goodput at a
// fixed load cannot separate them; --loads adds that table at the loads given:
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
// --tiered: the same engines share one LMCache server (the fleet simulator's `shared_server`: an LRU of
// 256-token chunks every engine stores to and loads from at the link's bandwidth), and predictive reads
// its tier index (`tierAware`); the baselines have no tier index to read. Loads stay fractions of
// round-robin's capacity on the fleet without the server, so tiered and plain figures compare.
// Round-robin's capacity: the highest Poisson request rate it keeps up with (as bench/routing/range-setup.ts).
// --decisions FILE: the decision log of every resumed turn (JSON lines) at the --loads given: per engine
// what the policy predicted (cached tokens, TTFT, cost) and held (awaiting, in flight, KV in use), the
// engine holding the session's context then, the one picked, and how the turn came out; and per policy
// and load a line saying how many resumed turns stayed on their context, moved off it, or found it
// evicted everywhere.
//   node dist/bench/routing/agentic.js [--preset code-gen,b2b] [--policies ...] [--tiered] [--seeds 1,2,3]
//     [--resolution 0.03125] [--max-load 4] [--loads 0.25,1.25] [--no-capacity] [--sessions N] [--json FILE]
//     [--calibration-cache FILE] [--decisions FILE]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { BASELINE_POLICY_NAMES, type PolicyName } from "../../src/routing/index.js";
import {
  AGENTIC_PRESETS,
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
import { highestLoadHeld, judge, type CapacitySlo, type SloVerdict } from "../support/capacity.js";
import { addFates, logResumed, noFates, type Fates, type LogTag } from "./agentic-decisions.js";

const specs: FlagSpecs = {
  preset: { type: "string", default: AGENTIC_PRESET_NAMES.join(","), help: "presets, comma-separated" },
  policies: {
    type: "string",
    default: "round-robin,predictive,llm-d-sticky,vllm-router-program,session,vllm-router-cache-aware",
    help: "",
  },
  loads: {
    type: "string",
    default: "",
    help: "fractions of round-robin's capacity for the goodput table (none: capacities only)",
  },
  capacity: {
    type: "boolean",
    default: true,
    negatable: true,
    help: "search each policy's capacity (--no-capacity: the --loads table only)",
  },
  tiered: { type: "boolean", default: false, help: "engines share an LMCache server; predictive reads it" },
  "shared-gib": { type: "number", default: 512, help: "--tiered: the shared server's memory, GiB" },
  "shared-gbps": { type: "number", default: 100, help: "--tiered: each engine's link to it, Gbit/s" },
  "slo-ttft-p90": { type: "number", default: 2000, help: "capacity SLO: TTFT p90 over all turns, ms" },
  "slo-resumed-p90": { type: "number", default: 1000, help: "capacity SLO: resumed-turn TTFT p90, ms" },
  resolution: {
    type: "number",
    default: 1 / 32,
    help: "capacity search: stop when held and missed are this close",
  },
  "max-load": { type: "number", default: 4, help: "capacity search: the highest load tried" },
  seeds: { type: "string", default: "1,2,3", help: "" },
  sessions: { type: "string", help: "sessions per run (default: the preset's)" },
  json: { type: "string", help: "write the capacities (and the --loads rows) as JSON" },
  "calibration-cache": { type: "string", help: "JSON file keeping round-robin's capacity between runs" },
  decisions: { type: "string", help: "write the decision log of resumed turns (JSON lines) to this file" },
};
const { flags } = benchFlags(specs);
const list = (k: string) => (flags[k] as string).split(",").filter(Boolean);
const presets = list("preset").map((p) => {
  if (!(AGENTIC_PRESET_NAMES as string[]).includes(p))
    throw new Error(`unknown preset ${p} (known: ${AGENTIC_PRESET_NAMES.join(", ")})`);
  return p as AgenticPreset;
});
/** predictive on the tiered fleet without reading the tier index: what the index itself gives */
const TIER_BLIND = "predictive-tier-blind";
type RunPolicy = PolicyName | typeof TIER_BLIND;
const policies = list("policies") as RunPolicy[];
const loads = list("loads").map(Number);
const seeds = list("seeds").map(Number);
const tiered = flags.tiered === true;
const slo: CapacitySlo = {
  ttftP90Ms: flags["slo-ttft-p90"] as number,
  resumedTtftP90Ms: flags["slo-resumed-p90"] as number,
};
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
    describe: "16 × Qwen3-32B TP 2 on H100, 20,118 KV blocks each; goodput SLO TTFT ≤ 2 s, TPOT ≤ 100 ms",
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
    describe: "16 × Qwen3-32B TP 2 on H100, 9,271 KV blocks each; goodput SLO TTFT ≤ 1 s, TPOT ≤ 100 ms",
  },
  // the lead agents' contexts (7k-12k tokens, four sub-agent copies each) overfill 2,500 blocks an engine
  "fan-out": {
    engine: defaultEngineConfig(qwen, h100, {
      tensorParallelSize: 2,
      maxModelLen: 81_920,
      numGpuBlocksOverride: 2500,
      blockHashAlgo: "fast",
    }),
    engines: 16,
    sloTtftMs: 1000,
    sloTpotMs: 100,
    describe: "16 × Qwen3-32B TP 2 on H100, 2,500 KV blocks each; goodput SLO TTFT ≤ 1 s, TPOT ≤ 100 ms",
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

/**
 * Sessions in a run at `load`: the preset's (or --sessions), times the load above 1. A run's sessions are
 * its whole load: the client sends a turn only once its session's tool returns, so a fixed set offers at
 * most what its pauses allow (code-gen's 64 sessions about 1.9× round-robin's capacity, 2.6 req/s, under
 * predictive), and a search above that would find every policy holding a load never sent.
 */
function sessionsAt(preset: AgenticPreset, load: number): number {
  return Math.ceil((sessionsOver ?? AGENTIC_PRESETS[preset].sessions) * Math.max(1, load));
}

/**
 * the shared server of --tiered: `shared-gib` of 256-token chunks (LMCache's chunk size), read at
 * `shared-gbps` by each engine
 */
const sharedServer = tiered
  ? {
      bytes: (flags["shared-gib"] as number) * 2 ** 30,
      bandwidth: ((flags["shared-gbps"] as number) * 1e9) / 8,
      chunkTokens: 256,
    }
  : null;

/**
 * A run at `qps`. `tiers`: whether the fleet has the shared server (--tiered; round-robin's calibration
 * runs without it) and the policy reads its tier index (predictive's own, unless named tier-blind);
 * `log`: keep the decisions for the decision log (the --loads table's runs, with --decisions);
 * `load`: the fraction of round-robin's capacity `qps` is, which scales the sessions (sessionsAt);
 * `onRecord`: sees each finished request, true ends the run there.
 */
function run(
  preset: AgenticPreset,
  name: RunPolicy,
  qps: number,
  seed: number,
  o: {
    tiers?: boolean;
    log?: boolean;
    load?: number;
    onRecord?: (x: RequestRecord, sessions: ReadonlyMap<string, Session>) => boolean;
  } = {},
): RunResult {
  const s = SETUPS[preset];
  const { tiers = sharedServer !== null, log = false } = o;
  const policy: PolicyName = name === TIER_BLIND ? "predictive" : name;
  const workload = agenticWorkload(
    agenticOptions(preset, seed, { sessions: sessionsAt(preset, o.load ?? 0) }),
  );
  const byId = new Map([...withForks(workload.sessions)].map((x) => [x.id, x]));
  const onRecord = o.onRecord;
  const decisions = log && flags.decisions !== undefined ? new Map<number, FleetDecision>() : null;
  const res = simulateFleet({
    ...(decisions ? { onDecision: (d: FleetDecision) => decisions.set(d.index, d) } : {}),
    ...(onRecord ? { hooks: { onRecord: (x: RequestRecord) => onRecord(x, byId) } } : {}),
    engine: s.engine,
    engines: s.engines,
    policy,
    // as the live router keys them (the agentic workload sends x-session-id)
    sessionKey: "router",
    scrapeIntervalS: 1,
    sharedServer: tiers ? sharedServer : null,
    tierAware: tiers && name === "predictive",
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
    sessions: [...byId.values()],
    routedTo: res.routedTo,
    decisions,
  };
}

/** Round-robin's capacity: the highest Poisson rate at which its mean TTFT does not grow across the run. */
function roundRobinCapacity(preset: AgenticPreset, seed: number): number {
  const point = (qps: number) =>
    steadyWindow(run(preset, "round-robin", qps, seed, { tiers: false }).records);
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
  const cap = (all[key] ??= roundRobinCapacity(preset, seed));
  if (file) writeFileSync(file, JSON.stringify(all, null, 1));
  return cap;
}

/** a session's own first turn (a sub-agent's carries its parent's context): cold but for the system prompt */
const coldFirst = (s: Session, round: number) => s.parentId === undefined && round === (s.startRound ?? 0);

/** the turns a run at `load` sends that the SLO counts: all but cold first turns, and resumed ones */
function sloTurns(
  preset: AgenticPreset,
  seed: number,
  load: number,
): { turns: number; all: number; resumed: number } {
  const w = agenticWorkload(agenticOptions(preset, seed, { sessions: sessionsAt(preset, load) }));
  let turns = 0;
  let all = 0;
  let resumed = 0;
  for (const s of withForks(w.sessions))
    for (let r = s.startRound ?? 0; r < s.turns.length; r++) {
      turns++;
      if (!coldFirst(s, r)) all++;
      if (sentAfterPause(s, r)) resumed++;
    }
  return { turns, all, resumed };
}

interface Measures {
  /** TTFTs of the steady window's turns sent after a tool pause, ms */
  resumedTtfts: number[];
  /**
   * for the capacity SLO, TTFTs of the steady window's turns (a failed one: Infinity): all but sessions'
   * first turns, and the resumed ones
   */
  sloTtfts: number[];
  sloResumedTtfts: number[];
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

function measure(r: RunResult, setup: Setup, tag: LogTag | null): Measures {
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
  const sloTtfts: number[] = [];
  const sloResumedTtfts: number[] = [];
  const resumed: RequestRecord[] = [];
  for (const x of recs.slice(lo, hi)) {
    const s = byId.get(x.sessionId);
    const ttft = x.ok ? x.ttft : Infinity;
    // the SLO's all-turn bound leaves out sessions' first turns (coldFirst) (a sub-agent's, which carries its
    // parent's context, stays in). A code-gen session opens with a 50k-token prompt of which only the 10k
    // shared system prompt can be cached anywhere: about 6 s of prefill on an idle engine, whatever the
    // router does. And the client sends a ready follow-up before it starts a session, so how many first
    // turns the window holds depends on the load and the sessions, not the routing (code-gen's 64
    // sessions at 50% of round-robin's capacity: 41 of 321, TTFT p90 6.1 s for every policy; at 120%:
    // none). Counted, they would make the SLO fail at low load and hold at high, which no search bisects.
    if (s && !coldFirst(s, x.round)) sloTtfts.push(ttft);
    if (!s || !sentAfterPause(s, x.round)) continue;
    sloResumedTtfts.push(ttft);
    if (x.ok) {
      resumedTtfts.push(x.ttft);
      resumed.push(x);
    }
  }
  const byTurn = new Map(recs.map((x) => [`${x.sessionId}#${x.round}`, x]));
  const fates =
    r.decisions && tag && flags.decisions
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
    sloTtfts,
    sloResumedTtfts,
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
  policy: RunPolicy;
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

/** a policy's capacity within the SLO, as --json writes it (a bound never reached: null) */
interface CapacityRow {
  preset: AgenticPreset;
  policy: RunPolicy;
  baseline: boolean;
  /** the highest fraction of round-robin's capacity held within the SLO (0: none from 1/16 up) */
  load: number;
  /** that load in requests/s, the seeds' mean */
  qps: number;
  ttft_p90_ms: number | null;
  resumed_ttft_p90_ms: number | null;
  /** the lowest load tried above it that missed the SLO, and its percentiles */
  missed: number | null;
  missed_ttft_p90_ms: number | null;
  missed_resumed_ttft_p90_ms: number | null;
  /** the missed load's runs were ended early, once the SLO was certain to be missed (no percentiles) */
  missed_stopped_early: boolean;
  tried: { load: number; held: boolean }[];
}

const finite = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? Math.round(x) : null);
const n = (x: number | null) => (x === null ? "—" : Math.round(x).toLocaleString("en-US"));
const pct = (x: number) => `${Math.round(x * 1000) / 10}%`;

/** every policy's capacity on one preset: the capacity search over loads, seeds pooled at each */
function capacities(preset: AgenticPreset, caps: ReadonlyMap<number, number>): CapacityRow[] {
  const setup = SETUPS[preset];
  const meanQps = (load: number) => seeds.reduce((a, s) => a + caps.get(s)! * load, 0) / seeds.length;
  const out: CapacityRow[] = [];
  console.log(
    `
capacity within the SLO: TTFT p90 ≤ ${n(slo.ttftP90Ms)} ms and resumed-turn TTFT p90 ≤ ${n(slo.resumedTtftP90Ms)} ms, seeds ${seeds.join(",")} pooled${tiered ? `; tiered (${flags["shared-gib"]} GiB shared server at ${flags["shared-gbps"]} Gbit/s)` : ""}`,
  );
  console.log(
    "\n| policy | highest load held | req/s | TTFT p90 ms | resumed p90 ms | lowest missed | TTFT p90 ms | resumed p90 ms | loads tried |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const policy of policies) {
    const verdicts = new Map<number, SloVerdict>();
    const found = highestLoadHeld(
      (load) => {
        // a run ends once the load's seeds have more turns of the steady window (as measure() takes it)
        // over a bound than 10% of all they could count, and one more: the pooled p90 misses the SLO
        // whatever follows, and an overloaded run is the slowest to simulate
        const totals = seeds.map((seed) => sloTurns(preset, seed, load));
        const over = { all: 0, resumed: 0 };
        const most = {
          all: 0.1 * totals.reduce((a, t) => a + t.all, 0) + 1,
          resumed: 0.1 * totals.reduce((a, t) => a + t.resumed, 0) + 1,
        };
        const per: Measures[] = [];
        for (const [i, seed] of seeds.entries()) {
          const turns = totals[i]!.turns;
          const r = run(preset, policy, caps.get(seed)! * load, seed, {
            load,
            onRecord: (x, byId) => {
              const s = byId.get(x.sessionId);
              if (!s || x.index < Math.floor(turns * 0.15) || x.index >= Math.ceil(turns * 0.85))
                return false;
              const ttft = x.ok ? x.ttft : Infinity;
              if (!coldFirst(s, x.round) && ttft > slo.ttftP90Ms) over.all++;
              if (sentAfterPause(s, x.round) && ttft > slo.resumedTtftP90Ms) over.resumed++;
              return over.all > most.all || over.resumed > most.resumed;
            },
          });
          if (over.all > most.all || over.resumed > most.resumed) {
            // no percentiles: the runs did not finish
            const v = { held: false, ttftP90Ms: NaN, resumedTtftP90Ms: NaN };
            verdicts.set(load, v);
            return false;
          }
          per.push(measure(r, setup, null));
        }
        const v = judge(
          { ttfts: per.flatMap((m) => m.sloTtfts), resumedTtfts: per.flatMap((m) => m.sloResumedTtfts) },
          slo,
        );
        verdicts.set(load, v);
        return v.held;
      },
      { start: 0.5, min: 1 / 16, max: flags["max-load"] as number, resolution: flags.resolution as number },
    );
    const held = verdicts.get(found.load);
    const missed = Number.isFinite(found.missed) ? verdicts.get(found.missed) : undefined;
    const row: CapacityRow = {
      preset,
      policy,
      baseline: isBaseline(policy),
      load: found.load,
      qps: meanQps(found.load),
      ttft_p90_ms: finite(held?.ttftP90Ms),
      resumed_ttft_p90_ms: finite(held?.resumedTtftP90Ms),
      missed: Number.isFinite(found.missed) ? found.missed : null,
      missed_ttft_p90_ms: finite(missed?.ttftP90Ms),
      missed_resumed_ttft_p90_ms: finite(missed?.resumedTtftP90Ms),
      missed_stopped_early: missed !== undefined && Number.isNaN(missed.ttftP90Ms),
      tried: found.tried,
    };
    out.push(row);
    console.log(
      `| ${policy} | ${pct(row.load)} | ${row.qps.toFixed(2)} | ${n(row.ttft_p90_ms)} | ${n(row.resumed_ttft_p90_ms)} | ${row.missed === null ? "—" : pct(row.missed)} | ${row.missed_stopped_early ? "stopped | stopped" : `${n(row.missed_ttft_p90_ms)} | ${n(row.missed_resumed_ttft_p90_ms)}`} | ${found.tried.length} |`,
    );
  }
  if (out.some((r) => r.missed_stopped_early))
    console.log(
      "\nstopped: the load's runs were ended once more turns were over a bound than the p90 allows",
    );
  const best = out.filter((r) => r.baseline).sort((a, b) => b.load - a.load)[0];
  const ours = out.find((r) => r.policy === "predictive");
  if (best && ours)
    console.log(
      `\npredictive holds ${best.load > 0 ? `${(ours.load / best.load).toFixed(2)}×` : "more than"} the best baseline's load (${best.policy}, ${pct(best.load)})`,
    );
  return out;
}

/** the goodput table at the --loads given (and the decision log's runs) */
function fixedLoads(preset: AgenticPreset, caps: ReadonlyMap<number, number>): Row[] {
  const setup = SETUPS[preset];
  const out: Row[] = [];
  const fateLines: string[] = [];
  console.log(
    "\n| policy | load | input tok/s | goodput req/s | goodput input tok/s | resumed TTFT p50 ms | p90 ms | prefill recomputed / session |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const load of loads) {
    for (const policy of policies) {
      const per = seeds.map((seed) =>
        measure(run(preset, policy, caps.get(seed)! * load, seed, { log: true, load }), setup, {
          preset,
          policy,
          load,
          seed,
        }),
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
      out.push(row);
      const f = per.reduce((a, m) => addFates(a, m.fates), noFates());
      fateLines.push(
        `${policy} ${Math.round(load * 100)}%: resumed turns stayed on their context ${f.stayed}, moved off it ${f.moved}, found it evicted ${f.lost} (${f.lostUnderNewSessions} with new sessions placed on their engine during the pause)`,
      );
      console.log(
        `| ${policy} | ${Math.round(load * 100)}% | ${n(row.input_tps)} | ${row.goodput_rps.toFixed(2)} | ${n(row.goodput_input_tps)} | ${n(row.resumed_ttft_p50_ms)} | ${n(row.resumed_ttft_p90_ms)} | ${n(row.recomputed_prefill_tokens_per_session)} |`,
      );
    }
  }
  if (flags.decisions) console.log(`\n${fateLines.join("\n")}`);
  return out;
}

const rows: Row[] = [];
const capacity: CapacityRow[] = [];
const t0 = performance.now();
if (flags.decisions) writeFileSync(flags.decisions as string, "");
for (const preset of presets) {
  const caps = new Map(seeds.map((s) => [s, capacityFor(preset, s)]));
  console.log(`\n## ${preset}: ${SETUPS[preset].describe}`);
  console.log(
    `round-robin's capacity: ${seeds.map((s) => `${caps.get(s)!.toFixed(2)} req/s (seed ${s})`).join(", ")}`,
  );
  if (flags.capacity !== false) capacity.push(...capacities(preset, caps));
  if (loads.length > 0) rows.push(...fixedLoads(preset, caps));
}
console.log(`\n${((performance.now() - t0) / 1000).toFixed(0)} s`);
if (flags.json)
  writeFileSync(
    flags.json as string,
    JSON.stringify(
      {
        slo: { ttft_p90_ms: slo.ttftP90Ms, resumed_ttft_p90_ms: slo.resumedTtftP90Ms },
        tiered: sharedServer
          ? { shared_gib: flags["shared-gib"], shared_gbps: flags["shared-gbps"], chunk_tokens: 256 }
          : null,
        seeds,
        capacity,
        rows,
      },
      null,
      1,
    ),
  );
