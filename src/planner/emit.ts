// What `plan` writes for the cluster: Helm values for deploy/helm/switchyard (only keys its values.yaml
// defines), and the alerting rules (the 92% sustained KV alert, the closing gate as a recording rule,
// and the SLO's p90 bounds when the plan has one) as a PrometheusRule for the Prometheus Operator or
// as a plain rule file for any Prometheus (`rule_files:`).
import { stringify } from "yaml";
import { engineConfigFor, roleScenario } from "../fleet/build.js";
import type { ResolvedScenario } from "../fleet/scenario.js";
import { ROUTER_POLICY_NAMES } from "../routing/index.js";
import { ALERT_FOR, type Plan } from "./plan-json.js";
import { UnsupportedError } from "../errors/index.js";

/** a DNS-1123 label from a model id: `Qwen/Qwen3-32B` → `qwen3-32b` */
export function dnsName(model: string): string {
  const base = model.split("/").pop() ?? model;
  return (
    base
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 40) || "model"
  );
}

/**
 * the router policies deploy/helm/switchyard/values.schema.json accepts for `router.policy`: the router's
 * own, so whatever policy a plan runs, the chart can run (test/deploy/policy-names.test.ts holds the
 * schema's enum to this). `predictive` needs no other value: without a GPU profile the router learns each
 * engine's speed from its metrics.
 */
export const CHART_ROUTER_POLICIES: ReadonlySet<string> = new Set(ROUTER_POLICY_NAMES);

function routerValues(policy: string): Record<string, unknown> {
  if (!CHART_ROUTER_POLICIES.has(policy))
    throw new UnsupportedError(`the chart has no router policy '${policy}'`);
  return { policy };
}

/** the adapters' volume the emitted values name, for the operator to create or replace */
export const LORA_VOLUME_CLAIM = "lora-adapters";

/** vLLM 0.32 maps `--kv-offloading-backend lmcache` to LMCache's multiprocess server */
export const LMCACHE_MP_SINCE = [0, 32] as const;

/**
 * The chart's LMCache layout for an engine release: LMCache's multiprocess server per node from vLLM
 * 0.32, the in-process connector before it; `auto` (the chart reads its image tag) when unknown.
 */
export function lmcacheLayout(vllmVersion: string | undefined): "mp" | "connector" | "auto" {
  if (vllmVersion === undefined) return "auto";
  const [major = 0, minor = 0] = vllmVersion.split(".").map(Number);
  const [m0, m1] = LMCACHE_MP_SINCE;
  return major > m0 || (major === m0 && minor >= m1) ? "mp" : "connector";
}

export function helmValues(plan: Plan, r: ResolvedScenario): Record<string, unknown> {
  const s = r.scenario;
  const off = s.simulation.offload;
  const choice = plan.kv_offload.choice;
  const shared = choice === "lmcache" && off.shared_server !== null;
  // the L2 the plan chose: a Valkey Cluster needs LMCache's MP server (vLLM 0.32), the chart's default
  const cluster =
    shared && plan.kv_l2?.cluster && lmcacheLayout(s.fleet.vllm_version) !== "connector"
      ? plan.kv_l2.cluster
      : null;
  const serverShared = shared && !cluster;
  // the engine the simulator ran: its vLLM defaults (max_num_seqs, max_model_len) go out explicitly;
  // `r` carries the plan's fleet (sized by the search where the scenario left it open)
  const replicas = plan.stack.kind === "helm-chart" ? plan.fleet.engines : 1;
  const vllmVersion = s.fleet.vllm_version;
  const layout = lmcacheLayout(vllmVersion);
  const entry = (name: string, role: string, count: number, tp: number, rr: ResolvedScenario) => {
    const cfg = engineConfigFor(rr, "none");
    return {
      // Helm replaces lists whole: the entry carries every field the chart requires (role, ...)
      name,
      model: r.model.id,
      role,
      replicas: count,
      tensorParallelSize: tp,
      gpuMemoryUtilization: plan.hbm.gpu_memory_utilization,
      maxModelLen: cfg.maxModelLen,
      enablePrefixCaching: true,
      enableChunkedPrefill: true,
      dtype: "auto",
      maxNumSeqs: cfg.maxNumSeqs,
      resources: {
        requests: { cpu: "4", memory: "32Gi" },
        // the chart adds nvidia.com/gpu = tensorParallelSize itself
        limits: { memory: "64Gi" },
      },
      // the same engine in `engines.mode: sim` (a CPU-only rehearsal of this plan)
      sim: { gpu: plan.fleet.gpu, timeScale: 1 },
    };
  };
  const pd = plan.fleet.disaggregated;
  const models = pd
    ? // the router finds the pools by the pods' role labels and runs its P/D mode (docs/disaggregated.md)
      [
        entry(
          `${dnsName(s.fleet.model)}-prefill`,
          "prefill",
          pd.prefill_engines,
          pd.prefill_tensor_parallel_size,
          roleScenario(r, "prefill"),
        ),
        entry(
          `${dnsName(s.fleet.model)}-decode`,
          "decode",
          pd.decode_engines,
          pd.decode_tensor_parallel_size,
          roleScenario(r, "decode"),
        ),
      ]
    : [entry(dnsName(s.fleet.model), "mixed", replicas, plan.fleet.tensor_parallel_size, r)];
  return {
    router: routerValues(plan.router.policy),
    engines: {
      mode: "vllm",
      prefixCachingHashAlgo: "sha256_cbor",
      pythonHashSeed: plan.router.engine_env.PYTHONHASHSEED,
      ...(vllmVersion !== undefined ? { vllmImage: { tag: `v${vllmVersion}` } } : {}),
      kvEvents: { enabled: plan.router.kv_events },
      // KEDA keeps at least the fleet the plan simulated; raise maxReplicas to let it add engines. Its
      // bounds are one pair for every model: disaggregated pools sized apart keep their replicas instead
      autoscaling: pd ? { enabled: false } : { enabled: true, minReplicas: replicas, maxReplicas: replicas },
      offload: {
        mode: choice,
        native: { sizeGiB: off.native_gib },
        lmcache: {
          layout,
          chunkSize: off.lmcache_chunk_size,
          localCpu: true,
          maxLocalCpuSizeGB: off.lmcache_local_cpu_gib,
          remoteSerde: "naive",
          // the MP server's L1 is the node's CPU tier; the shared tier, when planned, its L2
          ...(layout === "mp" ? { mp: { l1SizeGB: off.lmcache_local_cpu_gib } } : {}),
        },
        l2: cluster
          ? {
              type: "cluster",
              cluster: {
                shards: cluster.shards,
                replicasPerShard: cluster.replicas_per_shard,
                maxMemoryGB: cluster.memory_per_shard_gib,
              },
            }
          : { type: shared ? "cache-server" : "none" },
      },
      models,
      ...(plan.lora
        ? {
            // the router loads adapters on demand from the volume it shares with the engines: point
            // `volume` at yours (the claim named here is a placeholder)
            lora: {
              enabled: true,
              runtimeUpdating: true,
              maxLoras: plan.lora.max_loras,
              maxCpuLoras: plan.lora.max_cpu_loras,
              maxLoraRank: plan.lora.max_lora_rank,
              volume: { persistentVolumeClaim: { claimName: LORA_VOLUME_CLAIM } },
            },
          }
        : {}),
    },
    cacheServer: {
      enabled: serverShared,
      ...(serverShared ? { maxMemory: `${off.shared_server!.size_gib}GiB` } : {}),
    },
    monitoring: {
      serviceMonitors: { enabled: true },
      prometheusRule: { enabled: true },
      dashboards: { enabled: true },
    },
  };
}

