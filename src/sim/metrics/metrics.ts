// `/metrics` with vLLM V1's metric names, labels and bucket boundaries, so dashboards, KEDA triggers
// and the router's scraper read the sim exactly as they read `vllm serve`. Engine counters are
// mirrored at scrape time (no work on the token path); per-request histograms are observed once when
// a request finishes, inter-token latency once per token through a pre-bound child.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { LruMap } from "../../collections/lru-map.js";
import type { EngineConfig, EngineSnapshot, FinishReason, RequestTimings } from "../../engine/types.js";
import type { LmcacheStats } from "../connectors/lmcache.js";
import { EngineFamilies, mirroredCounter, type AdmissionReason } from "./metrics-families.js";
import type { MetricsRelease } from "./metrics-release.js";

export const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
  2560,
];
export const ITL_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];
export const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];
export const ITERATION_TOKEN_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];

/** vLLM's 1-2-5 series (1, 2, 5, 10, 20, 50, ...) up to and including `max`. */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exp = 1; ; exp *= 10) {
    for (const m of [1, 2, 5]) {
      const v = m * exp;
      if (v > max) return out;
      out.push(v);
    }
  }
}

export type SleepState = "awake" | "weights_offloaded" | "discard_all";

export interface MetricsSources {
  modelName: string;
  maxModelLen: number;
  /** every cache-config field, already as Python would print it ("True", "None", "16") */
  cacheConfig: Record<string, string>;
  /** how the claimed vLLM release shows its metrics (metrics-release.ts) */
  release: MetricsRelease;
  /** --enable-lora or --lora-modules: vLLM registers vllm:lora_requests_info only with LoRA on */
  loraEnabled: boolean;
  offloadEnabled: boolean;
  /** LMCache connector counters, when LMCache is on */
  lmcache?: () => LmcacheStats;
  maxLoras: number;
  snapshot: () => EngineSnapshot;
  sleepState: () => SleepState;
  loraActivity: () => { running: string[]; waiting: string[] };
  /** the engine's model and GPU shape, for the per-GPU work estimates */
  engineConfig: EngineConfig;
  /** requests the runtime holds, admitted or not: the rest are deferred (a KV lookup or pull in flight) */
  inFlight: () => number;
  /** a KV connector (LMCache, NixlConnector) is configured and registers vllm:external_prefix_cache_* */
  kvConnector: boolean;
}

const ENGINE = "0";

/** past label combinations of vllm:lora_requests_info kept in a scrape (vLLM keeps every one) */
export const LORA_INFO_SERIES = 32;

export class SimMetrics {
  readonly registry = new Registry();
  /** the Content-Type of the page, as the claimed release answers it */
  readonly contentType: string;
  private readonly ttft;
  private readonly itl;
  private readonly iterationTokens;
  private readonly finishedCounters: Record<FinishReason, Counter.Internal>;
  private readonly perRequest: Record<string, Histogram.Internal<string>>;
  private readonly families: EngineFamilies;

