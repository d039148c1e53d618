// What `/metrics` looks like on the vLLM release the sim claims (`--vllm-version`), where releases
// differ in ways a scraper or a dashboard sees: the Content-Type, the labels of
// vllm:cache_config_info, and the few families that moved. Values read off a vLLM 0.32 engine's page
// and its sources (config/cache.py, v1/metrics/loggers.py); a claim of an earlier release keeps
// what the sim showed before it was checked against 0.32.
import { versionAtLeast } from "../../kvevents/versions.js";
import { VLLM_BLOCK_SIZE } from "../../config/vllm-defaults.js";

/**
 * vLLM answers /metrics with prometheus_client's CONTENT_TYPE_LATEST, which prometheus_client 0.22.0
 * (2025-05-16) moved from text format 0.0.4 to 1.0.0 (the same text; the version names the format
 * that may carry UTF-8 names). vLLM does not pin the client, so every release published after it
 * (0.9.1 on) installs with the new value; earlier ones answered 0.0.4.
 */
export const TEXT_1_0_0_SINCE = "0.9.1";
const TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_1_0_0 = "text/plain; version=1.0.0; charset=utf-8";

/** the release whose metric families and labels the sim was checked against */
export const CHECKED_RELEASE = "0.32.0";

export interface MetricsRelease {
  contentType: string;
  /** vllm:admission_rejections carries the engine label (0.32 counts at the frontend: model and reason only) */
  admissionEngineLabel: boolean;
  /** vllm:prompt_tokens_cached_by_source{source} (0.32) rather than vllm:prompt_tokens_recomputed */
  cachedBySource: boolean;
  /** vllm:cache_config_info's label set: 0.32's CacheConfig fields, or the earlier ones */
  cacheConfig: "0.32" | "earlier";
}

export function metricsRelease(vllmVersion: string): MetricsRelease {
  const checked = versionAtLeast(vllmVersion, CHECKED_RELEASE);
  return {
    contentType: versionAtLeast(vllmVersion, TEXT_1_0_0_SINCE) ? TEXT_1_0_0 : TEXT_0_0_4,
    admissionEngineLabel: !checked,
    cachedBySource: checked,
    cacheConfig: checked ? "0.32" : "earlier",
  };
}

/** What the engine's cache configuration is, for vllm:cache_config_info. */
export interface CacheFacts {
  blockSize: number;
  enablePrefixCaching: boolean;
  gpuMemoryUtilization: number;
  numGpuBlocks: number;
  /** 0: no CPU tier */
  numCpuBlocks: number;
  numGpuBlocksOverride: number | null;
  prefixCachingHashAlgo: string;
  maxModelLen: number;
  /** the offloading backend asked for (LMCache or vLLM's native CPU tier), null when none */
  offloadingBackend: "lmcache" | "native" | null;
  /** GiB of it, null when none */
  offloadingGiB: number | null;
}

/** Python's str() of a config value, as vLLM's info gauges print labels. */
export function pyStr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  return String(v);
}

/** Python's str() of a float: always with a fraction (1024.0), as vLLM's info gauge prints one. */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** vllm:cache_config_info's labels (without `engine`): every CacheConfig field, printed as Python prints it. */
export function cacheConfigLabels(release: MetricsRelease, f: CacheFacts): Record<string, string> {
  const shared = {
    block_size: pyStr(f.blockSize),
    cache_dtype: "auto",
    enable_prefix_caching: pyStr(f.enablePrefixCaching),
    gpu_memory_utilization: pyStr(f.gpuMemoryUtilization),
    is_attention_free: pyStr(false),
    kv_offloading_size: pyStr(f.offloadingGiB),
    num_cpu_blocks: pyStr(f.numCpuBlocks > 0 ? f.numCpuBlocks : null),
    num_gpu_blocks: pyStr(f.numGpuBlocks),
    num_gpu_blocks_override: pyStr(f.numGpuBlocksOverride),
    prefix_caching_hash_algo: f.prefixCachingHashAlgo,
    sliding_window: pyStr(null),
  };
  if (release.cacheConfig === "earlier")
    return {
      ...shared,
      calculate_kv_scales: pyStr(false),
      cpu_offload_gb: pyStr(0),
      kv_offloading_backend: pyStr(f.offloadingBackend),
      swap_space: pyStr(4),
    };
  // a full-attention model's request at max_model_len takes ceil(max_model_len / block) blocks
  const concurrency = f.numGpuBlocks / Math.ceil(f.maxModelLen / f.blockSize);
  return {
    ...shared,
    // set by vLLM once the block size is resolved, and by the engine core after KV-cache setup
    _block_size_resolved: pyStr(true),
    effective_attention_block_size: pyStr(f.blockSize),
    kv_cache_size_tokens: pyStr(Math.floor(concurrency * f.maxModelLen)),
    kv_cache_max_concurrency: pyFloat(concurrency),
    // set in the workers, not in the API server's copy that the gauge prints
    hash_block_size: pyStr(null),
    cache_hit_alignment_tokens: pyStr(null),
    kv_cache_layout: pyStr(null),
    // 0.32 defaults the backend to native, used only when an offloading size is set
    kv_offloading_backend: f.offloadingBackend ?? "native",
    kv_cache_memory_bytes: pyStr(null),
    kv_cache_dtype_skip_layers: "[]",
    kv_sharing_fast_prefill: pyStr(false),
    prefix_cache_retention_interval: "0",
    prefix_match_unit: pyStr(null),
    // the sim cannot tell a --block-size 16 from none: 16 is read as vLLM's default, any other as asked
    user_specified_block_size: pyStr(f.blockSize !== VLLM_BLOCK_SIZE),
    // Mamba and hybrid-model fields, at their defaults for an attention model
    mamba_block_size: pyStr(null),
    mamba_cache_dtype: "auto",
    mamba_cache_mode: "none",
    mamba_page_size_padded: pyStr(null),
    mamba_ssm_cache_dtype: "auto",
    enable_mamba_shared_prefix_checkpoint: pyStr(false),
    replayssm_buffer_len: "16",
    use_replayssm: pyStr(false),
    use_kda_recoverssm: pyStr(false),
    skip_page_size_padded: pyStr(null),
    swa_bounded_replay: pyStr(true),
  };
}
