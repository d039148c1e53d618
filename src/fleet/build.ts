// From a scenario to a fleet run: the engine configuration, the bench generator that stands for the
// workload, the routing policy and the load shape. Every default here is listed in docs/fleet-simulator.md.
import { agenticOptions, agenticWorkload, type AgenticPreset } from "../workload/agentic.js";
import {
  conversationReplayOptions,
  conversationReplayWorkload,
  type ConversationReplayPreset,
} from "../workload/conversation-replay.js";
import { MULTI_ROUND_QA_DEFAULTS, multiRoundQaWorkload } from "../workload/multi-round-qa.js";
import { prefixRepetitionWorkload } from "../workload/prefix-repetition.js";
import { randomWorkload, RANDOM_DEFAULTS } from "../workload/random.js";
import { SHARED_PREFIX_DEFAULTS, sharedPrefixWorkload } from "../workload/shared-prefix.js";
import type { Workload } from "../workload/types.js";
import { TRACE_DEFAULTS, traceWorkload } from "../workload/trace.js";
import { defaultEngineConfig, kvCapacity, type EngineConfig, type OffloadConfig } from "../engine/index.js";
import { engineHashSeed, extraKeyStyleFor } from "../protocol/vllm-releases.js";
import { kvBytesPerToken } from "../models/index.js";
import type { FleetOptions, FleetPolicy, SessionKeyMode } from "./fleet.js";
import type { PdOptions } from "./types.js";
import { REMOTE_BANDWIDTH_BPS } from "./remote.js";
import type { ResolvedScenario } from "./scenario.js";
import { VLLM_GPU_MEMORY_UTILIZATION } from "../config/vllm-defaults.js";
import { InvalidArgumentError } from "../errors/index.js";

const GiB = 2 ** 30;
export type OffloadMode = "none" | "native" | "lmcache";

/** rounds per user when a multi-round workload is derived from the scenario */
export const DERIVED_ROUNDS = 5;
/** question tokens per round of a derived multi-round workload */
export const DERIVED_QUESTION_TOKENS = 64;
/** documents per tenant of a derived RAG workload */
export const RAG_DOCS_PER_TENANT = 10;

export function defaultRequests(r: ResolvedScenario): number {
  const g = r.scenario.simulation.generator?.name;
  // these presets are their sessions (or conversations), whole: cut at a count, the last would never run
  if (g === "agentic" || g === "conversation-replay" || g === "trace")
    return r.scenario.simulation.requests ?? Infinity;
  return (
    r.scenario.simulation.requests ??
    Math.min(2000, Math.max(500, (r.scenario.workload.concurrency ?? 0) * 8))
  );
}

