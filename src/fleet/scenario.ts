// The scenario file of `switchyard simulate` and `switchyard plan`: workload shape, fleet, operations,
// and optional simulation settings. Parsed once at the edge; every error names the field and repeats
// the value given.
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import {
  GPUS,
  MODELS,
  resolveGpu,
  resolveModel,
  type GpuProfile,
  type ModelProfile,
} from "../models/index.js";
import { ROUTER_POLICY_NAMES, scorersConfigSchema } from "../routing/index.js";
import { AGENTIC_DEFAULT_PRESET, AGENTIC_PRESETS, longestAgenticTurn } from "../workload/agentic.js";
import {
  CONVERSATION_REPLAY_DEFAULT_PRESET,
  CONVERSATION_REPLAY_PRESETS,
  longestReplayTurn,
} from "../workload/conversation-replay.js";
import { parseTrace, type TraceEntry } from "../workload/trace.js";
import { LMCACHE_CHUNK_TOKENS } from "../config/vllm-defaults.js";
import { InvalidConfigError } from "../errors/index.js";

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const positive = z.number().positive();

const tokensOrPercentiles = z.union([
  posInt,
  z
    .strictObject({ p50: posInt, p90: posInt })
    .refine((v) => v.p90 >= v.p50, { message: "p90 must be >= p50" }),
]);

export const REUSE_KINDS = ["none", "multi-round", "rag", "multi-tenant"] as const;
export const OFFLOAD_MODES = ["none", "native", "lmcache"] as const;
export const GENERATORS = [
  "random",
  "shared-prefix",
  "multi-round-qa",
  "prefix-repetition",
  "agentic",
  "conversation-replay",
  "trace",
] as const;

const workloadSchema = z.strictObject({
  prompt_tokens: tokensOrPercentiles,
  output_tokens: posInt,
  /** sessions in flight at once: the closed loop's size, or a cap on an open loop (`qps`) */
  concurrency: posInt.optional(),
  qps: positive.optional(),
  shared_prefix_tokens: nonNegInt.default(0),
  prefix_reuse: z.enum(REUSE_KINDS).default("none"),
  tenants: posInt.default(1),
  preemption_heavy: z.boolean().default(false),
  /**
   * `plan`: the requests name LoRA adapters of one base model (src/fleet/lora.ts, LoraAdapterMix); the
   * plan chooses max_loras and max_cpu_loras for them (src/planner/lora.ts)
   */
  lora: z
    .strictObject({
      adapters: posInt,
      zipf: z.number().min(0).default(1),
      rank: posInt.default(16),
      modules: z.array(z.string().min(1)).min(1).optional(),
    })
    .optional(),
});

const VLLM_RELEASE = /^\d+\.\d+(\.\d+)?$/; // fleet.vllm_version, the chart's image tag: LMCache MP from 0.32
const fleetSchema = z.strictObject({
  model: z.string().min(1),
  gpu: z.string().min(1),
  engines: posInt,
  tensor_parallel_size: posInt.default(1),
  gpu_memory_utilization: z.number().gt(0).lte(1).optional(),
  /** vLLM's --num-gpu-blocks-override: take the KV size a real engine logged */
  num_gpu_blocks_override: posInt.optional(),
  max_num_seqs: posInt.optional(),
  max_num_batched_tokens: posInt.optional(),
  max_model_len: posInt.optional(),
  vllm_version: z.string().regex(VLLM_RELEASE, "a vLLM release, e.g. 0.32.0").optional(),
  /**
   * disaggregated prefill and decode (the router's P/D mode, docs/disaggregated.md): `engines` is then
   * prefill + decode engines, and each role has its own TP
   */
  disaggregated: z
    .strictObject({
      prefill_engines: posInt,
      decode_engines: posInt,
      prefill_tensor_parallel_size: posInt.default(1),
      decode_tensor_parallel_size: posInt.default(1),
      /** GB/s each decode rank pulls KV at (NixlConnector over RDMA; the sim's --kv-transfer-bandwidth) */
      kv_transfer_gb_s_per_rank: positive.default(40),
    })
    .optional(),
});

const opsSchema = z.strictObject({
  kubernetes: z.boolean(),
  multi_tenant: z.boolean().default(false),
  hbm_monitoring: z.boolean(),
  budget_usd_per_hour: positive.optional(),
  /** prices per GPU-hour by GPU id, over the planner's default table (docs/planner.md) */
  gpu_usd_per_hour: z.record(z.string(), positive).optional(),
  /** the team means to build its own stack (manifests, router) although the chart covers the use case */
  hand_rolled_stack: z.boolean().default(false),
});

