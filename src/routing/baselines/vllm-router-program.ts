// `vllm-router-program`: vllm-router 0.1.17's program scheduling, as its `docs/program_scheduling.md`
// describes it, as a baseline beside ours. What sets it apart from an affinity policy is that it holds
// requests: a program (one agent's loop of model turns and tool calls) is admitted to an engine only
// while the engine has logical KV-token capacity for it, and otherwise waits in the router's pool.
// Holding is the policy's last filter emptying the candidates: `decide` says "saturated", and both
// callers keep the request waiting and decide again when requests finish and every `recheckMs`. The
// document's rules as modelled, our reading where it gives no formula, and what is not modelled:
// docs/routing.md#agent-aware-baselines.
import { LruMap } from "../../collections/lru-map.js";
import { standardFilters } from "../policy/filters.js";
import { unitHash } from "../policy/hash.js";
import { RequestMemo } from "../policy/memo.js";
import { agenticContextOf, type AgenticContext } from "../sessions/session-identity.js";
import { firstMaxPicker } from "./vllm-router-cache-aware.js";
import type { CacheOracle, CachePrediction } from "../policy/cache-oracle.js";
import type { EngineView, FleetSnapshot, RequestView } from "../policy/views.js";
import type { Filter, Policy, Scorer } from "../policy/policy.js";

export interface VllmRouterProgramOptions {
  /**
   * each engine's logical KV-token capacity (`token_capacity_per_target`); undefined for an engine:
   * the active-program count guard alone
   */
  tokenCapacity?: ((engine: EngineView) => number | undefined) | undefined;
  /** `max_active_programs_per_target` */
  maxActivePrograms?: number;
  /** `admission_waiting_request_threshold`; 0 = no waiting gate */
  waitingThreshold?: number;
  /** `cross_rank_headroom_ratio` */
  crossRankHeadroom?: number;
  /** `global_queue` */
  globalQueue?: boolean;
  /** `decode_buffer_tokens` */
  decodeBufferTokens?: number;
  /** `max_acting_ttl_seconds`, ms */
  maxActingTtlMs?: number;
  /** `stats_window_size` */
  statsWindow?: number;
  /** `force_resume_timeout_seconds`, ms */
  forceResumeMs?: number;
  /** `paused_retention_ttl_seconds`, ms: a program unseen this long is forgotten */
  pausedRetentionMs?: number;
  /** programs remembered at most (the least recently seen are forgotten beyond it) */
  maxPrograms?: number;
}

/** the document's defaults, `global_queue` as it recommends */
export const VLLM_ROUTER_PROGRAM_DEFAULTS: Required<Omit<VllmRouterProgramOptions, "tokenCapacity">> = {
  maxActivePrograms: 64,
  waitingThreshold: 1,
  crossRankHeadroom: 1.2,
  globalQueue: true,
  decodeBufferTokens: 100,
  maxActingTtlMs: 10_000,
  statsWindow: 100,
  forceResumeMs: 300_000,
  pausedRetentionMs: 1_800_000,
  maxPrograms: 65_536,
};

/** how often a caller decides waiting requests again (vllm-router's `metrics_interval_seconds`) */
export const PROGRAM_RECHECK_MS = 1000;

interface Program {
  engine: string;
  /** tokens the program holds capacity for: its last prompt and an output allowance */
  demand: number;
  inFlight: number;
  /** ms: ACTIVE until then once nothing of it is in flight */
  actingUntil: number;
  /** ms: when its last request ended (−1: none yet), for the interval window */
  lastDoneAt: number;
  lastSeen: number;
}

