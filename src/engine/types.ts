// The engine model's public contract. The engine has no I/O and no clock of its own: a driver
// (real time for `switchyard sim`, virtual time for the fleet simulator) calls beginStep/completeStep
// and passes the current time in seconds. Everything here is a typed value; parsing happens at the edges.
import type { KvEvent } from "../kvevents/events.js";

export interface GpuProfile {
  /** short lowercase id used by --gpu: h100, h200, a100, l40s, l4 */
  id: string;
  name: string;
  hbmBytes: number;
  /** dense bf16 FLOP/s (no sparsity) */
  bf16Flops: number;
  /** HBM bandwidth, bytes/s */
  hbmBandwidth: number;
  /** host<->GPU link bandwidth one way, bytes/s (PCIe or C2C) */
  hostLinkBandwidth: number;
  /** GPU<->GPU bandwidth one way for tensor parallel all-reduce, bytes/s (NVLink); PCIe figure when absent */
  interconnectBandwidth?: number;
  source: string;
}

export interface ModelProfile {
  /** Hugging Face id as given to `vllm serve` */
  id: string;
  aliases: string[];
  params: number;
  layers: number;
  hiddenSize: number;
  numHeads: number;
  kvHeads: number;
  headDim: number;
  /** bytes per weight and KV element (2 for bf16/fp16) */
  dtypeBytes: number;
  dtype: string;
  maxContext: number;
  /** the real vocabulary size of the model (token ids accepted below this) */
  vocabSize: number;
  /** which tokenizer family src/tokenizer uses for it */
  tokenizer: string;
  source: string;
}

export interface OffloadConfig {
  backend: "native";
  /** CPU tier capacity in bytes (per engine; vLLM's --kv-offloading-size is GiB) */
  bytes: number;
}

export interface EngineConfig {
  model: ModelProfile;
  gpu: GpuProfile;
  tensorParallelSize: number;
  gpuMemoryUtilization: number;
  maxModelLen: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  blockSize: number;
  enablePrefixCaching: boolean;
  /** PYTHONHASHSEED as text; NONE_HASH = sha256_cbor(hashSeed) */
  hashSeed: string;
  schedulingPolicy: "fcfs" | "priority";
  offload: OffloadConfig | null;
  /** overrides the computed number of GPU blocks (tests, --num-gpu-blocks-override) */
  numGpuBlocksOverride?: number;
  /** vLLM's data-parallel rank, carried into KV event batches */
  dataParallelRank?: number;
}

export type FinishReason = "stop" | "length" | "abort";

export interface EngineRequest {
  requestId: string;
  promptTokenIds: readonly number[];
  /** output tokens at most */
  maxTokens: number;
  /** output length at which the modelled "EOS" is sampled (finish_reason stop), unless ignoreEos */
  stopAfter: number;
  ignoreEos: boolean;
  minTokens: number;
  /** smaller value = served earlier, as in vLLM (used when schedulingPolicy is "priority") */
  priority: number;
  cacheSalt: string | null;
  loraName: string | null;
  /** time the request reached the engine, seconds on the driver's clock */
  arrivalTime: number;
  /** produces the i-th output token id (0-based) deterministically; supplied by the caller */
  sampleToken: (index: number) => number;
}

export interface RequestTimings {
  arrivalTime: number;
  firstScheduledTime: number;
  firstTokenTime: number;
  finishedTime: number;
  promptTokens: number;
  outputTokens: number;
  /** prompt tokens served from the GPU prefix cache or an offload tier at first schedule */
  cachedTokens: number;
  preemptions: number;
}

export interface EngineObserver {
  /** tokens produced for a request in the step that ended at `time` (one per step when decoding) */
  onTokens(requestId: string, tokenIds: readonly number[], time: number): void;
  onFinished(requestId: string, reason: FinishReason, timings: RequestTimings): void;
  /** KV events of one step, in order; called only when there are events */
  onKvEvents?(events: KvEvent[], time: number): void;
}

export interface StepPlan {
  /** modelled duration of the step, seconds (before any time scale) */
  duration: number;
  prefillTokens: number;
  decodeSeqs: number;
}

export interface EngineCounters {
  numPreemptions: number;
  prefixCacheQueries: number;
  prefixCacheHits: number;
  promptTokens: number;
  generationTokens: number;
  /** prompt tokens computed again after a preemption or an eviction */
  recomputedTokens: number;
  offloadStoredBlocks: number;
  offloadLoadedBlocks: number;
  offloadHitTokens: number;
  offloadBytesToCpu: number;
  offloadBytesToGpu: number;
  offloadTransferSeconds: number;
  steps: number;
  busySeconds: number;
}

export interface EngineSnapshot {
  numRunning: number;
  numWaiting: number;
  /** used GPU blocks / total, 0..1 (vllm:kv_cache_usage_perc) */
  kvCacheUsage: number;
  numGpuBlocks: number;
  numCpuBlocks: number;
  counters: Readonly<EngineCounters>;
}