const offloadSchema = z.strictObject({
  mode: z.enum(OFFLOAD_MODES).default("none"),
  /** native: CPU tier per engine, GiB (vLLM --kv-offloading-size) */
  native_gib: positive.default(64),
  /** native: vLLM's num_cpu_blocks instead of a size */
  native_cpu_blocks: posInt.optional(),
  /** lmcache: max_local_cpu_size per worker, GiB (LMCache allocates × 1024³) */
  lmcache_local_cpu_gib: positive.default(20),
  lmcache_chunk_size: posInt.default(LMCACHE_CHUNK_TOKENS),
  shared_server: z
    .strictObject({
      size_gib: positive,
      bandwidth_gbps: positive.default(100),
      /** one server (of size_gib) per this many engines, in engine order: a server per node; default: one for all */
      engines_per_server: posInt.optional(),
      /**
       * `plan`: the memory one node gives the shared tier, GiB; a tier that needs more (size_gib, or the
       * working set with headroom) is a Valkey Cluster sharded over several nodes (src/planner/l2.ts)
       */
      node_memory_gib: positive.default(256),
      /** `plan`: the tier must survive a node's loss (a cluster with a replica per primary) */
      ha: z.boolean().default(false),
      /** `plan`: the reused prefix bytes the workload keeps live, GiB; default: estimated from the workload */
      working_set_gib: positive.optional(),
    })
    .nullable()
    .default(null),
});

const simulationSchema = z.strictObject({
  seed: nonNegInt.default(0),
  /** requests to send at most (default: the workload's natural size, else 1000) */
  requests: posInt.optional(),
  /** stop starting requests after this many virtual seconds */
  duration_s: positive.optional(),
  /** a router policy, or `clairvoyant`: the reference placement from every engine's exact state */
  policy: z.enum([...ROUTER_POLICY_NAMES, "clairvoyant"] as unknown as [string, ...string[]]).optional(),
  /** scorers added to the policy's own, as the router's config `scorers` (docs/routing.md) */
  scorers: scorersConfigSchema,
  /**
   * auto: as the router keys sessions (router), but the `session` policy's header where a plan tells
   * operators to send one (session id or group); none: no key at all
   */
  session_key: z.enum(["auto", "router", "none", "session", "group"]).default("auto"),
  scrape_interval_ms: positive.default(1000),
  /** predictive policy: every request's TTFT SLO, ms (refused, as the router's 429, when no engine can meet it) */
  slo_ttft_ms: positive.optional(),
  /** predictive policy: late binding, as the router's `predictive.queuedPrompts` (0: bind at once) */
  queued_prompts: nonNegInt.optional(),
  /** predictive policy: as the router's `predictive.maxHoldMs` */
  max_hold_ms: z.number().min(0).optional(),
  /** predictive policy: as the router's `predictive.minCachedShare` */
  min_cached_share: z.number().min(0).max(1).optional(),
  arrival: z.enum(["poisson", "constant"]).default("poisson"),
  /** the router reads offload.shared_server's tier index (what it stores and evicts) */
  tier_aware: z.boolean().default(false),
  offload: offloadSchema.default({
    mode: "none",
    native_gib: 64,
    lmcache_local_cpu_gib: 20,
    lmcache_chunk_size: LMCACHE_CHUNK_TOKENS,
    shared_server: null,
  }),
  /** an explicit bench generator and its options, instead of one derived from `workload` */
  generator: z
    .strictObject({
      name: z.enum(GENERATORS),
      num_groups: posInt.optional(),
      prompts_per_group: posInt.optional(),
      system_prompt_len: nonNegInt.optional(),
      question_len: posInt.optional(),
      output_len: posInt.optional(),
      input_len: posInt.optional(),
      range_ratio: z.number().min(0).max(1).optional(),
      prefix_len: nonNegInt.optional(),
      suffix_len: posInt.optional(),
      num_prefixes: posInt.optional(),
      num_users: posInt.optional(),
      num_rounds: posInt.optional(),
      shared_system_prompt: nonNegInt.optional(),
      user_history_prompt: nonNegInt.optional(),
      answer_len: posInt.optional(),
      /** agentic (code-gen, b2b) or conversation-replay (llm-d-code-gen): the preset */
      preset: z.string().optional(),
      /** agentic: agent sessions (the preset's) */
      sessions: posInt.optional(),
      /** conversation-replay: conversations (the preset's) */
      conversations: posInt.optional(),
      /** trace: a Mooncake-format JSONL file, relative to the scenario's folder (src/workload/trace.ts) */
      trace_file: z.string().min(1).optional(),
      /** trace: window start and length, trace seconds */
      trace_start_s: z.number().min(0).optional(),
      trace_duration_s: positive.optional(),
      /** trace: replay speed factor (1: the trace's rate) */
      trace_speed: positive.optional(),
      /** trace: tokens per hash block (512, the trace's) */
      trace_block_tokens: posInt.optional(),
      /** trace: max_tokens at most */
      trace_max_output: posInt.optional(),
    })
    .optional(),
  itl: z.boolean().default(true),
});

