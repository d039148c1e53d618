// The fixed parts of a plan, written from what was decided: the stack, the router integration, the
// offload flags and the observability list.
import type { OffloadMode } from "../fleet/build.js";
import type { Scenario } from "../fleet/scenario.js";
import { CACHE_POLICY_NAMES } from "../routing/index.js";
import { CACHE_SERVER_PORT } from "../config/vllm-defaults.js";
import { PINNED_HASH_SEED } from "../protocol/vllm-releases.js";

/** KV-size factors of the break-even sweep (1 = the scenario's own KV cache) */
export const SWEEP_SCALES = [0.25, 0.5, 0.75, 1, 1.5, 2, 3];

export const OBSERVABILITY = [
  "Prometheus scrape per engine (/metrics: vllm:kv_cache_usage_perc, vllm:num_preemptions_total, vllm:num_requests_waiting)",
  "OTel GenAI attributes on router spans (gen_ai.request.model, gen_ai.usage.input_tokens, gen_ai.usage.output_tokens)",
  "Grafana dashboards from deploy/grafana (the chart ships them)",
];

export function stackSection(noKubernetes: boolean): {
  kind: "helm-chart" | "single-engine-proxy";
  chart: string | null;
  operators: string[];
  notes: string[];
} {
  return noKubernetes
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
          : "no session header needed: the router keys a conversation by its prompts (each turn extends the last)",
    );
  else if ((CACHE_POLICY_NAMES as readonly string[]).includes(policy))
    notes.push(
      "no session header needed: requests follow the engines' cached prefixes, weighed against load",
    );
  else notes.push("no session header needed");
  return notes;
}

export function routerSection(
  policy: string,
  sessionKey: string,
  kvEvents: boolean,
): {
  policy: string;
  session_key: string;
  /** whether every engine must publish KV events (and hash blocks alike) for the policy to work */
  kv_events: boolean;
  engine_flags: string[];
  engine_env: Record<string, string>;
  notes: string[];
} {
  return {
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
    // LMCache keys are block hashes too: the hash seed is pinned whatever the policy
    engine_env: { PYTHONHASHSEED: PINNED_HASH_SEED },
    notes: routerNotes(policy, sessionKey, kvEvents),
  };
}

export function offloadConfig(choice: OffloadMode, s: Scenario): Record<string, unknown> {
  const off = s.simulation.offload;
  if (choice === "native")
    return { "--kv-offloading-backend": "native", "--kv-offloading-size": off.native_gib };
  if (choice === "lmcache")
    return {
      "--kv-transfer-config": '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}',
      LMCACHE_CHUNK_SIZE: off.lmcache_chunk_size,
      LMCACHE_LOCAL_CPU: "True",
      LMCACHE_MAX_LOCAL_CPU_SIZE: off.lmcache_local_cpu_gib,
      ...(off.shared_server
        ? { LMCACHE_REMOTE_URL: `lm://<cache-server>:${CACHE_SERVER_PORT}`, LMCACHE_REMOTE_SERDE: "naive" }
        : {}),
    };
  return {};
}