export function engineConfigFor(r: ResolvedScenario, mode: OffloadMode, kvScale = 1): EngineConfig {
  const f = r.scenario.fleet;
  const off = r.scenario.simulation.offload;
  const base = defaultEngineConfig(r.model, r.gpu, {
    tensorParallelSize: f.tensor_parallel_size,
    gpuMemoryUtilization: f.gpu_memory_utilization ?? VLLM_GPU_MEMORY_UTILIZATION,
    ...(f.max_num_seqs !== undefined ? { maxNumSeqs: f.max_num_seqs } : {}),
    ...(f.max_num_batched_tokens !== undefined ? { maxNumBatchedTokens: f.max_num_batched_tokens } : {}),
    ...(f.max_model_len !== undefined ? { maxModelLen: f.max_model_len } : {}),
    ...(f.num_gpu_blocks_override !== undefined ? { numGpuBlocksOverride: f.num_gpu_blocks_override } : {}),
    blockHashAlgo: "fast",
    // hashed as a sim claiming the fleet's release hashes (its own default release when unnamed)
    ...(f.vllm_version !== undefined
      ? {
          extraKeyStyle: extraKeyStyleFor(f.vllm_version),
          hashSeed: engineHashSeed(f.vllm_version, undefined),
        }
      : {}),
  });
  let offload: OffloadConfig | null = null;
  const perRankBlock = kvBytesPerToken(r.model, f.tensor_parallel_size) * base.blockSize;
  if (mode === "native") {
    const bytes =
      off.native_cpu_blocks !== undefined
        ? off.native_cpu_blocks * perRankBlock * f.tensor_parallel_size
        : off.native_gib * GiB;
    offload = { backend: "native", bytes };
  } else if (mode === "lmcache") {
    offload = {
      backend: "lmcache",
      bytes: off.lmcache_local_cpu_gib * GiB,
      chunkTokens: off.lmcache_chunk_size,
    };
  }
  const cfg: EngineConfig = { ...base, offload };
  if (kvScale !== 1) {
    // the break-even sweep: the same engine with a scaled KV cache (what another utilisation would give);
    // max_model_len shrinks to what the workload needs so that small caches stay valid
    const w = r.scenario.workload;
    const rounds = w.prefix_reuse === "multi-round" ? DERIVED_ROUNDS : 1;
    const needed = r.promptP90 + rounds * (w.output_tokens + DERIVED_QUESTION_TOKENS);
    const blocksAtScale1 = kvBlocks(cfg);
    cfg.maxModelLen = Math.min(cfg.maxModelLen, needed);
    const blocks = Math.max(Math.ceil(cfg.maxModelLen / cfg.blockSize), Math.round(blocksAtScale1 * kvScale));
    cfg.numGpuBlocksOverride = blocks;
  }
  return cfg;
}

/** the scenario as one role of its disaggregated fleet sees it: that role's engine count and TP */
export function roleScenario(r: ResolvedScenario, role: "prefill" | "decode"): ResolvedScenario {
  const pd = r.scenario.fleet.disaggregated;
  if (!pd) return r;
  const fleet = {
    ...r.scenario.fleet,
    engines: pd[`${role}_engines`],
    tensor_parallel_size: pd[`${role}_tensor_parallel_size`],
    disaggregated: undefined,
  };
  return { ...r, scenario: { ...r.scenario, fleet } };
}

/** the prefill and decode pools of a disaggregated scenario, or null for an aggregated one */
export function pdOptionsFor(r: ResolvedScenario, mode: OffloadMode, kvScale = 1): PdOptions | null {
  const pd = r.scenario.fleet.disaggregated;
  if (!pd) return null;
  return {
    prefill: {
      engine: engineConfigFor(roleScenario(r, "prefill"), mode, kvScale),
      count: pd.prefill_engines,
    },
    decode: { engine: engineConfigFor(roleScenario(r, "decode"), mode, kvScale), count: pd.decode_engines },
    bandwidthPerRank: pd.kv_transfer_gb_s_per_rank * 1e9,
  };
}

function kvBlocks(cfg: EngineConfig): number {
  return cfg.numGpuBlocksOverride ?? kvCapacity(cfg).numGpuBlocks;
}

