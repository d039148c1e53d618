// The plan as data: the JSON `switchyard plan --json` writes (its types), a fleet's JSON form and back,
// one offload option's measured impact, and the fixed figures and thresholds every plan quotes.
import type { OffloadMode } from "../fleet/build.js";
import type { FleetReport } from "../fleet/report.js";
import { VLLM_GPU_MEMORY_UTILIZATION } from "../config/vllm-defaults.js";
import { gain, type BreakEven, type SweepPoint } from "./decide.js";
import { gpusOf, type FleetChoice } from "./input.js";
import type { PriceTable } from "./prices.js";
import type { Front } from "./front.js";
import type { L2Plan } from "./l2.js";
import type { LoraPlan } from "./lora.js";
import type { PdOutcome } from "./layouts.js";
import type { Finding } from "./rules.js";
import type { Evaluated } from "./search.js";
import type { Predicted, Slo, SloTargets } from "./slo.js";
import type { routerSection, stackSection } from "./sections.js";

export const GATE_PROMQL = "max(quantile_over_time(0.99, vllm:kv_cache_usage_perc[24h]))";
/** vLLM's default; the 10% it leaves covers CUDA graphs, NCCL and allocator slack outside the profile */
export const RECOMMENDED_GPU_MEMORY_UTILIZATION = VLLM_GPU_MEMORY_UTILIZATION;
export const ALERT_FOR = "5m";

/** the published 16× H100 figures, set beside the user's own */
export const PUBLISHED = {
  source:
    'llm-d "tiered prefix cache" benchmark, 8 × Qwen3-32B TP2 on 16 × H100 (github.com/llm-d/llm-d, guides/tiered-prefix-cache)',
  high_cache: {
    baseline_tok_s: 38535,
    native_gain: 0.213,
    lmcache_gain: 0.217,
    native_mean_ttft_change: -0.256,
    lmcache_mean_ttft_change: -0.278,
  },
  low_cache: { baseline_tok_s: 23390, native_gain: -0.015, lmcache_gain: -0.026 },
  note: "other write-ups put LMCache's cost at 3–5% when KV fits; this run measured 1.5–2.6%, and that is what we quote",
};

export interface OptionImpact {
  throughput_tok_s: number;
  output_tok_s: number;
  ttft_p50_ms: number;
  ttft_p90_ms: number;
  ttft_mean_ms: number;
  tpot_p90_ms: number;
  e2e_mean_ms: number;
  e2e_p90_ms: number;
  kv_usage_p99: number;
  preemptions: number;
  reprefill_avoided_tokens: number;
  hit_rates: FleetReport["hit_rates"];
  gain_vs_none: number;
  refused: boolean;
}

export interface FleetJson {
  gpu: string;
  engines: number;
  tensor_parallel_size: number;
  /** set when the model's own context does not fit and the plan sized it to the workload */
  max_model_len?: number;
  /** a disaggregated fleet: `engines` is prefill + decode, `tensor_parallel_size` the decode engines' */
  disaggregated?: {
    prefill_engines: number;
    decode_engines: number;
    prefill_tensor_parallel_size: number;
    decode_tensor_parallel_size: number;
  };
  /** GPUs in all */
  gpus: number;
}

export interface Alternative {
  fleet: FleetJson;
  cost_usd_per_hour: number | null;
  predicted: Predicted;
  /** the run was ended once it was certain to miss: its figures cover the requests finished by then */
  stopped_early?: boolean;
}

