// The `vllm:` families a vLLM 0.32 engine exposes beyond the scheduler gauges and the latency
// histograms metrics.ts keeps: prompt tokens by source, per-request KV and preemption histograms, the
// parent-request histograms, admission refusals, waiting requests by reason, the multimodal cache and
// the per-GPU work estimates. Dashboards and autoscalers written against a real engine query these
// names; a family that is missing reads as "no data" there, not as zero. Names, types, label names and
// buckets are vLLM's (v1/metrics/loggers.py and perf.py); values come from the engine model where it
// knows them, and stay at zero where the sim models nothing (multimodal inputs).
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { kvBytesPerToken } from "../../models/kv-shape.js";
import type { EngineConfig, EngineSnapshot, RequestTimings } from "../../engine/types.js";
import type { MetricsRelease } from "./metrics-release.js";

/** vLLM's buckets of vllm:request_num_preemptions */
export const PREEMPTION_BUCKETS = [1, 2, 3, 4, 5, 10, 20];
/** vLLM's buckets of vllm:request_params_n */
export const N_BUCKETS = [1, 2, 5, 10, 20];
/** vllm:admission_rejections' reasons: the queue-length and queued-token caps of vLLM's scheduler */
export const ADMISSION_REASONS = ["max_num_queued_reqs", "max_num_queued_tokens"] as const;
export type AdmissionReason = (typeof ADMISSION_REASONS)[number];
/** vllm:prompt_tokens_by_source's sources, in vLLM's order */
export const PROMPT_SOURCES = ["local_compute", "local_cache_hit", "external_kv_transfer"] as const;
/** vllm:prompt_tokens_cached_by_source's tiers (vLLM 0.32's CacheHitSource), in its order */
export const CACHE_HIT_SOURCES = ["device", "host", "p2p", "disk", "external_unspecified"] as const;

/**
 * A counter mirroring a cumulative count read at scrape time (no work on the token path): each scrape
 * adds what the count grew by since the last one, never a negative step.
 */
export function mirroredCounter(
  r: Registry,
  labels: Record<string, string>,
  name: string,
  help: string,
  read: () => number,
): void {
  let seen = 0;
  new Counter({
    name,
    help,
    labelNames: Object.keys(labels),
    registers: [r],
    collect() {
      const v = read();
      this.inc(labels, Math.max(0, v - seen));
      seen = Math.max(seen, v);
    },
  });
}

export interface FamilySources {
  engineConfig: EngineConfig;
  snapshot: () => EngineSnapshot;
  /** requests the runtime holds, admitted or not (an LMCache lookup or a NixlConnector pull in flight) */
  inFlight: () => number;
  /** false when a KV connector (LMCache, NixlConnector) registers vllm:external_prefix_cache_* itself */
  registerExternalPrefixCache: boolean;
  /** the families and labels of the claimed vLLM release */
  release: MetricsRelease;
}

/**
 * Per-GPU work of one step, the way the roofline model counts it (src/engine/timing.ts): 2 FLOPs per
 * parameter per computed token, attention over the KV the step reads, the weights and that KV read
 * once, the new tokens' KV written. The step's exact attention context is the engine's; here it is
 * taken as the KV resident for running requests plus the step's own tokens, which is exact for decode
 * steps and low for long prefill chunks (their tokens attend to one another).
 */
export class WorkEstimate {
  private readonly flopsPerToken: number;
  private readonly attnFlopsPerCtx: number;
  private readonly weightBytes: number;
  private readonly kvBytesPerToken: number;
  private readonly blockTokens: number;
  flops = 0;
  readBytes = 0;
  writeBytes = 0;

  constructor(config: EngineConfig) {
    const m = config.model;
    const tp = config.tensorParallelSize;
    this.flopsPerToken = (2 * m.params) / tp;
    this.attnFlopsPerCtx = (4 * m.layers * m.numHeads * m.headDim) / tp;
    this.weightBytes = (m.params * m.dtypeBytes) / tp;
    this.kvBytesPerToken = kvBytesPerToken(m, tp);
    this.blockTokens = config.blockSize;
  }

  /** One step of `tokens` computed tokens, with `s` the engine as the step was planned. */
  step(tokens: number, s: EngineSnapshot): void {
    const resident = s.kvCacheUsage * s.numGpuBlocks * this.blockTokens;
    this.flops += this.flopsPerToken * tokens + this.attnFlopsPerCtx * (resident + tokens);
    this.readBytes += this.weightBytes + this.kvBytesPerToken * resident;
    this.writeBytes += this.kvBytesPerToken * tokens;
  }
}