export function workloadFor(
  r: ResolvedScenario,
  requests: number,
): { workload: Workload; generator: string } {
  const s = r.scenario;
  const w = s.workload;
  const seed = s.simulation.seed;
  const g = s.simulation.generator;
  const out = w.output_tokens;
  if (g) {
    switch (g.name) {
      case "shared-prefix":
        return {
          generator: g.name,
          workload: sharedPrefixWorkload({
            numGroups: g.num_groups ?? SHARED_PREFIX_DEFAULTS.numGroups,
            promptsPerGroup: g.prompts_per_group ?? SHARED_PREFIX_DEFAULTS.promptsPerGroup,
            systemPromptLen: g.system_prompt_len ?? w.shared_prefix_tokens,
            questionLen: g.question_len ?? Math.max(1, r.promptTokens - w.shared_prefix_tokens),
            outputLen: g.output_len ?? out,
            seed,
          }),
        };
      case "agentic": {
        // the preset as published (resolveScenario named it and checked that its contexts fit)
        const over = g.sessions !== undefined ? { sessions: g.sessions } : {};
        const o = agenticOptions(g.preset as AgenticPreset, seed, over);
        return { generator: g.name, workload: agenticWorkload(o) };
      }
      case "conversation-replay": {
        const over = g.conversations !== undefined ? { conversations: g.conversations } : {};
        const o = conversationReplayOptions(g.preset as ConversationReplayPreset, seed, over);
        return { generator: g.name, workload: conversationReplayWorkload(o) };
      }
      case "trace": {
        // the window whole, at the trace's own times (the scenario's qps does not apply)
        if (!r.trace)
          throw new InvalidArgumentError(
            "simulation.generator: a trace scenario must be read with its trace (withTrace)",
          );
        const o = {
          startS: g.trace_start_s ?? TRACE_DEFAULTS.startS,
          durationS: g.trace_duration_s ?? TRACE_DEFAULTS.durationS,
          speed: g.trace_speed ?? TRACE_DEFAULTS.speed,
          blockTokens: g.trace_block_tokens ?? TRACE_DEFAULTS.blockTokens,
          maxOutput: g.trace_max_output ?? TRACE_DEFAULTS.maxOutput,
          seed,
        };
        return { generator: g.name, workload: traceWorkload(r.trace, o) };
      }
      case "random":
        return {
          generator: g.name,
          workload: randomWorkload({
            ...RANDOM_DEFAULTS,
            inputLen: g.input_len ?? r.promptTokens,
            outputLen: g.output_len ?? out,
            rangeRatio: g.range_ratio ?? 0,
            seed,
            count: requests,
          }),
        };
      case "prefix-repetition":
        return {
          generator: g.name,
          workload: prefixRepetitionWorkload({
            prefixLen: g.prefix_len ?? w.shared_prefix_tokens,
            suffixLen: g.suffix_len ?? Math.max(1, r.promptTokens - w.shared_prefix_tokens),
            numPrefixes: g.num_prefixes ?? Math.max(1, w.tenants) * RAG_DOCS_PER_TENANT,
            outputLen: g.output_len ?? out,
            seed,
            count: requests,
          }),
        };
      case "multi-round-qa":
        return {
          generator: g.name,
          workload: multiRoundQaWorkload({
            ...MULTI_ROUND_QA_DEFAULTS,
            numUsers: g.num_users ?? Math.ceil(requests / (g.num_rounds ?? DERIVED_ROUNDS)),
            numRounds: g.num_rounds ?? DERIVED_ROUNDS,
            sharedSystemPrompt: g.shared_system_prompt ?? w.shared_prefix_tokens,
            userHistoryPrompt: g.user_history_prompt ?? MULTI_ROUND_QA_DEFAULTS.userHistoryPrompt,
            questionLen: g.question_len ?? DERIVED_QUESTION_TOKENS,
            answerLen: g.answer_len ?? out,
            seed,
          }),
        };
    }
  }
  const shared = w.shared_prefix_tokens;
  const rest = Math.max(1, r.promptTokens - shared);
  switch (w.prefix_reuse) {
    case "multi-round": {
      const q = Math.min(DERIVED_QUESTION_TOKENS, rest);
      return {
        generator: "multi-round-qa",
        workload: multiRoundQaWorkload({
          ...MULTI_ROUND_QA_DEFAULTS,
          numUsers: Math.ceil(requests / DERIVED_ROUNDS),
          numRounds: DERIVED_ROUNDS,
          sharedSystemPrompt: shared,
          userHistoryPrompt: Math.max(0, r.promptTokens - shared - q),
          questionLen: q,
          answerLen: out,
          seed,
        }),
      };
    }
    case "rag":
      return {
        generator: "prefix-repetition",
        workload: prefixRepetitionWorkload({
          prefixLen: shared,
          suffixLen: rest,
          numPrefixes: Math.max(1, w.tenants) * RAG_DOCS_PER_TENANT,
          outputLen: out,
          seed,
          count: requests,
        }),
      };
    case "multi-tenant":
    case "none":
      if (shared > 0) {
        const groups = w.prefix_reuse === "multi-tenant" ? w.tenants : 1;
        return {
          generator: "shared-prefix",
          workload: sharedPrefixWorkload({
            numGroups: groups,
            promptsPerGroup: Math.ceil(requests / groups),
            systemPromptLen: shared,
            questionLen: rest,
            outputLen: out,
            seed,
          }),
        };
      }
      return {
        generator: "random",
        workload: randomWorkload({
          ...RANDOM_DEFAULTS,
          inputLen: r.promptTokens,
          outputLen: out,
          // uniform in [L(1−r), L(1+r)] has its p90 at L(1+0.8r)
          rangeRatio: Math.min(1, Math.max(0, (r.promptP90 / r.promptTokens - 1) / 0.8)),
          seed,
          count: requests,
        }),
      };
  }
}

