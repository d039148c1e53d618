// One request inside the engine: what the scheduler tracks (status, progress, timings) and what the
// KV-cache manager tracks for it (its block table, its hash chain, what it found cached), on one object
// so that the hot path never looks a request up by id. vLLM keeps the same split on its `Request` and
// the manager's per-request block lists; here both live on the request and each module owns its fields.
import type { EngineRequest, FinishReason } from "./types.js";

/** one shared prefix: its block hash chain, and the GPU blocks that last held it (validated before use) */
export interface PrefixMemo {
  readonly ids: bigint[];
  readonly digests: Buffer[];
  readonly blocks: number[];
  /** the pool's cacheEpoch when `blocks` was last checked */
  epoch: number;
}

export const enum Status {
  Waiting,
  Running,
  Done,
}

/** Per-request state. Token ids grow as outputs are sampled; hashes grow as blocks fill. */
export class Req {
  /**
   * prompt then output ids, sized for max_tokens up front: a typed array keeps long prompts (tens of
   * thousands of ids per request in a fleet) off the JS heap and never regrows
   */
  readonly tokens: Float64Array;
  numTokens: number;
  readonly promptLen: number;
  numComputed = 0;
  status = Status.Waiting;
  outputs = 0;
  /** tokens scheduled in the step in flight (0 when not scheduled) */
  stepTokens = 0;
  /** tokens computed before the last preemption that have not been recomputed yet */
  recomputeLeft = 0;
  preemptions = 0;
  cachedTokens = -1;
  externalTokens = 0;
  /** prompt chunks (of externalChunkTokens) already announced to onChunksComputed */
  announcedChunks = 0;
  /** when the scheduler took it in: the start of the first step after its arrival (vLLM's queued_ts) */
  queuedTime = -1;
  firstScheduledTime = -1;
  firstTokenTime = -1;
  finishReason: FinishReason | null = null;

  // ---- owned by the KV-cache manager ----
  /** the request's GPU block table, in chain order */
  readonly blocks: number[] = [];
  /** full-block hash ids and digests computed so far, in chain order */
  readonly hashIds: bigint[] = [];
  readonly hashDigests: Buffer[] = [];
  /** how many of this request's leading blocks have been offered to the prefix cache */
  numCachedBlocks = 0;
  /** prompt chunks offered to the LMCache tier */
  lmcacheChunks = 0;
  /**
   * GPU blocks that held this request's leading hashes at its last admission check: a blocked queue
   * head is checked every step, and confirming a block still holds its hash is far cheaper than a
   * hash-map lookup per block
   */
  readonly hitBlocks: number[] = [];
  /** the shared prefix this request declared, when the engine memoises it */
  memo: PrefixMemo | null = null;
  /** the pool's cacheEpoch when hitBlocks was last checked (-1: never) */
  hitEpoch = -1;
  /** CPU-tier blocks found from block cpuHitStart on, at the tier's epoch cpuHitEpoch */
  cpuHitStart = -1;
  cpuHitCount = 0;
  cpuHitEpoch = -1;
  /** LMCache chunks found from the prompt start, at the tier's epoch lmHitEpoch */
  lmHitChunks = 0;
  lmHitEpoch = -1;

  constructor(
    readonly r: EngineRequest,
    readonly seq: number,
  ) {
    this.promptLen = r.promptTokenIds.length;
    this.tokens = new Float64Array(this.promptLen + r.maxTokens);
    this.tokens.set(r.promptTokenIds);
    this.numTokens = this.promptLen;
  }
}
