// Engine configuration with vLLM V1's defaults for `vllm serve` (the API-server usage context), and
// validation whose errors name the offending field the way the CLI flag is spelled.
import { PINNED_HASH_SEED } from "../protocol/vllm-releases.js";
import type { EngineConfig } from "./types.js";
import type { GpuProfile, ModelProfile } from "../models/types.js";
import {
  LMCACHE_CHUNK_TOKENS,
  VLLM_BLOCK_SIZE,
  VLLM_GPU_MEMORY_UTILIZATION,
} from "../config/vllm-defaults.js";
import { InvalidConfigError } from "../errors/index.js";

const GiB = 2 ** 30;

/**
 * vLLM's EngineArgs.get_batch_defaults for UsageContext.OPENAI_API_SERVER: GPUs with at least 70 GiB and
 * not an A100 get max_num_batched_tokens 8192 / max_num_seqs 1024; every other GPU 2048 / 256
 * (vllm/engine/arg_utils.py; the A100 exception is vLLM PR #17885).
 */
export function vllmBatchDefaults(gpu: GpuProfile): { maxNumSeqs: number; maxNumBatchedTokens: number } {
  const big = gpu.hbmBytes >= 70 * GiB && !/a100/i.test(`${gpu.id} ${gpu.name}`);
  return big
    ? { maxNumSeqs: 1024, maxNumBatchedTokens: 8192 }
    : { maxNumSeqs: 256, maxNumBatchedTokens: 2048 };
}

export function defaultEngineConfig(
  model: ModelProfile,
  gpu: GpuProfile,
  overrides: Partial<EngineConfig> = {},
): EngineConfig {
  const batch = vllmBatchDefaults(gpu);
  const config: EngineConfig = {
    model,
    gpu,
    tensorParallelSize: 1,
    gpuMemoryUtilization: VLLM_GPU_MEMORY_UTILIZATION,
    maxModelLen: model.maxContext,
    maxNumSeqs: batch.maxNumSeqs,
    maxNumBatchedTokens: batch.maxNumBatchedTokens,
    blockSize: VLLM_BLOCK_SIZE,
    enablePrefixCaching: true,
    // what an engine of the sim's default release (0.28, before vLLM's fixed default seed) is pinned
    // to; the sim sets the seed and the extra-key form of the release it claims (vllm-releases.ts)
    hashSeed: PINNED_HASH_SEED,
    extraKeyStyle: "untagged",
    schedulingPolicy: "fcfs",
    offload: null,
    ...overrides,
  };
  validateEngineConfig(config);
  return config;
}

function fail(field: string, message: string): never {
  throw new InvalidConfigError(`invalid engine config: ${field} ${message}`);
}

function requireInt(field: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) fail(field, `must be an integer >= ${min}, got ${value}`);
}

export function validateEngineConfig(c: EngineConfig): void {
  requireInt("tensor_parallel_size", c.tensorParallelSize, 1);
  if (c.model.numHeads % c.tensorParallelSize !== 0) {
    fail(
      "tensor_parallel_size",
      `(${c.tensorParallelSize}) must divide the number of attention heads (${c.model.numHeads}) of ${c.model.id}`,
    );
  }
  if (!(c.gpuMemoryUtilization > 0 && c.gpuMemoryUtilization <= 1)) {
    fail("gpu_memory_utilization", `must be in (0, 1], got ${c.gpuMemoryUtilization}`);
  }
  requireInt("max_model_len", c.maxModelLen, 1);
  if (c.maxModelLen > c.model.maxContext) {
    fail(
      "max_model_len",
      `(${c.maxModelLen}) is greater than the derived max_model_len (max_position_embeddings=${c.model.maxContext}) of ${c.model.id}`,
    );
  }
  requireInt("max_num_seqs", c.maxNumSeqs, 1);
  requireInt("max_num_batched_tokens", c.maxNumBatchedTokens, 1);
  if (c.maxNumBatchedTokens < c.maxNumSeqs) {
    fail(
      "max_num_batched_tokens",
      `(${c.maxNumBatchedTokens}) must be greater than or equal to max_num_seqs (${c.maxNumSeqs})`,
    );
  }
  requireInt("block_size", c.blockSize, 1);
  if (typeof c.hashSeed !== "string" || c.hashSeed.length === 0)
    fail("hash_seed", "must be a non-empty string");
  if (c.schedulingPolicy !== "fcfs" && c.schedulingPolicy !== "priority") {
    fail("scheduling_policy", `must be "fcfs" or "priority", got ${String(c.schedulingPolicy)}`);
  }
  if (c.offload) {
    const backend = c.offload.backend as string;
    if (backend !== "native" && backend !== "lmcache")
      fail("kv_offloading_backend", `must be "native" or "lmcache", got ${backend}`);
    if (!(c.offload.bytes > 0)) fail("kv_offloading_size", `must be > 0, got ${c.offload.bytes}`);
    if (backend === "lmcache") {
      const chunk = c.offload.chunkTokens ?? LMCACHE_CHUNK_TOKENS;
      requireInt("chunk_size", chunk, 1);
      if (chunk % c.blockSize !== 0)
        fail("chunk_size", `(${chunk}) must be a multiple of block_size (${c.blockSize})`);
      if (c.offload.bandwidth !== undefined && !(c.offload.bandwidth > 0))
        fail("lmcache bandwidth", `must be > 0, got ${c.offload.bandwidth}`);
    }
  }
  if (c.blockHashAlgo !== undefined && c.blockHashAlgo !== "sha256_cbor" && c.blockHashAlgo !== "fast")
    fail("prefix_caching_hash_algo", `must be "sha256_cbor" or "fast", got ${String(c.blockHashAlgo)}`);
  if (c.externalChunkTokens !== undefined) requireInt("external_chunk_tokens", c.externalChunkTokens, 1);
  if (c.numGpuBlocksOverride !== undefined) requireInt("num_gpu_blocks_override", c.numGpuBlocksOverride, 1);
  if (c.lora) {
    requireInt("max_loras", c.lora.maxLoras, 1);
    requireInt("max_cpu_loras", c.lora.maxCpuLoras, 1);
    // vLLM's LoRAConfig: "max_cpu_loras must be >= max_loras"
    if (c.lora.maxCpuLoras < c.lora.maxLoras)
      fail("max_cpu_loras", `(${c.lora.maxCpuLoras}) must be >= max_loras (${c.lora.maxLoras})`);
    requireInt("max_lora_rank", c.lora.maxLoraRank, 1);
    if (c.lora.diskBandwidth !== undefined && !(c.lora.diskBandwidth > 0))
      fail("lora disk bandwidth", `must be > 0, got ${c.lora.diskBandwidth}`);
  }
}
