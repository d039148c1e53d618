// The books of `vllm-router-program` (vllm-router 0.1.17's program scheduling): which programs are
// bound to which engine, the logical KV tokens each holds there, each request's shared decision state,
// and the acting TTL learned from the gaps between a program's requests. The pool filter, the scorer
// and the policy's hooks (this folder's other files) read and write it; one book per policy.
import { LruMap } from "../../../collections/lru-map.js";
import { RequestMemo } from "../../policy/memo.js";
import type { AgenticContext } from "../../sessions/session-identity.js";
import type { CacheOracle, CachePrediction } from "../../policy/cache-oracle.js";
import type { EngineView } from "../../policy/views.js";

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

export type ProgramSettings = typeof VLLM_ROUTER_PROGRAM_DEFAULTS &
  Pick<VllmRouterProgramOptions, "tokenCapacity">;

export interface Program {
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
export interface Pending {
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

/** The programs, the engines' active sets, the pending requests and the acting TTL of one policy. */
export class ProgramBook {
  readonly programs = new LruMap<string, Program>();
  /** per engine, the programs bound there that were ACTIVE when last looked at */
  readonly active = new Map<string, Set<Program>>();
  readonly pending = new RequestMemo<Pending>("vllm-router-program.pending");
  /** intervals (ms) between a program's request ending and its next arriving, the last statsWindow */
  private readonly window: Float64Array;
  private samples = 0;
  /** the acting TTL, ms */
  ttlMs = 0;

  constructor(
    readonly settings: ProgramSettings,
    readonly oracle: CacheOracle,
  ) {
    this.window = new Float64Array(settings.statsWindow);
  }

  isActive(p: Program, now: number): boolean {
    return p.inFlight > 0 || now < p.actingUntil;
  }

  activeOn(id: string): Set<Program> {
    let programs = this.active.get(id);
    if (!programs) {
      if (this.active.size >= MAX_ENGINES) this.active.delete(this.active.keys().next().value!);
      programs = new Set();
      this.active.set(id, programs);
    }
    return programs;
  }

  /** logical occupancy and active programs on an engine at `now`, paused ones dropped from its set */
  occupancy(engine: EngineView, now: number, except?: Program): { tokens: number; count: number } {
    const programs = this.active.get(engine.id);
    let tokens = 0;
    let count = 0;
    if (programs)
      for (const program of programs) {
        if (!this.isActive(program, now) || program.engine !== engine.id) {
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
  admissible(engine: EngineView, demand: number, now: number, self: Program | undefined): number {
    const occ = this.occupancy(engine, now, self);
    if (occ.count >= this.settings.maxActivePrograms) return NaN;
    if (this.settings.waitingThreshold > 0 && engine.waiting >= this.settings.waitingThreshold) return NaN;
    const cap = this.settings.tokenCapacity?.(engine);
    if (cap === undefined || !(cap > 0)) return Infinity;
    const free = cap - occ.tokens;
    return free >= demand ? free : NaN;
  }

  freeOf(engine: EngineView, now: number, self: Program | undefined): number {
    const cap = this.settings.tokenCapacity?.(engine);
    return cap === undefined || !(cap > 0) ? Infinity : cap - this.occupancy(engine, now, self).tokens;
  }

  forget(now: number): void {
    for (;;) {
      const oldest = this.programs.oldest();
      if (!oldest) return;
      const program = oldest.value;
      const stale = !this.isActive(program, now) && now - program.lastSeen > this.settings.pausedRetentionMs;
      if (!stale && this.programs.size <= this.settings.maxPrograms) return;
      this.programs.shift();
      this.active.get(program.engine)?.delete(program);
    }
  }

  /** the interval (ms) between a program's end and its next request, into the window */
  sample(ms: number): void {
    const window = this.window;
    window[this.samples % window.length] = ms;
    this.samples++;
    if (this.samples < window.length) return;
    // the 90th percentile of the window, capped (our reading of "from the interval window")
    const sorted = Float64Array.from(window).sort();
    this.ttlMs = Math.min(this.settings.maxActingTtlMs, sorted[Math.floor(0.9 * (sorted.length - 1))]!);
  }
}
