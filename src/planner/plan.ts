// The plan: runs the scenario through the simulator once per offload option (and a KV-size sweep for the
// spill report), applies the seed's rules, and assembles the one-page answer.
import { sessionKeyFor, workloadFor, defaultRequests, type OffloadMode } from "../fleet/build.js";
import type { FleetReport } from "../fleet/report.js";
import { runScenario } from "../fleet/run.js";
import type { ResolvedScenario } from "../fleet/scenario.js";
import {
  KV_ALERT_THRESHOLD,
  KV_EVENT_POLICIES,
  OFFLOAD_PAYS_GAIN,
  offloadRefusals,
  planRefusal,
  REFUSALS,
  selectOffload,
  selectRouterPolicy,
  stackRefusals,
  type Finding,
} from "./rules.js";

export const GATE_PROMQL = "max(quantile_over_time(0.99, vllm:kv_cache_usage_perc[24h]))";
/** vLLM's default; the 10% it leaves covers CUDA graphs, NCCL and allocator slack outside the profile */
export const RECOMMENDED_GPU_MEMORY_UTILIZATION = 0.9;
export const ALERT_FOR = "5m";
/** KV-size factors of the break-even sweep (1 = the scenario's own KV cache) */
export const SWEEP_SCALES = [0.25, 0.5, 0.75, 1, 1.5, 2, 3];
/** requests per sweep point: enough to fill the caches, few enough to keep `plan` quick */
export const SWEEP_REQUESTS = 300;

/** the published 16× H100 figures (llm-d tiered-prefix-cache benchmark), set beside the user's own */
export const PUBLISHED = {
  source: "llm-d tiered-prefix-cache benchmark, 8 × Qwen3-32B TP2 on 16 × H100",
  high_cache: {
    baseline_tok_s: 38535,
    native_gain: 0.213,
    lmcache_gain: 0.217,
    native_mean_ttft_change: -0.256,
    lmcache_mean_ttft_change: -0.278,
  },
  low_cache: { baseline_tok_s: 23390, native_gain: -0.015, lmcache_gain: -0.026 },
  note: "LMCache is often said to cost 3–5% when KV fits; the published run measured 1.5–2.6%, and that is what we quote",
};

export interface OptionImpact {
  throughput_tok_s: number;
  output_tok_s: number;
  ttft_p50_ms: number;
  ttft_p90_ms: number;
  ttft_mean_ms: number;
  e2e_mean_ms: number;
  kv_usage_p99: number;
  preemptions: number;
  reprefill_avoided_tokens: number;
  hit_rates: FleetReport["hit_rates"];
  gain_vs_none: number;
  refused: boolean;
}

export interface SweepPoint {
  kv_scale: number;
  kv_tokens_per_engine: number;
  baseline_kv_usage_p99: number;
  baseline_kv_usage_mean: number;
  baseline_preemptions: number;
  gain: number;
}

export interface Plan {
  scenario: string;
  stack: {
    kind: "helm-chart" | "single-engine-proxy";
    chart: string | null;
    operators: string[];
    notes: string[];
  };
  kv_offload: {
    choice: "none" | "native" | "lmcache";
    rule: string;
    reason: string;
    config: Record<string, unknown>;
  };
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
  router: {
    policy: string;
    session_key: string;
    /** whether every engine must publish KV events (and hash blocks alike) for the policy to work */
    kv_events: boolean;
    engine_flags: string[];
    engine_env: Record<string, string>;
    notes: string[];
  };
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
    sweep: SweepPoint[];
  };
  gate: { metric: string; promql: string; threshold: number; pass_if: string };
  simulation: { engines: number; requests: number; generator: string; wall_s: number };
}

export type PlanOutcome = { ok: true; plan: Plan } | { ok: false; refusals: Finding[] };

const gain = (x: FleetReport, base: FleetReport) => {
  const b = base.bench.total_token_throughput as number;
  return b > 0 ? (x.bench.total_token_throughput as number) / b - 1 : 0;
};

function impactOf(rep: FleetReport, base: FleetReport, refused: boolean): OptionImpact {
  const b = rep.bench;
  return {
    throughput_tok_s: b.total_token_throughput as number,
    output_tok_s: b.output_throughput as number,
    ttft_p50_ms: b.median_ttft_ms as number,
    ttft_p90_ms: b.p90_ttft_ms as number,
    ttft_mean_ms: b.mean_ttft_ms as number,
    e2e_mean_ms: b.mean_e2el_ms as number,
    kv_usage_p99: rep.kv_usage.p99,
    preemptions: rep.preemptions,
    reprefill_avoided_tokens: rep.reprefill_avoided_tokens,
    hit_rates: rep.hit_rates,
    gain_vs_none: gain(rep, base),
    refused,
  };
}

