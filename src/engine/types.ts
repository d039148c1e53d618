// The engine model's public contract. The engine has no I/O and no clock of its own: a driver
// (real time for `switchyard sim`, virtual time for the fleet simulator) calls beginStep/completeStep
// and passes the current time in seconds. Everything here is a typed value; parsing happens at the edges.
import type { ExtraKeyStyle } from "../protocol/vllm-releases.js";
import type { KvEvent } from "../kvevents/events.js";
import type { GpuProfile, ModelProfile } from "../models/types.js";

export interface OffloadConfig {
  /**
   * native: vLLM's OffloadingConnector (block-granular, write-through; its copies take step time);
   * lmcache: LMCache's local CPU backend (chunk-granular LRU, stores block the step, see docs/engine-model.md)
   */
  backend: "native" | "lmcache";
  /**
   * CPU tier capacity in bytes. native: per engine (vLLM's --kv-offloading-size, GiB);
   * lmcache: per TP rank, as LMCache allocates max_local_cpu_size × 1024³ bytes in every worker
   */
  bytes: number;
  /** lmcache: chunk_size in tokens (LMCache's default 256); must be a multiple of block_size */
  chunkTokens?: number;
  /** lmcache: bytes/s per rank of the GPU↔CPU copies; default LMCACHE_LOCAL_CPU_BPS */
  bandwidth?: number;
}

/** an adapter as it flows through the stack: its name and its folder (vLLM 0.32 hashes both into blocks) */
export interface LoraRef {
  name: string;
  path: string;
}

/** an adapter as the engine loads it: where it is and how many bytes its weights are */
export interface EngineLora extends LoraRef {
  bytes: number;
}

/** vLLM's LoRA settings (--enable-lora and friends) */
export interface LoraConfig {
  /** adapters in GPU slots at once, and distinct adapters in one batch at most (--max-loras) */
  maxLoras: number;
  /** adapters kept in host memory (--max-cpu-loras; vLLM's default is max_loras) */
  maxCpuLoras: number;
  /** the largest rank an adapter may have (--max-lora-rank); sizes the GPU slots */
  maxLoraRank: number;
  /** bytes/s an adapter's files are read at; LORA_DISK_BPS when absent */
  diskBandwidth?: number;
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
  /** the extra-key form of the vLLM release modelled: bare (<= 0.30) or tagged (>= 0.31) */
  extraKeyStyle: ExtraKeyStyle;
  /**
   * block hash function: sha256_cbor (default; byte-exact with vLLM, what KV events carry) or fast (a
   * non-cryptographic hash with the same chaining, for virtual-time fleets where no one reads the ids)
   */
  blockHashAlgo?: "sha256_cbor" | "fast";
  schedulingPolicy: "fcfs" | "priority";
  offload: OffloadConfig | null;
  /** overrides the computed number of GPU blocks (tests, --num-gpu-blocks-override) */
  numGpuBlocksOverride?: number;
  /** vLLM's data-parallel rank, carried into KV event batches */
  dataParallelRank?: number;
  /**
   * chunk size in tokens of `EngineObserver.onChunksComputed` announcements (an external KV store's
   * chunk_size; LMCache's default 256); default 256
   */
  externalChunkTokens?: number;
  /** LoRA serving (--enable-lora): adapter slots, host cache, the per-batch limit; none when absent */
  lora?: LoraConfig | null;
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
  /**
   * the adapter the request runs with (its name equals loraName): an engine with `lora` configured
   * loads it into a slot before the request's first step and counts it against max_loras per batch
   */
  lora?: EngineLora | null;
  /** time the request reached the engine, seconds on the driver's clock */
  arrivalTime: number;
  /** produces the i-th output token id (0-based) deterministically; supplied by the caller */
  sampleToken: (index: number) => number;
  /**
   * Tokens of the prompt's prefix an external KV tier (a shared LMCache server) holds, as the caller
   * looked it up before add(). At admission, whatever of it the GPU prefix cache and the in-engine
   * offload tier do not already cover is loaded at `externalLoadBandwidth` instead of recomputed.
   */
  externalCachedTokens?: number;
  /** bytes/s the external tier delivers to this engine (all TP ranks together); required with externalCachedTokens */
  externalLoadBandwidth?: number;
  /**
   * The caller's promise that the first `tokens` prompt tokens equal those of every other request it
   * gives the same `key` (a shared system prompt, a document). The engine then hashes that prefix once
   * and remembers which GPU blocks last held it (bounded, checked block by block before use) instead of
   * hashing and looking up thousands of blocks per request. Scheduling is identical with or without it.
   */
  sharedPrefix?: { key: string; tokens: number };
}