/** the latency the service must keep (read by `switchyard plan`; `simulate` ignores it) */
const sloSchema = z.strictObject({
  ttft_p90_ms: positive,
  tpot_p90_ms: positive,
  e2e_p90_ms: positive.optional(),
  /** the fraction of each bound the plan keeps free: it must predict p90 ≤ bound × (1 − headroom) */
  headroom: z.number().min(0).lt(1).default(0.1),
});

export const scenarioSchema = z.strictObject({
  name: z.string().optional(),
  slo: sloSchema.optional(),
  workload: workloadSchema,
  fleet: fleetSchema,
  ops: opsSchema,
  simulation: simulationSchema.default(simulationSchema.parse({})),
});

export type Scenario = z.infer<typeof scenarioSchema>;

export interface ResolvedScenario {
  scenario: Scenario;
  /** the `trace` generator's requests, read by the caller that read the scenario (withTrace) */
  trace?: readonly TraceEntry[] | undefined;
  model: ModelProfile;
  gpu: GpuProfile;
  /** typical prompt length (p50 when percentiles are given) */
  promptTokens: number;
  promptP90: number;
}

export class ScenarioError extends InvalidConfigError {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = raw;
  for (const k of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

const show = (v: unknown) => (v === undefined ? "nothing" : JSON.stringify(v));

/** Validates a parsed YAML/JSON value; throws ScenarioError with one line per problem. */
export function resolveScenario(raw: unknown): ResolvedScenario {
  const parsed = scenarioSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((iss) => {
      const path = iss.path.map(String).join(".");
      if (iss.code === "unrecognized_keys") {
        return `${path ? path + ": " : ""}unknown field${iss.keys.length > 1 ? "s" : ""} ${iss.keys.join(", ")}`;
      }
      return `${path || "scenario"}: ${iss.message}, got ${show(valueAt(raw, iss.path))}`;
    });
    throw new ScenarioError(problems);
  }
  const s = parsed.data;
  const problems: string[] = [];
  let model: ModelProfile | undefined;
  let gpu: GpuProfile | undefined;
  try {
    model = resolveModel(s.fleet.model);
  } catch {
    problems.push(
      `fleet.model: unknown model ${show(s.fleet.model)} (known: ${MODELS.map((m) => m.id).join(", ")})`,
    );
  }
  try {
    gpu = resolveGpu(s.fleet.gpu);
  } catch {
    problems.push(`fleet.gpu: unknown GPU ${show(s.fleet.gpu)} (known: ${GPUS.map((g) => g.id).join(", ")})`);
  }
  const w = s.workload;
  const promptTokens = typeof w.prompt_tokens === "number" ? w.prompt_tokens : w.prompt_tokens.p50;
  const promptP90 = typeof w.prompt_tokens === "number" ? w.prompt_tokens : w.prompt_tokens.p90;
  const g = s.simulation.generator;
  if (w.concurrency === undefined && w.qps === undefined && g?.name !== "trace")
    problems.push("workload: needs qps (an open loop) or concurrency (a closed loop), got neither");
  if (w.lora && w.qps === undefined)
    problems.push("workload.lora: a LoRA workload is an open loop: needs workload.qps, got nothing");
  if (w.shared_prefix_tokens >= promptTokens) {
    problems.push(
      `workload.shared_prefix_tokens: must be below workload.prompt_tokens (${promptTokens}), got ${w.shared_prefix_tokens}`,
    );
  }
  if (model) {
    const maxLen = s.fleet.max_model_len ?? model.maxContext;
    if (promptP90 + w.output_tokens > maxLen) {
      problems.push(
        `workload.prompt_tokens: ${promptP90} prompt + ${w.output_tokens} output tokens exceed the context of ${model.id} (${maxLen})`,
      );
    }
    if (model.numHeads % s.fleet.tensor_parallel_size !== 0) {
      problems.push(
        `fleet.tensor_parallel_size: must divide the ${model.numHeads} attention heads of ${model.id}, got ${s.fleet.tensor_parallel_size}`,
      );
    }
    if (s.fleet.max_model_len !== undefined && s.fleet.max_model_len > model.maxContext) {
      problems.push(
        `fleet.max_model_len: above the ${model.maxContext} of ${model.id}, got ${s.fleet.max_model_len}`,
      );
    }
  }
  if (g) {
    if (g.name === "trace" && g.trace_file === undefined)
      problems.push("simulation.generator.trace_file: the trace generator needs a trace file, got nothing");
    for (const k of [
      "trace_file",
      "trace_start_s",
      "trace_duration_s",
      "trace_speed",
      "trace_block_tokens",
      "trace_max_output",
    ] as const)
      if (g[k] !== undefined && g.name !== "trace")
        problems.push(`simulation.generator.${k}: for trace only, got ${g.name}`);
    if (g.preset !== undefined && g.name !== "agentic" && g.name !== "conversation-replay")
      problems.push(`simulation.generator.preset: for agentic and conversation-replay only, got ${g.name}`);
    if (g.sessions !== undefined && g.name !== "agentic")
      problems.push(`simulation.generator.sessions: for agentic only, got ${g.name}`);
    if (g.conversations !== undefined && g.name !== "conversation-replay")
      problems.push(`simulation.generator.conversations: for conversation-replay only, got ${g.name}`);
    // the preset is named here, once (the run builds what was checked); its turns must fit the context
    if (g.name === "agentic") g.preset ??= AGENTIC_DEFAULT_PRESET;
    if (g.name === "conversation-replay") g.preset ??= CONVERSATION_REPLAY_DEFAULT_PRESET;
    const longest =
      g.name === "agentic"
        ? presetOf(AGENTIC_PRESETS, g.preset!, problems, longestAgenticTurn)
        : g.name === "conversation-replay"
          ? presetOf(CONVERSATION_REPLAY_PRESETS, g.preset!, problems, longestReplayTurn)
          : undefined;
    const maxLen = model ? (s.fleet.max_model_len ?? model.maxContext) : Infinity;
    if (longest !== undefined && longest > maxLen)
      problems.push(
        `simulation.generator.preset: ${g.name} ${g.preset} sends prompts and answers of up to ${longest} tokens, above the context of ${model!.id} (${maxLen})`,
      );
  }
  const pd = s.fleet.disaggregated;
  if (pd) {
    if (s.fleet.engines !== pd.prefill_engines + pd.decode_engines)
      problems.push(
        `fleet.engines: must be prefill_engines + decode_engines (${pd.prefill_engines + pd.decode_engines}) with fleet.disaggregated, got ${s.fleet.engines}`,
      );
    for (const role of ["prefill", "decode"] as const) {
      const tp = pd[`${role}_tensor_parallel_size`];
      if (tp > 8 || (model && model.numHeads % tp !== 0))
        problems.push(
          `fleet.disaggregated.${role}_tensor_parallel_size: must divide the attention heads${model ? ` (${model.numHeads})` : ""} and be at most 8, got ${tp}`,
        );
    }
  }
  if (s.fleet.tensor_parallel_size > 8) {
    problems.push(
      `fleet.tensor_parallel_size: at most 8 GPUs per engine are modelled, got ${s.fleet.tensor_parallel_size}`,
    );
  }
  if (problems.length) throw new ScenarioError(problems);
  return { scenario: s, model: model!, gpu: gpu!, promptTokens, promptP90 };
}

/** a preset's size by `size`, or undefined (and a problem) when the name is not one of `presets` */
function presetOf<T>(
  presets: Record<string, T>,
  name: string,
  problems: string[],
  size: (p: T) => number,
): number | undefined {
  // own names only: "constructor" is no preset
  const p = Object.hasOwn(presets, name) ? presets[name] : undefined;
  if (p === undefined) {
    problems.push(
      `simulation.generator.preset: expected one of ${Object.keys(presets).join(", ")}, got ${show(name)}`,
    );
    return undefined;
  }
  return size(p);
}

/**
 * The scenario with its trace's requests, when its generator is `trace`: `readText` reads the file named
 * (the caller resolves it against the scenario's folder), so that this module does no I/O.
 */
export function withTrace(r: ResolvedScenario, readText: (path: string) => string): ResolvedScenario {
  const g = r.scenario.simulation.generator;
  if (g?.name !== "trace" || g.trace_file === undefined) return r;
  let text: string;
  try {
    text = readText(g.trace_file);
  } catch (err) {
    throw new ScenarioError([
      `simulation.generator.trace_file: cannot read ${g.trace_file}: ${(err as Error).message}`,
    ]);
  }
  try {
    return { ...r, trace: parseTrace(text, g.trace_file) };
  } catch (err) {
    throw new ScenarioError([`simulation.generator.trace_file: ${(err as Error).message}`]);
  }
}

export function parseScenarioText(text: string, source = "scenario"): ResolvedScenario {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ScenarioError([`${source}: not valid YAML: ${(err as Error).message.split("\n")[0]}`]);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ScenarioError([`${source}: expected a mapping with workload, fleet and ops`]);
  }
  return resolveScenario(raw);
}