function routerNotes(policy: string, sessionKey: string, kvEvents: boolean): string[] {
  const notes: string[] = [];
  if (kvEvents)
    notes.push(
      "every engine publishes KV events (the router subscribes to each engine's PUB socket); an engine that does not is routed by the approximate prefix index instead",
    );
  notes.push(
    "the same PYTHONHASHSEED on every engine, or block hashes (and LMCache keys) differ silently and hit rates drop to zero",
  );
  if (policy === "session")
    notes.push(
      sessionKey === "group"
        ? "send the tenant or prompt-group id as the session header so one group's prefix stays on one engine"
        : sessionKey === "session"
          ? "send the user or conversation id as the session header"
          : "no session header needed",
    );
  else if (policy === "hybrid" || policy === "kv" || policy === "prefix")
    notes.push(
      "no session header needed: requests follow the engines' cached prefixes, weighed against load",
    );
  else notes.push("no session header needed");
  return notes;
}

export interface PlanOptions {
  /** sweep points (KV-size factors); [] skips the sweep */
  sweep?: readonly number[];
  sweepRequests?: number;
}

/** the scenario with the recommended policy pinned, so that every simulation runs the router we recommend */
function withPolicy(r: ResolvedScenario, policy: string): ResolvedScenario {
  return { ...r, scenario: { ...r.scenario, simulation: { ...r.scenario.simulation, policy } } };
}