/**
 * The scenario as the plan ran its chosen fleet: the fleet (disaggregated pools included), the router
 * policy and the offload option filled in, so that `switchyard simulate` runs what the plan predicted.
 */
export function emittedScenario(plan: Plan, planned: ResolvedScenario): Record<string, unknown> {
  const s = structuredClone(planned.scenario);
  s.simulation.offload.mode = plan.kv_offload.choice;
  if (s.fleet.disaggregated === undefined) delete s.fleet.disaggregated;
  return s as unknown as Record<string, unknown>;
}

/** the rule groups of the plan: `groups:` of a Prometheus rule file, or `spec.groups` of a PrometheusRule */
export function ruleGroups(plan: Plan): Record<string, unknown>[] {
  const groups: Record<string, unknown>[] = [
    {
      name: "switchyard-kv-pressure",
      rules: [
        {
          alert: "SwitchyardKVCacheSustainedPressure",
          expr: plan.hbm.alert_promql,
          for: ALERT_FOR,
          labels: { severity: "warning" },
          annotations: {
            summary: "KV cache of {{ $labels.pod }} at {{ $value | humanizePercentage }} for " + ALERT_FOR,
            description:
              "Sustained KV (HBM) usage at or above 92% is the pre-preemption signal: the scheduler is about to preempt running requests. Add replicas, lower max-num-seqs, or enable KV offload.",
          },
        },
        {
          record: "switchyard:kv_cache_usage_perc:p99_24h",
          expr: plan.gate.promql,
        },
      ],
    },
  ];
  const slo = plan.slo;
  if (slo) {
    const p90 = (metric: string) =>
      `histogram_quantile(0.9, sum by (le, model_name) (rate(${metric}_bucket[5m])))`;
    const bound = (name: string, metric: string, ms: number, what: string) => ({
      alert: name,
      expr: `${p90(metric)} > ${ms / 1000}`,
      for: "10m",
      labels: { severity: "warning" },
      annotations: {
        summary: `${what} p90 of {{ $labels.model_name }} is {{ $value | humanizeDuration }}, over the SLO of ${ms / 1000} s`,
        description: `The plan sized the fleet for ${what} p90 ≤ ${ms / 1000} s with ${Math.round(slo.headroom * 100)}% headroom; sustained for 10 minutes, the load has outgrown the fleet. Add engines (the plan's search gives the count) or shed load.`,
      },
    });
    const rules = [
      bound("SwitchyardSloTtftP90", "vllm:time_to_first_token_seconds", slo.ttft_p90_ms, "TTFT"),
      bound("SwitchyardSloTpotP90", "vllm:request_time_per_output_token_seconds", slo.tpot_p90_ms, "TPOT"),
    ];
    if (slo.e2e_p90_ms !== undefined)
      rules.push(
        bound("SwitchyardSloE2eP90", "vllm:e2e_request_latency_seconds", slo.e2e_p90_ms, "E2E latency"),
      );
    groups.push({ name: "switchyard-slo", rules });
  }
  return groups;
}

export function prometheusRule(plan: Plan, name = "switchyard-kv-pressure"): Record<string, unknown> {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: { name, labels: { "app.kubernetes.io/part-of": "switchyard" } },
    spec: { groups: ruleGroups(plan) },
  };
}

/** the same rules as a plain Prometheus rule file, for `rule_files:` (and `promtool check rules`) */
export function prometheusRuleFile(plan: Plan): Record<string, unknown> {
  return { groups: ruleGroups(plan) };
}

export const toYaml = (v: unknown) => stringify(v, { lineWidth: 0 });