/** what a router knows of a prompt when it asks an engine's prefix cache (Engine.probeCachedTokens) */
export interface ProbeOptions {
  cacheSalt?: string | null;
  loraName?: string | null;
  loraPath?: string | null;
  sharedPrefix?: { key: string; tokens: number };
}

/** what one probe finds of a prompt on an engine (Engine.probePrefix; a reused scratch value) */
export interface PrefixProbe {
  /** prompt tokens its GPU prefix cache would serve (probeCachedTokens) */
  gpuTokens: number;
  /** tokens its own CPU tier adds beyond them, and the seconds their load adds to a step (probeTierTokens) */
  tierTokens: number;
  tierSeconds: number;
}

export interface RequestTimings {
  arrivalTime: number;
  /**
   * when the scheduler took the request in: vLLM's engine core reads new requests between steps, so one
   * that arrives while a step runs is queued (its QUEUED event, the start of its per-request queue
   * time) when that step ends; at arrival on an idle engine
   */
  queuedTime: number;
  firstScheduledTime: number;
  firstTokenTime: number;
  finishedTime: number;
  promptTokens: number;
  outputTokens: number;
  /** prompt tokens served from the GPU prefix cache or an offload tier at first schedule */
  cachedTokens: number;
  /** of those, tokens loaded from the external tier (externalCachedTokens) at first schedule */
  externalTokens: number;
  preemptions: number;
}

export interface EngineObserver {
  /**
   * tokens produced for a request in the step that ended at `time` (one per step when decoding);
   * `tokenIds` is valid during the call only: the engine reuses the array (a fleet samples millions)
   */
  onTokens(requestId: string, tokenIds: readonly number[], time: number): void;
  onFinished(requestId: string, reason: FinishReason, timings: RequestTimings): void;
  /** KV events of one step, in order; called only when there are events */
  onKvEvents?(events: KvEvent[], time: number): void;
  /**
   * Prompt KV of chunks [fromChunk, toChunk) of `externalChunkTokens` tokens each is computed (or was
   * found in a cache) by the end of the step at `time`: the caller may store it in an external tier.
   * `tokenIds` is the request's prompt: the caller's own `promptTokenIds` (announced chunks are prompt chunks).
   * Each chunk is announced once per request, full chunks only.
   */
  onChunksComputed?(
    requestId: string,
    fromChunk: number,
    toChunk: number,
    tokenIds: readonly number[],
    time: number,
  ): void;
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
  /**
   * seconds of step time taken by offload stores: LMCache's blocking save at the end of the forward
   * pass, the native connector's copies of every newly computed block (docs/engine-model.md)
   */
  offloadStoreSeconds: number;
  /** prompt tokens loaded from the external tier instead of being computed */
  externalHitTokens: number;
  externalBytesLoaded: number;
  externalTransferSeconds: number;
  steps: number;
  busySeconds: number;
  /** adapters read from disk into the host cache (a load API call, or a batch's cold adapter) */
  loraDiskLoads: number;
  /** adapters copied into a GPU slot */
  loraGpuLoads: number;
  /** adapters evicted from a GPU slot, and from the host cache */
  loraGpuEvictions: number;
  loraCpuEvictions: number;
  /** seconds of adapter loads (disk and slot copies) */
  loraLoadSeconds: number;
  /** steps that left a waiting request behind because its adapter would have been one over max_loras */
  loraBatchSkips: number;
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