/** what one request's decisions share: when it was first decided, its demand, where it may go */
interface Pending {
  /** ms: its first decision (a request's end is reported as the time since then) */
  firstSeen: number;
  /** ms: since when it has waited for room (−1: not waiting; a retry after an end waits anew) */
  waitFrom: number;
  /** its interval since the program's last end was sampled (once per request, a retaken pick aside) */
  sampled: boolean;
  /** where its program was and what it held before this request's pick, for a pick taken back */
  before?: { engine: string; demand: number } | undefined;
  demand: number;
  agentic: AgenticContext | undefined;
  reason: string;
  /** the cache prediction of its latest decision, for the oracle's onPicked */
  engines: readonly EngineView[];
  cached: Float64Array;
  source: CachePrediction["source"];
}

const MAX_ENGINES = 4096;
/** the most output a request may ask capacity for (a client's `expected_output_length` is a hint) */
const MAX_OUTPUT_ALLOWANCE = 131_072;

/**
 * The output tokens a request's demand counts: its `expected_output_length`, held to its own
 * `max_tokens` and a cap, else `decode_buffer_tokens`.
 */
function outputAllowance(req: RequestView, agentic: AgenticContext | undefined, fallback: number): number {
  const asked = agentic?.expectedOutputLength;
  if (asked === undefined || !(asked >= 0)) return fallback;
  const body = req.body;
  const cap = body ? (body.max_tokens ?? body.max_completion_tokens ?? body.max_output_tokens) : undefined;
  return Math.min(asked, typeof cap === "number" && cap >= 0 ? cap : Infinity, MAX_OUTPUT_ALLOWANCE);
}