/** the routing policy the plan recommends (and the simulator uses unless the scenario names one) */
export function policyFor(r: ResolvedScenario): FleetPolicy {
  const p = r.scenario.simulation.policy as FleetPolicy | undefined;
  if (p) return p;
  const w = r.scenario.workload;
  if (w.prefix_reuse !== "none" || w.shared_prefix_tokens > 0) return "session";
  return "least-load";
}

/**
 * The session header a plan tells operators to send for the `session` policy (the session id for
 * multi-round and agent sessions, the prompt group for shared prefixes, else none), or what the
 * scenario names. Other policies need none: the router keys sessions itself (`router`).
 */
export function sessionKeyFor(r: ResolvedScenario, generator: string): SessionKeyMode {
  const k = r.scenario.simulation.session_key;
  if (k !== "auto") return k;
  if (policyFor(r) !== "session") return "router";
  if (generator === "multi-round-qa" || generator === "agentic") return "session";
  if (generator === "shared-prefix" || generator === "prefix-repetition") return "group";
  return "router";
}

export function fleetOptionsFor(
  r: ResolvedScenario,
  mode: OffloadMode,
  opts: { kvScale?: number; requests?: number; recordItl?: boolean } = {},
): FleetOptions & { generator: string } {
  const s = r.scenario;
  const requests = opts.requests ?? defaultRequests(r);
  const { workload, generator } = workloadFor(r, requests);
  const off = s.simulation.offload;
  const pd = pdOptionsFor(r, mode, opts.kvScale ?? 1);
  const engine = pd ? pd.decode.engine : engineConfigFor(r, mode, opts.kvScale ?? 1);
  return {
    generator,
    engine,
    engines: s.fleet.engines,
    pd,
    policy: policyFor(r),
    sessionKey: sessionKeyFor(r, generator),
    scrapeIntervalS: s.simulation.scrape_interval_ms / 1000,
    sharedServer:
      mode === "lmcache" && off.shared_server
        ? {
            bytes: off.shared_server.size_gib * GiB,
            bandwidth: off.shared_server.bandwidth_gbps
              ? (off.shared_server.bandwidth_gbps * 1e9) / 8
              : REMOTE_BANDWIDTH_BPS,
            chunkTokens: off.lmcache_chunk_size,
            enginesPerServer: off.shared_server.engines_per_server,
          }
        : null,
    workload,
    qps: s.workload.qps ?? Infinity,
    arrival: s.simulation.arrival,
    concurrency: s.workload.concurrency ?? Infinity,
    maxRequests: requests,
    durationS: s.simulation.duration_s ?? Infinity,
    seed: s.simulation.seed,
    recordItl: opts.recordItl ?? s.simulation.itl,
    sloTtftMs: s.simulation.slo_ttft_ms,
    scorers: s.simulation.scorers,
    tierAware: s.simulation.tier_aware,
    lateBinding: {
      ...(s.simulation.queued_prompts !== undefined ? { queuedPrompts: s.simulation.queued_prompts } : {}),
      ...(s.simulation.max_hold_ms !== undefined ? { maxHoldMs: s.simulation.max_hold_ms } : {}),
      ...(s.simulation.min_cached_share !== undefined
        ? { minCachedShare: s.simulation.min_cached_share }
        : {}),
    },
  };
}
