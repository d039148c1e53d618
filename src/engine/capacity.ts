// KV-cache capacity the way vLLM sizes it at start-up: what is left of HBM × gpu_memory_utilization after
// the weights and the memory its profiling run sees in use, divided into blocks. See docs/engine-model.md.
import { kvBytesPerToken } from "../models/kv-shape.js";
import { loraSlotBytes } from "./lora.js";
import type { EngineConfig } from "./types.js";
import { InvalidConfigError } from "../errors/index.js";

const GiB = 2 ** 30;

/** CUDA context, cuBLAS/NCCL workspaces and allocator slack that vLLM counts as non-torch memory. */
export const NON_TORCH_BYTES = 0.5 * GiB;
/** extra NCCL buffers per GPU when tensor parallel */
export const NCCL_BYTES_TP = 0.25 * GiB;
/**
 * Peak live activation bytes per batched token, in units of hidden × dtype bytes, during the profiling
 * forward pass: the MLP holds its input (1), gate+up output (2 × 3.5) and activation output (3.5) plus
 * the residual and attention buffers (~2): about 14 hidden-sized vectors with Llama's 3.5× MLP ratio.
 */
export const ACTIVATION_HIDDEN_MULTIPLE = 14;
/** the profiling run also samples max_num_seqs rows of fp32 logits */
export const LOGIT_BYTES = 4;

export interface KvCapacity {
  numGpuBlocks: number;
  blockBytesPerGpu: number;
  /** KV bytes one token occupies on one GPU (KV heads divided by TP) */
  kvBytesPerToken: number;
  weightBytesPerGpu: number;
  reserveBytes: number;
  numCpuBlocks: number;
}

export function reserveBytesPerGpu(config: EngineConfig): number {
  const m = config.model;
  const tp = config.tensorParallelSize;
  const activations = config.maxNumBatchedTokens * m.hiddenSize * m.dtypeBytes * ACTIVATION_HIDDEN_MULTIPLE;
  const logits = config.maxNumSeqs * m.vocabSize * LOGIT_BYTES;
  // with LoRA on, the adapter slots' buffers are allocated before the KV cache is sized
  const loraSlots = config.lora ? loraSlotBytes(m, config.lora, tp) : 0;
  return NON_TORCH_BYTES + (tp > 1 ? NCCL_BYTES_TP : 0) + Math.ceil(activations / tp) + logits + loraSlots;
}

const fmtGiB = (b: number) => `${(b / GiB).toFixed(2)} GiB`;

export function kvCapacity(config: EngineConfig): KvCapacity {
  const m = config.model;
  const tp = config.tensorParallelSize;
  const kvBytes = kvBytesPerToken(m, tp);
  const blockBytesPerGpu = kvBytes * config.blockSize;
  const weightBytesPerGpu = Math.ceil((m.params * m.dtypeBytes) / tp);
  const reserveBytes = reserveBytesPerGpu(config);
  const budget = config.gpu.hbmBytes * config.gpuMemoryUtilization;
  const free = budget - weightBytesPerGpu - reserveBytes;
  let numGpuBlocks = Math.floor(free / blockBytesPerGpu);
  if (config.numGpuBlocksOverride !== undefined) {
    numGpuBlocks = config.numGpuBlocksOverride;
  } else if (numGpuBlocks <= 0) {
    throw new InvalidConfigError(
      `not enough memory for the weights and activations of ${m.id} on ${config.gpu.id} with tensor_parallel_size=${tp}: ` +
        `${fmtGiB(budget)} (gpu_memory_utilization=${config.gpuMemoryUtilization}) - weights ${fmtGiB(weightBytesPerGpu)} - reserve ${fmtGiB(reserveBytes)} ` +
        `leaves no room for the KV cache; raise gpu_memory_utilization or tensor_parallel_size, or pick a larger GPU`,
    );
  }
  const blocksForOneRequest = Math.ceil(config.maxModelLen / config.blockSize);
  if (config.numGpuBlocksOverride === undefined && numGpuBlocks < blocksForOneRequest) {
    throw new InvalidConfigError(
      `to serve at least one request with max_model_len (${config.maxModelLen}), ${fmtGiB(blocksForOneRequest * blockBytesPerGpu)} of KV cache is needed, ` +
        `which is larger than the available KV cache memory (${fmtGiB(numGpuBlocks * blockBytesPerGpu)}); decrease max_model_len or raise gpu_memory_utilization`,
    );
  }
  // native: the size is the engine's, split over its ranks; lmcache: every rank allocates the size
  const off = config.offload;
  const numCpuBlocks = !off
    ? 0
    : Math.floor(off.bytes / (off.backend === "lmcache" ? blockBytesPerGpu : blockBytesPerGpu * tp));
  return {
    numGpuBlocks,
    blockBytesPerGpu,
    kvBytesPerToken: kvBytes,
    weightBytesPerGpu,
    reserveBytes,
    numCpuBlocks,
  };
}