export function createVllmRouterProgramPolicy(
  name: string,
  oracle: CacheOracle,
  options: VllmRouterProgramOptions = {},
): Policy {
  const settings = { ...VLLM_ROUTER_PROGRAM_DEFAULTS, ...options };
  const programs = new LruMap<string, Program>();
  /** per engine, the programs bound there that were ACTIVE when last looked at */
  const active = new Map<string, Set<Program>>();
  const pending = new RequestMemo<Pending>("vllm-router-program.pending");
  /** intervals (ms) between a program's request ending and its next arriving, the last statsWindow */
  const window = new Float64Array(settings.statsWindow);
  let samples = 0;
  let ttlMs = 0;

  const isActive = (p: Program, now: number) => p.inFlight > 0 || now < p.actingUntil;

  function activeOn(id: string): Set<Program> {
    let programs = active.get(id);
    if (!programs) {
      if (active.size >= MAX_ENGINES) active.delete(active.keys().next().value!);
      programs = new Set();
      active.set(id, programs);
    }
    return programs;
  }

  /** logical occupancy and active programs on an engine at `now`, paused ones dropped from its set */
  function occupancy(engine: EngineView, now: number, except?: Program): { tokens: number; count: number } {
    const programs = active.get(engine.id);
    let tokens = 0;
    let count = 0;
    if (programs)
      for (const program of programs) {
        if (!isActive(program, now) || program.engine !== engine.id) {
          programs.delete(program);
          continue;
        }
        if (program === except) continue;
        tokens += program.demand;
        count++;
      }
    return { tokens, count };
  }

  /** free logical capacity (Infinity without a token capacity); NaN when the gates refuse `demand` */
  function admissible(engine: EngineView, demand: number, now: number, self: Program | undefined): number {
    const occ = occupancy(engine, now, self);
    if (occ.count >= settings.maxActivePrograms) return NaN;
    if (settings.waitingThreshold > 0 && engine.waiting >= settings.waitingThreshold) return NaN;
    const cap = settings.tokenCapacity?.(engine);
    if (cap === undefined || !(cap > 0)) return Infinity;
    const free = cap - occ.tokens;
    return free >= demand ? free : NaN;
  }

  function freeOf(engine: EngineView, now: number, self: Program | undefined): number {
    const cap = settings.tokenCapacity?.(engine);
    return cap === undefined || !(cap > 0) ? Infinity : cap - occupancy(engine, now, self).tokens;
  }

  function forget(now: number): void {
    for (;;) {
      const oldest = programs.oldest();
      if (!oldest) return;
      const program = oldest.value;
      const stale = !isActive(program, now) && now - program.lastSeen > settings.pausedRetentionMs;
      if (!stale && programs.size <= settings.maxPrograms) return;
      programs.shift();
      active.get(program.engine)?.delete(program);
    }
  }

  const pool: Filter = (req: RequestView, engines: readonly EngineView[], fleet: FleetSnapshot) => {
    const now = fleet.now ?? 0;
    // predicted at every decision: a request that waited finds the caches as they are now, and the
    // oracle's onPicked checks what it is told against what the engine then reports
    const pred = oracle.predict(req, engines);
    let entry = pending.get(req);
    if (!entry) {
      const agentic = req.body ? agenticContextOf(req.body) : undefined;
      entry = {
        firstSeen: now,
        waitFrom: now,
        demand: pred.promptTokens + outputAllowance(req, agentic, settings.decodeBufferTokens),
        agentic,
        reason: "",
        engines,
        cached: pred.cachedTokens,
        source: pred.source,
        sampled: false,
      };
      pending.set(req, entry);
    } else {
      entry.engines = engines;
      entry.cached = pred.cachedTokens;
      entry.source = pred.source;
      if (entry.waitFrom < 0) entry.waitFrom = now;
    }
    const key = req.sessionKey;
    if (key === undefined) {
      entry.reason = "no-program";
      return engines;
    }
    forget(now);
    const program = programs.get(key);
    const home = program ? engines.find((e) => e.id === program.engine) : undefined;
    // an ACTIVE program is not reclaimed by admission: its request goes straight to its engine, or
    // waits for it while only its in-flight cap keeps it out (its other requests run there)
    if (program && isActive(program, now)) {
      if (home) {
        entry.reason = "acting";
        return [home];
      }
      const there = fleet.engines.find((e) => e.id === program.engine);
      if (there && there.healthy && !req.exclude?.has(there.id)) {
        entry.reason = "acting-full";
        return [];
      }
    }
    // a new program's home by consistent hashing; a known one's is where it was
    let bound = home;
    if (!bound && !program) {
      let best = -Infinity;
      for (const engine of engines) {
        const rank = -engine.weight / Math.log(unitHash(key, engine.id));
        if (rank > best) {
          best = rank;
          bound = engine;
        }
      }
    }
    if (bound && now - entry.waitFrom >= settings.forceResumeMs) {
      entry.reason = "force-resume";
      return [bound];
    }
    if (bound && !Number.isNaN(admissible(bound, entry.demand, now, program))) {
      entry.reason = program ? "resume" : "admit";
      return [bound];
    }
    if (!settings.globalQueue && bound) {
      entry.reason = "pool";
      return [];
    }
    // cross-engine: room for the program and more than its own engine has, by the headroom ratio
    // (its engine's free room counts even when its in-flight cap took the engine out, not when it is
    // down or already tried)
    const own =
      bound ??
      (program
        ? fleet.engines.find((e) => e.id === program.engine && e.healthy && !req.exclude?.has(e.id))
        : undefined);
    const floor = (own ? freeOf(own, now, program) : 0) + settings.crossRankHeadroom * entry.demand;
    let out: EngineView[] | undefined;
    for (const candidate of engines) {
      if (candidate === bound) continue;
      const free = admissible(candidate, entry.demand, now, program);
      if (Number.isNaN(free) || free < floor) continue;
      (out ??= []).push(candidate);
    }
    entry.reason = out ? "cross-engine" : "pool";
    return out ?? [];
  };

  pool.waitsForRoom = true;

  /** the most free logical capacity first; requests without a program by fewest in flight */
  const scorer: Scorer = {
    name: "vllm-router-program",
    weight: 1,
    score(req, engines, out, fleet) {
      const now = fleet.now ?? 0;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < engines.length; i++) {
        const engine = engines[i]!;
        const freeScore =
          req.sessionKey === undefined ? -engine.inFlight : Math.min(1e12, freeOf(engine, now, undefined));
        out[i] = freeScore;
        if (freeScore < lo) lo = freeScore;
        if (freeScore > hi) hi = freeScore;
      }
      for (let i = 0; i < engines.length; i++) out[i] = hi > lo ? (out[i]! - lo) / (hi - lo) : 1;
    },
  };

  /** the request of a program ended `elapsedMs` after it was first decided: its acting TTL starts */
  function ended(req: RequestView, elapsedMs: number, completed: boolean): void {
    const key = req.sessionKey;
    const entry = pending.get(req);
    const program = key !== undefined ? programs.get(key) : undefined;
    if (entry) entry.waitFrom = -1; // a retry of it (failover) waits anew
    if (!program || !entry || program.inFlight <= 0) return;
    program.inFlight--;
    if (program.inFlight > 0) return;
    const at = entry.firstSeen + elapsedMs;
    program.lastDoneAt = at;
    program.lastSeen = Math.max(program.lastSeen, at);
    const retain = entry.agentic?.kvRetentionTtlS;
    // a request cancelled or failed drops its program's hold at once; a client's own TTL is held to
    // the same cap as the automatic one, so no request can hold an engine's room for long
    const hold =
      retain !== undefined && retain >= 0 ? Math.min(retain * 1000, settings.maxActingTtlMs) : ttlMs;
    program.actingUntil = completed ? at + hold : at;
  }

  function sample(ms: number): void {
    window[samples % window.length] = ms;
    samples++;
    if (samples < window.length) return;
    // the 90th percentile of the window, capped (our reading of "from the interval window")
    const sorted = Float64Array.from(window).sort();
    ttlMs = Math.min(settings.maxActingTtlMs, sorted[Math.floor(0.9 * (sorted.length - 1))]!);
  }

  return {
    name,
    filters: [...standardFilters, pool],
    scorers: [scorer],
    picker: firstMaxPicker,
    recheckMs: PROGRAM_RECHECK_MS,
    onPicked(req, engine) {
      const entry = pending.get(req);
      const key = req.sessionKey;
      if (entry && key !== undefined) {
        let program = programs.use(key);
        if (!program) {
          program = {
            engine: engine.id,
            demand: entry.demand,
            inFlight: 0,
            actingUntil: 0,
            lastDoneAt: -1,
            lastSeen: entry.firstSeen,
          };
          programs.set(key, program);
        } else if (
          !entry.sampled &&
          program.inFlight === 0 &&
          program.lastDoneAt >= 0 &&
          entry.firstSeen >= program.lastDoneAt
        ) {
          entry.sampled = true;
          sample(entry.firstSeen - program.lastDoneAt);
        }
        entry.before = { engine: program.engine, demand: program.demand };
        if (program.engine !== engine.id) active.get(program.engine)?.delete(program);
        program.engine = engine.id;
        program.demand = entry.demand;
        program.inFlight++;
        program.lastSeen = Math.max(program.lastSeen, entry.firstSeen);
        activeOn(engine.id).add(program);
      }
      const i = entry ? entry.engines.indexOf(engine) : -1;
      if (entry && i >= 0)
        oracle.onPicked?.(req, engine, entry.cached[i]!, entry.source[i] ?? "none", entry.reason);
    },
    // a router group's claim refused the pick: the program is where it was before it
    onUnpicked(req) {
      const key = req.sessionKey;
      const program = key !== undefined ? programs.get(key) : undefined;
      const entry = pending.get(req);
      if (!program || program.inFlight <= 0) return;
      program.inFlight--;
      const was = entry?.before;
      if (!was) return;
      entry.before = undefined;
      if (was.engine !== program.engine) {
        active.get(program.engine)?.delete(program);
        program.engine = was.engine;
        activeOn(was.engine).add(program); // (dropped there again at the next look if no longer active)
      }
      program.demand = was.demand;
    },
    onDone: (req, _engine, elapsedMs) => ended(req, elapsedMs, true),
    onAbandoned: (req, _engine, elapsedMs) => ended(req, elapsedMs, false),
  };
}