export function makePlan(scenario: ResolvedScenario, opts: PlanOptions = {}): PlanOutcome {
  const stop = planRefusal(scenario);
  if (stop) return { ok: false, refusals: [stop] };
  const routing = selectRouterPolicy(scenario);
  const r = withPolicy(scenario, routing.policy);
  const t0 = performance.now();
  const s = r.scenario;
  const reports: Record<OffloadMode, FleetReport> = {
    none: runScenario(r, "none"),
    native: runScenario(r, "native"),
    lmcache: runScenario(r, "lmcache"),
  };
  const base = reports.none;
  const refusals = [...stackRefusals(r), ...offloadRefusals(r, base.preemptions)];
  const refused = new Set(refusals.map((f) => f.rule));
  const offloadRefused = refused.has(REFUSALS.shortPromptsLowConcurrency.id);
  const lmRefused =
    offloadRefused || refused.has(REFUSALS.lmcacheSingleEngine.id) || refused.has(REFUSALS.lmcacheNoReuse.id);
  const bestGain = Math.max(
    offloadRefused ? 0 : gain(reports.native, base),
    lmRefused ? 0 : gain(reports.lmcache, base),
  );
  const sel = selectOffload(r, {
    refusals,
    baselineKvP99: base.kv_usage.p99,
    baselinePreemptions: base.preemptions,
    offloadGain: bestGain,
  });
  const decisions: Finding[] = [sel.finding, routing.finding];
  const noK8s = refused.has(REFUSALS.noKubernetes.id);

  // the spill report quantifies the chosen option, or native when none was chosen
  const spillOption: OffloadMode = sel.choice === "none" ? "native" : sel.choice;
  const sweep: SweepPoint[] = [];
  const sweepScales = opts.sweep ?? SWEEP_SCALES;
  const sweepRequests = Math.min(defaultRequests(r), opts.sweepRequests ?? SWEEP_REQUESTS);
  for (const scale of sweepScales) {
    const b = runScenario(r, "none", { kvScale: scale, requests: sweepRequests, recordItl: false });
    const o = runScenario(r, spillOption, { kvScale: scale, requests: sweepRequests, recordItl: false });
    sweep.push({
      kv_scale: scale,
      kv_tokens_per_engine: b.capacity.kv_tokens_per_engine,
      baseline_kv_usage_p99: b.kv_usage.p99,
      baseline_kv_usage_mean: b.kv_usage.mean,
      baseline_preemptions: b.preemptions,
      gain: gain(o, b),
    });
  }
  // walk from the largest cache (least pressure) down: offload starts to pay at the first point that gains
  const bySize = [...sweep].sort((a, b) => b.kv_scale - a.kv_scale);
  const firstPaying = bySize.findIndex((p) => p.gain >= OFFLOAD_PAYS_GAIN);
  const breakEven = firstPaying >= 0 ? bySize[firstPaying]!.baseline_kv_usage_p99 : null;
  const notPaying = firstPaying > 0 ? bySize[firstPaying - 1]!.baseline_kv_usage_p99 : null;

  const { generator } = workloadFor(r, defaultRequests(r));
  const policy = routing.policy;
  const kvEvents = KV_EVENT_POLICIES.has(policy);
  const sessionKey = sessionKeyFor(r, generator);
  const off = s.simulation.offload;
  const offloadConfig: Record<string, unknown> =
    sel.choice === "native"
      ? { "--kv-offloading-backend": "native", "--kv-offloading-size": off.native_gib }
      : sel.choice === "lmcache"
        ? {
            "--kv-transfer-config": '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}',
            LMCACHE_CHUNK_SIZE: off.lmcache_chunk_size,
            LMCACHE_LOCAL_CPU: "True",
            LMCACHE_MAX_LOCAL_CPU_SIZE: off.lmcache_local_cpu_gib,
            ...(off.shared_server
              ? { LMCACHE_REMOTE_URL: "lm://<cache-server>:65432", LMCACHE_REMOTE_SERDE: "naive" }
              : {}),
          }
        : {};
  const gpuUtil = s.fleet.gpu_memory_utilization ?? RECOMMENDED_GPU_MEMORY_UTILIZATION;
  const plan: Plan = {
    scenario: s.name ?? "scenario",
    stack: noK8s
      ? {
          kind: "single-engine-proxy",
          chart: null,
          operators: [],
          notes: [
            "one vLLM engine (`vllm serve`) behind a simple proxy (`switchyard router --backend http://engine:8000`)",
            "no Kubernetes: no chart, no operators; move to the chart when the team runs Kubernetes",
          ],
        }
      : {
          kind: "helm-chart",
          chart: "deploy/helm/switchyard",
          operators: [
            "Prometheus Operator: ServiceMonitor (router, engines, cache server) and PrometheusRule",
            "KEDA: ScaledObject per model on vllm:num_requests_waiting (HPA for the router)",
            "Grafana sidecar: dashboards as ConfigMaps",
          ],
          notes: ["Gateway API is not needed: the router is the front door (a Service)"],
        },
    kv_offload: {
      choice: sel.choice,
      rule: sel.finding.rule,
      reason: sel.finding.reason,
      config: offloadConfig,
    },
    refusals,
    decisions,
    hbm: {
      gpu_memory_utilization: gpuUtil,
      alert_threshold: KV_ALERT_THRESHOLD,
      alert_for: ALERT_FOR,
      alert_promql: `max by (namespace, pod, model_name) (vllm:kv_cache_usage_perc) >= ${KV_ALERT_THRESHOLD}`,
      kv_tokens_per_engine: base.capacity.kv_tokens_per_engine,
      kv_gb_per_engine: base.capacity.kv_gb_per_engine,
    },
    router: {
      policy,
      session_key: sessionKey,
      kv_events: kvEvents,
      engine_flags: [
        ...(kvEvents
          ? [
              '--kv-events-config \'{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","topic":"kv-events"}\'',
            ]
          : []),
        "--prefix-caching-hash-algo sha256_cbor",
        "--enable-prefix-caching",
      ],
      // LMCache keys are block hashes too: the seed is pinned whatever the policy
      engine_env: { PYTHONHASHSEED: "0" },
      notes: routerNotes(policy, sessionKey, kvEvents),
    },
    observability: [
      "Prometheus scrape per engine (/metrics: vllm:kv_cache_usage_perc, vllm:num_preemptions_total, vllm:num_requests_waiting)",
      "OTel GenAI attributes on router spans (gen_ai.request.model, gen_ai.usage.input_tokens, gen_ai.usage.output_tokens)",
      "Grafana dashboards from deploy/grafana (the chart ships them)",
    ],
    impact: {
      none: impactOf(reports.none, base, false),
      native: impactOf(reports.native, base, offloadRefused),
      lmcache: impactOf(reports.lmcache, base, lmRefused),
    },
    published: PUBLISHED,
    kv_spill: {
      option: spillOption,
      reprefill_avoided_tokens: reports[spillOption].reprefill_avoided_tokens,
      throughput_gain: gain(reports[spillOption], base),
      break_even_kv_usage_p99: breakEven,
      no_gain_below_kv_usage_p99: notPaying,
      sweep,
    },
    gate: {
      metric: "HBM (KV cache) utilisation P99 over the last 24 h",
      promql: GATE_PROMQL,
      threshold: KV_ALERT_THRESHOLD,
      pass_if: `< ${KV_ALERT_THRESHOLD}`,
    },
    simulation: {
      engines: s.fleet.engines,
      requests: base.requests,
      generator,
      wall_s: (performance.now() - t0) / 1000,
    },
  };
  return { ok: true, plan };
}