/**
 * vllm:prompt_tokens_cached_by_source (vLLM 0.32), mirrored at scrape time: the GPU prefix cache's
 * hits as "device" (as vLLM counts its scheduler's hits), the native CPU tier's as "host", and a
 * connector's (LMCache, local or remote, and NixlConnector) as "external_unspecified", the tier vLLM
 * gives connectors that do not name theirs. The sim has no p2p or disk tier: those stay at zero.
 */
function registerCachedBySource(r: Registry, labels: Record<string, string>, src: FamilySources): void {
  // LMCache's local CPU hits reach vLLM through its connector, not as the native tier's host hits
  const lmcache = src.engineConfig.offload?.backend === "lmcache";
  const seen: Record<(typeof CACHE_HIT_SOURCES)[number], number> = {
    device: 0,
    host: 0,
    p2p: 0,
    disk: 0,
    external_unspecified: 0,
  };
  new Counter({
    name: "vllm:prompt_tokens_cached_by_source_total",
    help:
      "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host " +
      "(offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or " +
      "external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + " +
      "vllm:external_prefix_cache_hits.",
    labelNames: [...Object.keys(labels), "source"],
    registers: [r],
    collect() {
      const c = src.snapshot().counters;
      const now = {
        device: c.prefixCacheHits,
        host: lmcache ? 0 : c.offloadHitTokens,
        p2p: 0,
        disk: 0,
        external_unspecified: c.externalHitTokens + (lmcache ? c.offloadHitTokens : 0),
      };
      for (const source of CACHE_HIT_SOURCES) {
        this.inc({ ...labels, source }, Math.max(0, now[source] - seen[source]));
        seen[source] = Math.max(seen[source], now[source]);
      }
    },
  });
}

export class EngineFamilies {
  private readonly promptBySource: Record<(typeof PROMPT_SOURCES)[number], Counter.Internal>;
  private readonly promptCached: Counter.Internal;
  private readonly kvComputed: Histogram.Internal<string>;
  private readonly preemptions: Histogram.Internal<string>;
  private readonly nParam: Histogram.Internal<string>;
  private readonly maxGenTokens: Histogram.Internal<string>;
  private readonly rejections: Record<AdmissionReason, Counter.Internal>;
  private readonly work: WorkEstimate;