export interface Plan {
  scenario: string;
  /** the verdict in a few lines: SLO met or not and by how much, the fleet, its cost */
  summary: string[];
  fleet: FleetJson;
  slo: (Slo & { targets_ms: SloTargets }) | null;
  /** null without an SLO */
  slo_met: boolean | null;
  headroom: number | null;
  cost_usd_per_hour: number | null;
  budget_usd_per_hour: number | null;
  within_budget: boolean | null;
  predicted: Predicted;
  /**
   * the same fleet with one engine fewer (a sized fleet's evidence that it is not over-built); for a
   * disaggregated fleet, one decode engine fewer
   */
  one_engine_fewer: (Alternative & { slo_met: boolean; misses: string[] }) | null;
  /** a disaggregated fleet with one prefill engine fewer */
  one_prefill_fewer: (Alternative & { slo_met: boolean; misses: string[] }) | null;
  /** `--target-rps` / `--target-concurrency`: the load the fleet is sized for, and the objective */
  target: { rps: number | null; concurrency: number | null; objective: string } | null;
  /** the disaggregated (xPyD) layouts searched, per GPU and TP pair; null when none was */
  disaggregated_search: PdOutcome[] | null;
  /** output tokens/s per GPU against tokens/s per user over every layout simulated to the end */
  front: Front;
  /** a fixed fleet that misses the SLO: by how much, and the fleet that would meet it */
  undersized: { over_by: Record<string, number>; meets_slo_with: Alternative | null; note: string } | null;
  search: {
    shapes: {
      gpu: string;
      tensor_parallel_size: number;
      engines: number | null;
      cost_usd_per_hour: number | null;
      note: string;
    }[];
    runs: number;
  } | null;
  prices: { usd_per_gpu_hour: PriceTable; source: string };
  stack: ReturnType<typeof stackSection>;
  kv_offload: { choice: OffloadMode; rule: string; reason: string; config: Record<string, unknown> };
  /** the shared tier's store (LMCache's L2) where the scenario has one (offload.shared_server) */
  kv_l2: L2Plan | null;
  /** the LoRA flags where the workload names adapters (workload.lora), and the adapters held at the SLO */
  lora: LoraPlan | null;
  refusals: Finding[];
  decisions: Finding[];
  hbm: {
    gpu_memory_utilization: number;
    alert_threshold: number;
    alert_for: string;
    alert_promql: string;
    kv_tokens_per_engine: number;
    kv_gb_per_engine: number;
  };
  router: ReturnType<typeof routerSection>;
  observability: string[];
  impact: Record<OffloadMode, OptionImpact>;
  published: typeof PUBLISHED;
  kv_spill: {
    option: OffloadMode;
    reprefill_avoided_tokens: number;
    throughput_gain: number;
    /** baseline KV usage P99 of the largest KV cache at which offload gains ≥ 3% */
    break_even_kv_usage_p99: number | null;
    /** the same figure at the next larger KV cache, where offload did not pay yet */
    no_gain_below_kv_usage_p99: number | null;
    break_even: BreakEven;
    /** requests per sweep point; the impact runs' own count makes its ×1 point those runs */
    sweep_requests: number;
    /** why the sweep's runs are shorter than the impact table's, when they are */
    sweep_note: string | null;
    sweep: SweepPoint[];
  };
  gate: { metric: string; promql: string; threshold: number; pass_if: string };
  simulation: {
    engines: number;
    requests: number;
    generator: string;
    /** how well a p90 is known from that many requests */
    confidence: string;
    runs: number;
    wall_s: number;
  };
}

export type PlanOutcome = { ok: true; plan: Plan } | { ok: false; refusals: Finding[] };

export function impactOf(e: Evaluated, base: FleetReport, refused: boolean): OptionImpact {
  const b = e.report.bench;
  return {
    throughput_tok_s: b.total_token_throughput as number,
    output_tok_s: b.output_throughput as number,
    ttft_p50_ms: b.median_ttft_ms as number,
    ttft_p90_ms: b.p90_ttft_ms as number,
    ttft_mean_ms: b.mean_ttft_ms as number,
    tpot_p90_ms: b.p90_tpot_ms as number,
    e2e_mean_ms: b.mean_e2el_ms as number,
    e2e_p90_ms: b.p90_e2el_ms as number,
    kv_usage_p99: e.report.kv_usage.p99,
    preemptions: e.report.preemptions,
    reprefill_avoided_tokens: e.report.reprefill_avoided_tokens,
    hit_rates: e.report.hit_rates,
    gain_vs_none: gain(e.report, base),
    refused,
  };
}

export const fleetJson = (f: FleetChoice): FleetJson => ({
  gpu: f.gpu,
  engines: f.engines,
  tensor_parallel_size: f.tp,
  ...(f.maxModelLen !== undefined ? { max_model_len: f.maxModelLen } : {}),
  ...(f.pd
    ? {
        disaggregated: {
          prefill_engines: f.pd.prefill,
          decode_engines: f.pd.decode,
          prefill_tensor_parallel_size: f.pd.prefillTp,
          decode_tensor_parallel_size: f.pd.decodeTp,
        },
      }
    : {}),
  gpus: gpusOf(f),
});

/** the FleetChoice a plan's fleet JSON stands for */
export function choiceOf(f: FleetJson): FleetChoice {
  const d = f.disaggregated;
  return {
    gpu: f.gpu,
    tp: f.tensor_parallel_size,
    engines: f.engines,
    ...(f.max_model_len !== undefined ? { maxModelLen: f.max_model_len } : {}),
    ...(d
      ? {
          pd: {
            prefill: d.prefill_engines,
            decode: d.decode_engines,
            prefillTp: d.prefill_tensor_parallel_size,
            decodeTp: d.decode_tensor_parallel_size,
          },
        }
      : {}),
  };
}