  constructor(src: MetricsSources) {
    const labels = { model_name: src.modelName, engine: ENGINE };
    const labelNames = ["model_name", "engine"] as const;
    const r = this.registry;
    this.contentType = src.release.contentType;
    const gauge = (name: string, help: string, read: (s: EngineSnapshot) => number) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          this.set(labels, read(src.snapshot()));
        },
      });
    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", (s) => s.numRunning);
    // vLLM counts the requests it holds back while their KV is fetched as waiting too (reason deferred)
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", (s) =>
      Math.max(s.numWaiting, src.inFlight() - s.numRunning),
    );
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", (s) => s.kvCacheUsage);

    // vLLM's exposition lists the fields sorted, engine among them
    const cacheLabels = Object.fromEntries(
      Object.entries({ ...src.cacheConfig, engine: ENGINE }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    new Gauge({
      name: "vllm:cache_config_info",
      help: "Information of the LLMEngine CacheConfig",
      labelNames: Object.keys(cacheLabels),
      registers: [r],
      collect() {
        this.set(cacheLabels, 1);
      },
    });

    const sleepGauge = new Gauge({
      name: "vllm:engine_sleep_state",
      help: "Engine sleep state; awake = 0 means engine is sleeping.",
      labelNames: ["model_name", "engine", "sleep_state"],
      registers: [r],
      collect() {
        const now = src.sleepState();
        for (const st of ["awake", "weights_offloaded", "discard_all"] as const) {
          this.set({ ...labels, sleep_state: st }, st === now ? 1 : 0);
        }
      },
    });
    void sleepGauge;

    // vLLM sets this gauge to the time of its latest report under that report's labels and never
    // removes a series, so a scrape shows every combination reported so far and the current one has
    // the largest value; the sim keeps the latest LORA_INFO_SERIES of them
    const loraSeries = new LruMap<string, { labels: Record<string, string>; at: number }>();
    if (src.loraEnabled)
      new Gauge({
        name: "vllm:lora_requests_info",
        help: "Running stats on lora requests.",
        labelNames: ["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
        registers: [r],
        collect() {
          const a = src.loraActivity();
          const labels = {
            max_lora: String(src.maxLoras),
            waiting_lora_adapters: a.waiting.join(","),
            running_lora_adapters: a.running.join(","),
          };
          loraSeries.set(`${labels.waiting_lora_adapters}\u0000${labels.running_lora_adapters}`, {
            labels,
            at: Date.now() / 1000,
          });
          while (loraSeries.size > LORA_INFO_SERIES) loraSeries.shift();
          this.reset();
          for (const s of loraSeries.values()) this.set(s.labels, s.at);
        },
      });

    // Counters mirrored from the engine's cumulative counters at scrape time.
    const mirrored = (name: string, help: string, read: (s: EngineSnapshot) => number) =>
      mirroredCounter(r, labels, name, help, () => read(src.snapshot()));
    mirrored(
      "vllm:num_preemptions_total",
      "Cumulative number of preemption from the engine.",
      (s) => s.counters.numPreemptions,
    );
    mirrored(
      "vllm:prompt_tokens_total",
      "Number of prefill tokens processed.",
      (s) => s.counters.promptTokens,
    );
    mirrored(
      "vllm:generation_tokens_total",
      "Number of generation tokens processed.",
      (s) => s.counters.generationTokens,
    );
    mirrored(
      "vllm:prefix_cache_queries_total",
      "Prefix cache queries, in terms of number of queried tokens.",
      (s) => s.counters.prefixCacheQueries,
    );
    mirrored(
      "vllm:prefix_cache_hits_total",
      "Prefix cache hits, in terms of number of cached tokens.",
      (s) => s.counters.prefixCacheHits,
    );
    mirrored(
      "switchyard_sim_recomputed_tokens_total",
      "Prompt tokens computed again after a preemption or an eviction (sim only).",
      (s) => s.counters.recomputedTokens,
    );
    mirrored("switchyard_sim_steps_total", "Engine steps run (sim only).", (s) => s.counters.steps);
    mirrored(
      "switchyard_sim_busy_seconds_total",
      "Modelled seconds the engine spent in steps, before --time-scale (sim only).",
      (s) => s.counters.busySeconds,
    );
    if (src.offloadEnabled) {
      const byType = (
        name: string,
        help: string,
        toGpu: (s: EngineSnapshot) => number,
        toCpu: (s: EngineSnapshot) => number,
      ) => {
        const seen = { cpu_to_gpu: 0, gpu_to_cpu: 0 };
        new Counter({
          name,
          help,
          labelNames: ["model_name", "engine", "transfer_type"],
          registers: [r],
          collect() {
            const s = src.snapshot();
            for (const [t, v] of [
              ["cpu_to_gpu", toGpu(s)],
              ["gpu_to_cpu", toCpu(s)],
            ] as const) {
              this.inc({ ...labels, transfer_type: t }, Math.max(0, v - seen[t]));
              seen[t] = Math.max(seen[t], v);
            }
          },
        });
      };
      byType(
        "vllm:kv_offload_total_bytes_total",
        "Bytes moved by the KV offloading connector.",
        (s) => s.counters.offloadBytesToGpu,
        (s) => s.counters.offloadBytesToCpu,
      );
      mirrored(
        "vllm:kv_offload_total_time_total",
        "Seconds spent in KV offload transfers.",
        (s) => s.counters.offloadTransferSeconds,
      );
      mirrored(
        "switchyard_sim_offload_hit_tokens_total",
        "Prompt tokens loaded from the CPU tier (sim only).",
        (s) => s.counters.offloadHitTokens,
      );
      mirrored(
        "switchyard_sim_offload_stored_blocks_total",
        "Blocks stored to the CPU tier (sim only).",
        (s) => s.counters.offloadStoredBlocks,
      );
      mirrored(
        "switchyard_sim_offload_loaded_blocks_total",
        "Blocks loaded from the CPU tier (sim only).",
        (s) => s.counters.offloadLoadedBlocks,
      );
      new Gauge({
        name: "vllm:kv_offload_size",
        help: "CPU KV offload tier capacity in blocks.",
        labelNames,
        registers: [r],
        collect() {
          this.set(labels, src.snapshot().numCpuBlocks);
        },
      });
    }

    if (src.lmcache) this.registerLmcache(src.lmcache, mirrored, labels, labelNames);

    const success = new Counter({
      name: "vllm:request_success_total",
      help: "Count of successfully processed requests.",
      labelNames: ["model_name", "engine", "finished_reason"],
      registers: [r],
    });
    this.finishedCounters = {
      stop: success.labels({ ...labels, finished_reason: "stop" }),
      length: success.labels({ ...labels, finished_reason: "length" }),
      abort: success.labels({ ...labels, finished_reason: "abort" }),
    };

    const hist = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, buckets, labelNames, registers: [r] }).labels(labels);
    this.ttft = hist(
      "vllm:time_to_first_token_seconds",
      "Histogram of time to first token in seconds.",
      TTFT_BUCKETS,
    );
    this.itl = hist(
      "vllm:inter_token_latency_seconds",
      "Histogram of inter-token latency in seconds.",
      ITL_BUCKETS,
    );
    this.iterationTokens = hist(
      "vllm:iteration_tokens_total",
      "Histogram of number of tokens per engine_step.",
      ITERATION_TOKEN_BUCKETS,
    );
    const tokenBuckets = buckets125(src.maxModelLen);
    this.perRequest = {
      tpot: hist(
        "vllm:request_time_per_output_token_seconds",
        "Histogram of time_per_output_token_seconds per request.",
        ITL_BUCKETS,
      ),
      e2e: hist(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        REQUEST_LATENCY_BUCKETS,
      ),
      queue: hist(
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        REQUEST_LATENCY_BUCKETS,
      ),
      inference: hist(
        "vllm:request_inference_time_seconds",
        "Histogram of time spent in RUNNING phase for request.",
        REQUEST_LATENCY_BUCKETS,
      ),
      prefill: hist(
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        REQUEST_LATENCY_BUCKETS,
      ),
      decode: hist(
        "vllm:request_decode_time_seconds",
        "Histogram of time spent in DECODE phase for request.",
        REQUEST_LATENCY_BUCKETS,
      ),
      promptTokens: hist("vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokenBuckets),
      generationTokens: hist(
        "vllm:request_generation_tokens",
        "Number of generation tokens processed.",
        tokenBuckets,
      ),
      maxTokens: hist(
        "vllm:request_params_max_tokens",
        "Histogram of the max_tokens request parameter.",
        tokenBuckets,
      ),
    };
    this.families = new EngineFamilies(r, labels, tokenBuckets, {
      engineConfig: src.engineConfig,
      snapshot: src.snapshot,
      inFlight: src.inFlight,
      registerExternalPrefixCache: !src.kvConnector,
      release: src.release,
    });
  }

  /** vLLM's connector prefix-cache counters, and the sim's own view of the LMCache traffic. */
  private registerLmcache(
    stats: () => LmcacheStats,
    mirrored: (name: string, help: string, read: (s: EngineSnapshot) => number) => void,
    labels: Record<string, string>,
    labelNames: readonly string[],
  ): void {
    const r = this.registry;
    mirrored(
      "vllm:external_prefix_cache_queries_total",
      "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
      () => stats().queriedTokens,
    );
    mirrored(
      "vllm:external_prefix_cache_hits_total",
      "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
      (s) => s.counters.externalHitTokens,
    );
    const own = (name: string, help: string, read: (st: LmcacheStats) => number) =>
      mirrored(`switchyard_sim_lmcache_${name}`, `${help} (sim only).`, () => read(stats()));
    own(
      "lookups_total",
      "Remote prefix lookups (pipelined EXIST, then GET of the hit chunks)",
      (st) => st.lookups,
    );
    own("lookup_hit_chunks_total", "Chunks found and verified by remote lookups", (st) => st.lookupHitChunks);
    own(
      "stored_chunks_total",
      "Chunks stored on the remote server, fenced (every TP rank's key)",
      (st) => st.storedChunks,
    );
    own(
      "dropped_chunks_total",
      "Chunks dropped from a full store queue, oldest first, while the server was slow or down",
      (st) => st.droppedChunks,
    );
    own(
      "errors_total",
      "Failed remote lookups and store batches (refused, lost, timed out, bad bytes)",
      (st) => st.errors,
    );
    own(
      "sent_bytes_total",
      "Payload bytes PUT on the wire (modelled bytes × --lmcache-payload-scale)",
      (st) => st.bytesSent,
    );
    own("received_bytes_total", "Payload bytes read back by lookups (scaled)", (st) => st.bytesReceived);
    mirrored(
      "switchyard_sim_lmcache_loaded_bytes_total",
      "Modelled KV bytes loaded from the remote tier instead of computed (sim only).",
      (s) => s.counters.externalBytesLoaded,
    );
    new Gauge({
      name: "switchyard_sim_lmcache_store_queue",
      help: "Chunks waiting to be stored on the remote server (sim only).",
      labelNames,
      registers: [r],
      collect() {
        this.set(labels, stats().storeQueue);
      },
    });
  }

  observeStep(tokens: number): void {
    this.iterationTokens.observe(tokens);
    this.families.observeStep(tokens);
  }

  /** a request refused at admission (the sim's cap on requests in flight): vllm:admission_rejections */
  admissionRejected(reason: AdmissionReason): void {
    this.families.admissionRejected(reason);
  }

  observeTtft(seconds: number): void {
    this.ttft.observe(seconds);
  }

  observeItl(seconds: number): void {
    this.itl.observe(seconds);
  }

  observeFinished(reason: FinishReason, t: RequestTimings, maxTokensParam: number): void {
    this.finishedCounters[reason].inc();
    const p = this.perRequest;
    const scheduled = t.firstScheduledTime > 0 ? t.firstScheduledTime : t.finishedTime;
    p.e2e!.observe(Math.max(0, t.finishedTime - t.arrivalTime));
    // vLLM's queue time runs from the engine core taking the request in (between steps), not its arrival
    p.queue!.observe(Math.max(0, scheduled - t.queuedTime));
    p.inference!.observe(Math.max(0, t.finishedTime - scheduled));
    if (t.firstTokenTime > 0) {
      p.prefill!.observe(Math.max(0, t.firstTokenTime - scheduled));
      p.decode!.observe(Math.max(0, t.finishedTime - t.firstTokenTime));
      if (t.outputTokens > 1) p.tpot!.observe((t.finishedTime - t.firstTokenTime) / (t.outputTokens - 1));
    }
    p.promptTokens!.observe(t.promptTokens);
    p.generationTokens!.observe(t.outputTokens);
    p.maxTokens!.observe(maxTokensParam);
    this.families.observeFinished(t);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