  constructor(
    r: Registry,
    labels: Record<string, string>,
    tokenBuckets: number[],
    private readonly src: FamilySources,
  ) {
    const labelNames = Object.keys(labels);
    // prom-client writes a child only once it is touched: inc(0) shows a family's series at zero, as
    // prometheus_client shows the children vLLM creates up front
    const counter = (name: string, help: string, extra: string[] = []) =>
      new Counter({ name, help, labelNames: [...labelNames, ...extra], registers: [r] });
    const zero = (c: Counter.Internal): Counter.Internal => {
      c.inc(0);
      return c;
    };
    const hist = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, buckets, labelNames, registers: [r] }).labels(labels);

    new Gauge({
      name: "vllm:num_requests_waiting_by_reason",
      help: "Number of requests waiting to be processed, by the reason they wait.",
      labelNames: [...labelNames, "reason"],
      registers: [r],
      collect() {
        const s = src.snapshot();
        // waiting on capacity: in the scheduler's queue; deferred: held back before the queue, as
        // vLLM skips requests whose KV is still being fetched (here: LMCache lookups, NIXL pulls)
        const deferred = Math.max(0, src.inFlight() - s.numRunning - s.numWaiting);
        this.set({ ...labels, reason: "capacity" }, s.numWaiting);
        this.set({ ...labels, reason: "deferred" }, deferred);
      },
    });

    const bySource = counter("vllm:prompt_tokens_by_source_total", "Number of prompt tokens by source.", [
      "source",
    ]);
    this.promptBySource = {
      local_compute: zero(bySource.labels({ ...labels, source: "local_compute" })),
      local_cache_hit: zero(bySource.labels({ ...labels, source: "local_cache_hit" })),
      external_kv_transfer: zero(bySource.labels({ ...labels, source: "external_kv_transfer" })),
    };
    this.promptCached = zero(
      counter("vllm:prompt_tokens_cached_total", "Number of cached prompt tokens (local + external).").labels(
        labels,
      ),
    );
    if (src.release.cachedBySource) registerCachedBySource(r, labels, src);
    // before 0.32: the engine model recomputes a fully cached prompt's whole last block (it never
    // hits it), so vLLM's one recomputed token never arises: the family is there and stays at zero
    else
      zero(
        counter(
          "vllm:prompt_tokens_recomputed_total",
          "Number of cached tokens recomputed for forward pass.",
        ).labels(labels),
      );
    for (const [name, what] of [
      ["vllm:mm_cache_queries_total", "Multi-modal cache queries, in terms of number of queried items."],
      ["vllm:mm_cache_hits_total", "Multi-modal cache hits, in terms of number of cached items."],
    ] as const)
      zero(counter(name, what).labels(labels));
    if (src.registerExternalPrefixCache) {
      zero(
        counter(
          "vllm:external_prefix_cache_queries_total",
          "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
        ).labels(labels),
      );
      zero(
        counter(
          "vllm:external_prefix_cache_hits_total",
          "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
        ).labels(labels),
      );
    }

    // vLLM 0.32 counts refusals in its API server, for the model only: no engine label
    const admissionLabels: Record<string, string> = src.release.admissionEngineLabel
      ? labels
      : { model_name: labels.model_name! };
    const rejections = new Counter({
      name: "vllm:admission_rejections_total",
      help: "Number of admission attempts rejected by a queue limit, by reason.",
      labelNames: [...Object.keys(admissionLabels), "reason"],
      registers: [r],
    });
    this.rejections = {
      max_num_queued_reqs: zero(rejections.labels({ ...admissionLabels, reason: "max_num_queued_reqs" })),
      max_num_queued_tokens: zero(rejections.labels({ ...admissionLabels, reason: "max_num_queued_tokens" })),
    };

    this.kvComputed = hist(
      "vllm:request_prefill_kv_computed_tokens",
      "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
      tokenBuckets,
    );
    this.preemptions = hist(
      "vllm:request_num_preemptions",
      "Histogram of the number of preemptions per request.",
      PREEMPTION_BUCKETS,
    );
    this.nParam = hist("vllm:request_params_n", "Histogram of the n request parameter.", N_BUCKETS);
    this.maxGenTokens = hist(
      "vllm:request_max_num_generation_tokens",
      "Histogram of maximum number of requested generation tokens.",
      tokenBuckets,
    );

    this.work = new WorkEstimate(src.engineConfig);
    const work = this.work;
    const perGpu = (name: string, help: string, read: () => number) =>
      mirroredCounter(r, labels, name, help, read);
    perGpu(
      "vllm:estimated_flops_per_gpu_total",
      "Estimated number of floating point operations per GPU (for Model Flops Utilization calculations).",
      () => work.flops,
    );
    perGpu(
      "vllm:estimated_read_bytes_per_gpu_total",
      "Estimated number of bytes read from memory per GPU (for Model Flops Utilization calculations).",
      () => work.readBytes,
    );
    perGpu(
      "vllm:estimated_write_bytes_per_gpu_total",
      "Estimated number of bytes written to memory per GPU (for Model Flops Utilization calculations).",
      () => work.writeBytes,
    );
  }

  observeStep(tokens: number): void {
    this.work.step(tokens, this.src.snapshot());
  }

  /**
   * One finished engine request. The sim gives each choice of an `n` request its own engine request
   * and observes each as a request of n = 1 (vLLM observes the parent once, with n).
   */
  observeFinished(t: RequestTimings): void {
    this.preemptions.observe(t.preemptions);
    this.nParam.observe(1);
    this.maxGenTokens.observe(t.outputTokens);
    // prompt tokens are counted once the prefill ran, as vLLM counts them from the prefill's output
    if (t.firstTokenTime <= 0) return;
    const cached = Math.min(t.cachedTokens, t.promptTokens);
    const external = Math.min(t.externalTokens, cached);
    const computed = t.promptTokens - cached;
    this.kvComputed.observe(computed);
    this.promptBySource.local_compute.inc(computed);
    this.promptBySource.local_cache_hit.inc(cached - external);
    this.promptBySource.external_kv_transfer.inc(external);
    this.promptCached.inc(cached);
  }

  admissionRejected(reason: AdmissionReason): void {
    this.rejections[reason].inc();
  }
}
