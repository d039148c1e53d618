// The engine model: vLLM V1's scheduler over a paged KV cache with prefix caching, an optional CPU
// offload tier and a roofline step time. No I/O and no clock: a driver calls beginStep(now) to schedule
// a batch and learn how long it takes, then completeStep(now) when that time has passed.
import type { KvEvent } from "../kvevents/events.js";
import { BlockPool } from "./block-pool.js";
import { kvCapacity, type KvCapacity } from "./capacity.js";
import { validateEngineConfig } from "./config.js";
import { BlockHasher, extraKeysFor, noneHash } from "./hashing.js";
import { ChunkTier, LMCACHE_LOCAL_CPU_BPS } from "./lmcache.js";
import { CpuTier } from "./offload.js";
import { StepTimer, type StepWork } from "./timing.js";
import type {
  EngineConfig,
  EngineCounters,
  EngineObserver,
  EngineRequest,
  EngineSnapshot,
  FinishReason,
  RequestTimings,
  StepPlan,
} from "./types.js";

/** shared prefixes whose block hashes an engine remembers (EngineRequest.sharedPrefix) */
const MAX_PREFIX_MEMOS = 256;

/** one shared prefix: its block hash chain, and the GPU blocks that last held it (validated before use) */
interface PrefixMemo {
  readonly ids: bigint[];
  readonly digests: Buffer[];
  readonly blocks: number[];
  /** the pool's cacheEpoch when `blocks` was last checked */
  epoch: number;
}

const enum Status {
  Waiting,
  Running,
  Done,
}

/** Per-request state. Token ids grow as outputs are sampled; hashes grow as blocks fill. */
class Req {
  /**
   * prompt then output ids, sized for max_tokens up front: a typed array keeps long prompts (tens of
   * thousands of ids per request in a fleet) off the JS heap and never regrows
   */
  readonly tokens: Float64Array;
  numTokens: number;
  readonly promptLen: number;
  numComputed = 0;
  readonly blocks: number[] = [];
  /** full-block hash ids and digests computed so far, in chain order */
  readonly hashIds: bigint[] = [];
  readonly hashDigests: Buffer[] = [];
  /** how many of this request's leading blocks have been offered to the prefix cache */
  numCachedBlocks = 0;
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
  firstScheduledTime = -1;
  firstTokenTime = -1;
  finishReason: FinishReason | null = null;

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

function newCounters(): EngineCounters {
  return {
    numPreemptions: 0,
    prefixCacheQueries: 0,
    prefixCacheHits: 0,
    promptTokens: 0,
    generationTokens: 0,
    recomputedTokens: 0,
    offloadStoredBlocks: 0,
    offloadLoadedBlocks: 0,
    offloadHitTokens: 0,
    offloadBytesToCpu: 0,
    offloadBytesToGpu: 0,
    offloadTransferSeconds: 0,
    offloadStoreSeconds: 0,
    externalHitTokens: 0,
    externalBytesLoaded: 0,
    externalTransferSeconds: 0,
    steps: 0,
    busySeconds: 0,
  };
}

export class Engine {
  readonly config: EngineConfig;
  readonly capacity: KvCapacity;
  private readonly observer: EngineObserver;
  private readonly pool: BlockPool;
  private readonly cpu: CpuTier | null;
  private readonly lmcache: ChunkTier | null;
  /** blocks per LMCache chunk, and the per-rank copy rate of the LMCache tier */
  private readonly chunkBlocks: number;
  private readonly lmcacheBps: number;
  private readonly announceTokens: number;
  /** seconds of external loads and blocking stores charged to the step being planned */
  private stepExtraSeconds = 0;
  private stepStoreSeconds = 0;
  private stepExternalSeconds = 0;
  private readonly timer: StepTimer;
  private readonly events: KvEvent[] = [];
  private readonly requests = new Map<string, Req>();
  private readonly prefixMemos = new Map<string, PrefixMemo>();
  private readonly running: Req[] = [];
  private waiting: Req[] = [];
  private readonly scheduled: Req[] = [];
  private readonly finishedScratch: Req[] = [];
  private readonly counters = newCounters();
  private readonly noneHash: Buffer;
  private readonly hashing: boolean;
  private readonly hasher: BlockHasher;
  private readonly wantEvents: boolean;
  private readonly work: StepWork = {
    prefillTokens: 0,
    decodeSeqs: 0,
    attentionContext: 0,
    kvReadTokens: 0,
    loadBytesPerGpu: 0,
    extraTransferSeconds: 0,
  };
  /** the array onTokens receives, reused (valid during the call only) */
  private readonly oneToken: number[] = [0];
  private nextSeq = 0;
  private inFlight = false;
  private stepDuration = 0;
  private stepLoadSeconds = 0;
  /** the latest time a driver passed in (aborts carry no time of their own) */
  private lastNow = 0;

  constructor(config: EngineConfig, observer: EngineObserver) {
    validateEngineConfig(config);
    this.config = config;
    this.observer = observer;
    this.capacity = kvCapacity(config);
    this.pool = new BlockPool(this.capacity.numGpuBlocks, this.events);
    // KV events are built only for an observer that takes them (a fleet in virtual time does not)
    this.wantEvents = observer.onKvEvents !== undefined;
    this.pool.enableEvents = config.enablePrefixCaching && this.wantEvents;
    const off = config.offload;
    this.cpu = off?.backend === "native" ? new CpuTier(this.capacity.numCpuBlocks, this.events) : null;
    if (this.cpu) this.cpu.enableEvents = this.wantEvents;
    this.chunkBlocks = off?.backend === "lmcache" ? (off.chunkTokens ?? 256) / config.blockSize : 1;
    this.lmcache =
      off?.backend === "lmcache"
        ? new ChunkTier(Math.floor(this.capacity.numCpuBlocks / this.chunkBlocks))
        : null;
    this.lmcacheBps = off?.bandwidth ?? LMCACHE_LOCAL_CPU_BPS;
    this.announceTokens = config.externalChunkTokens ?? 256;
    this.timer = new StepTimer(config);
    this.noneHash = noneHash(config.hashSeed);
    this.hasher = new BlockHasher(config.blockSize, config.blockHashAlgo === "fast");
    this.hashing = config.enablePrefixCaching || this.cpu !== null || this.lmcache !== null;
  }

  /** vLLM's 400 message when prompt + max_tokens does not fit max_model_len, else null */
  validateRequest(promptLen: number, maxTokens: number): string | null {
    const max = this.config.maxModelLen;
    if (promptLen >= max) {
      return `This model's maximum context length is ${max} tokens. However, your request has ${promptLen} input tokens. Please reduce the length of the input messages.`;
    }
    if (promptLen + maxTokens > max) {
      return `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum context length is ${max} tokens and your request has ${promptLen} input tokens (${maxTokens} > ${max} - ${promptLen}).`;
    }
    return null;
  }

  add(req: EngineRequest): void {
    if (this.requests.has(req.requestId)) throw new Error(`duplicate request id ${req.requestId}`);
    if (req.promptTokenIds.length === 0) throw new Error(`request ${req.requestId}: empty prompt`);
    const err = this.validateRequest(req.promptTokenIds.length, req.maxTokens);
    if (err) throw new Error(err);
    if (!(req.maxTokens >= 1)) throw new Error(`request ${req.requestId}: max_tokens must be >= 1`);
    if ((req.externalCachedTokens ?? 0) > 0 && !((req.externalLoadBandwidth ?? 0) > 0))
      throw new Error(`request ${req.requestId}: externalCachedTokens needs externalLoadBandwidth > 0`);
    const r = new Req(req, this.nextSeq++);
    if (req.sharedPrefix && this.hashing) this.attachPrefixMemo(r, req.sharedPrefix);
    this.requests.set(req.requestId, r);
    this.counters.promptTokens += r.promptLen;
    this.enqueueWaiting(r, false);
  }

  private before(a: Req, b: Req): boolean {
    if (this.config.schedulingPolicy === "priority" && a.r.priority !== b.r.priority)
      return a.r.priority < b.r.priority;
    return a.r.arrivalTime !== b.r.arrivalTime ? a.r.arrivalTime < b.r.arrivalTime : a.seq < b.seq;
  }

  private enqueueWaiting(r: Req, front: boolean): void {
    r.status = Status.Waiting;
    if (this.config.schedulingPolicy === "priority") {
      // sorted by (priority, arrival): binary search for the insertion point
      let lo = 0;
      let hi = this.waiting.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.before(this.waiting[mid]!, r)) lo = mid + 1;
        else hi = mid;
      }
      this.waiting.splice(lo, 0, r);
    } else if (front) {
      this.waiting.unshift(r);
    } else {
      this.waiting.push(r);
    }
  }

  abort(requestId: string): boolean {
    const r = this.requests.get(requestId);
    if (!r || r.status === Status.Done) return false;
    if (r.status === Status.Waiting) {
      const i = this.waiting.indexOf(r);
      if (i >= 0) this.waiting.splice(i, 1);
    } else {
      const i = this.running.indexOf(r);
      if (i >= 0) this.running.splice(i, 1);
    }
    this.finish(r, "abort", this.lastNow);
    return true;
  }

  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  // ---- hashing and caching ----------------------------------------------------------------------

  /** seeds the request's hash chain from its declared shared prefix (computing and keeping it once) */
  private attachPrefixMemo(r: Req, p: { key: string; tokens: number }): void {
    const n = Math.floor(Math.min(p.tokens, r.promptLen) / this.config.blockSize);
    if (!(n > 0)) return;
    // the chain depends on the salt (block 0) and the adapter (every block) as well as on the tokens
    const key = `${r.r.cacheSalt ?? ""}\u0000${r.r.loraName ?? ""}\u0000${p.key}`;
    let m = this.prefixMemos.get(key);
    if (m && m.ids.length < n) {
      // a longer claim under the same key: extend the chain from this request's tokens
      for (let b = 0; b < m.ids.length; b++) {
        r.hashIds.push(m.ids[b]!);
        r.hashDigests.push(m.digests[b]!);
      }
      this.ensureHashes(r, n);
      for (let b = m.ids.length; b < n; b++) {
        m.ids.push(r.hashIds[b]!);
        m.digests.push(r.hashDigests[b]!);
      }
      r.memo = m;
      return;
    }
    if (!m) {
      this.ensureHashes(r, n);
      m = { ids: r.hashIds.slice(), digests: r.hashDigests.slice(), blocks: [], epoch: -1 };
      if (this.prefixMemos.size >= MAX_PREFIX_MEMOS)
        this.prefixMemos.delete(this.prefixMemos.keys().next().value!);
      this.prefixMemos.set(key, m);
    } else {
      for (let b = 0; b < n; b++) {
        r.hashIds.push(m.ids[b]!);
        r.hashDigests.push(m.digests[b]!);
      }
    }
    r.memo = m;
  }

  private ensureHashes(r: Req, numBlocks: number): void {
    const bs = this.config.blockSize;
    for (let b = r.hashIds.length; b < numBlocks; b++) {
      const parent = b === 0 ? this.noneHash : r.hashDigests[b - 1]!;
      const keys = b === 0 || r.r.loraName ? extraKeysFor(b, r.r.loraName, r.r.cacheSalt) : null;
      const d = this.hasher.hash(parent, r.tokens, b * bs, (b + 1) * bs, keys);
      r.hashDigests.push(d);
      r.hashIds.push(d.readBigUInt64BE(24));
    }
  }

  /**
   * Prompt tokens the GPU prefix cache would serve this prompt now (leading cached blocks, at most the
   * blocks below the last token, as at admission): what a router's KV-event index predicts for this
   * engine. No side effects on the cache; `sharedPrefix` reuses a remembered hash chain.
   */
  probeCachedTokens(
    promptTokenIds: readonly number[],
    opts: {
      cacheSalt?: string | null;
      loraName?: string | null;
      sharedPrefix?: { key: string; tokens: number };
    } = {},
  ): number {
    if (!this.config.enablePrefixCaching || promptTokenIds.length === 0) return 0;
    const bs = this.config.blockSize;
    const maxHit = Math.floor((promptTokenIds.length - 1) / bs);
    const salt = opts.cacheSalt ?? null;
    const lora = opts.loraName ?? null;
    let n = 0;
    let parent: Buffer = this.noneHash;
    const sp = opts.sharedPrefix;
    const m = sp ? this.prefixMemos.get(`${salt ?? ""}\u0000${lora ?? ""}\u0000${sp.key}`) : undefined;
    if (m && sp) {
      const lim = Math.min(m.ids.length, maxHit, Math.floor(sp.tokens / bs));
      // blocks checked since the last eviction are still exact
      if (m.epoch === this.pool.cacheEpoch) n = Math.min(m.blocks.length, lim);
      while (n < lim && this.pool.lookup(m.ids[n]!, m.digests[n]) >= 0) n++;
      if (n < lim) return n * bs;
      if (n > 0) parent = m.digests[n - 1]!;
    }
    for (; n < maxHit; n++) {
      const keys = n === 0 || lora ? extraKeysFor(n, lora, salt) : null;
      const d = this.hasher.hash(parent, promptTokenIds, n * bs, (n + 1) * bs, keys);
      if (this.pool.lookup(0n, d) < 0) break;
      parent = d;
    }
    return n * bs;
  }

  /** puts the request's full, computed-by-the-end-of-this-step blocks into the prefix cache (and CPU tier) */
  private cacheFullBlocks(r: Req, numTokens: number): void {
    if (!this.hashing) return;
    const bs = this.config.blockSize;
    const full = Math.floor(numTokens / bs);
    if (full <= r.numCachedBlocks) return;
    this.ensureHashes(r, full);
    const first = r.numCachedBlocks;
    if (this.config.enablePrefixCaching) {
      // one BlockStored per contiguous run of newly cached blocks (a duplicate block splits the run)
      let runStart = -1;
      for (let b = first; b < full; b++) {
        if (this.pool.cacheBlock(r.blocks[b]!, r.hashIds[b]!, r.hashDigests[b]!, true)) {
          if (runStart < 0) runStart = b;
        } else if (runStart >= 0) {
          this.emitStored(r, runStart, b);
          runStart = -1;
        }
      }
      if (runStart >= 0) this.emitStored(r, runStart, full);
    }
    if (this.cpu) {
      const ids = r.hashIds.slice(first, full);
      const stored = this.cpu.store(
        ids,
        first > 0 ? r.hashIds[first - 1]! : null,
        Array.from(r.tokens.subarray(first * bs, full * bs)),
        bs,
        r.r.loraName,
      );
      this.counters.offloadStoredBlocks += stored;
      this.counters.offloadBytesToCpu +=
        stored * this.capacity.blockBytesPerGpu * this.config.tensorParallelSize;
    }
    if (this.lmcache) this.storeChunks(r, numTokens);
    r.numCachedBlocks = full;
  }

  /**
   * LMCache stores prompt KV only (save_decode_cache off by default), in full chunks, and its vLLM
   * connector saves in wait_for_save() at the end of the forward pass: the copy blocks the step.
   */
  private storeChunks(r: Req, numTokens: number): void {
    const cb = this.chunkBlocks;
    const chunkTokens = cb * this.config.blockSize;
    const full = Math.floor(Math.min(numTokens, r.promptLen) / chunkTokens);
    if (full <= r.lmcacheChunks) return;
    this.ensureHashes(r, full * cb);
    let stored = 0;
    for (let c = r.lmcacheChunks; c < full; c++)
      if (this.lmcache!.store(r.hashIds[(c + 1) * cb - 1]!)) stored++;
    r.lmcacheChunks = full;
    if (stored === 0) return;
    const perRank = stored * cb * this.capacity.blockBytesPerGpu;
    this.counters.offloadStoredBlocks += stored * cb;
    this.counters.offloadBytesToCpu += perRank * this.config.tensorParallelSize;
    this.stepStoreSeconds += perRank / this.lmcacheBps;
  }

  /** leading blocks of the request found in the GPU prefix cache; leaves their ids in r.hitBlocks */
  private gpuHitBlocks(r: Req, maxHit: number): number {
    const cache = r.hitBlocks;
    const memo = r.memo;
    const epoch = this.pool.cacheEpoch;
    // entries checked since the last eviction are still exact; only the rest need a look
    let valid = r.hitEpoch === epoch ? cache.length : 0;
    if (memo !== null && memo.blocks.length > valid) {
      // blocks another request with the same prefix found: exact if no eviction since, else candidates
      if (memo.epoch === epoch) {
        cache.length = 0;
        valid = memo.blocks.length;
      }
      for (let i = cache.length; i < memo.blocks.length; i++) cache.push(memo.blocks[i]!);
    }
    let n = Math.min(valid, maxHit);
    while (n < maxHit) {
      const id = r.hashIds[n]!;
      let b = n < cache.length ? cache[n]! : -1;
      if (b < 0 || this.pool.hashOf(b) !== id) {
        b = this.pool.lookup(id, r.hashDigests[n]);
        if (b < 0) break;
        cache[n] = b;
      }
      n++;
    }
    cache.length = n;
    r.hitEpoch = epoch;
    if (memo !== null) {
      const keep = Math.min(n, memo.ids.length);
      if (memo.epoch !== epoch || keep !== memo.blocks.length) {
        for (let i = 0; i < keep; i++) memo.blocks[i] = cache[i]!;
        memo.blocks.length = keep;
        memo.epoch = epoch;
      }
    }
    return n;
  }

  /** leading chunks of the request's prompt in the LMCache tier, counted in blocks, at most maxBlocks */
  private lmcacheHitBlocks(r: Req, maxBlocks: number): number {
    const cb = this.chunkBlocks;
    const maxChunks = Math.floor(maxBlocks / cb);
    if (maxChunks === 0) return 0;
    this.ensureHashes(r, maxChunks * cb);
    let c = 0;
    while (c < maxChunks && this.lmcache!.has(r.hashIds[(c + 1) * cb - 1]!)) c++;
    return c * cb;
  }

  private emitStored(r: Req, start: number, end: number): void {
    if (!this.wantEvents) return;
    const bs = this.config.blockSize;
    this.events.push({
      type: "BlockStored",
      blockHashes: r.hashIds.slice(start, end),
      parentBlockHash: start > 0 ? r.hashIds[start - 1]! : null,
      tokenIds: Array.from(r.tokens.subarray(start * bs, end * bs)),
      blockSize: bs,
      loraId: null,
      medium: "GPU",
      loraName: r.r.loraName,
    });
  }

  // ---- scheduling -------------------------------------------------------------------------------

  private blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.config.blockSize);
  }

  private pickVictim(): Req {
    if (this.config.schedulingPolicy !== "priority") return this.running[this.running.length - 1]!;
    let v = this.running[0]!;
    for (const r of this.running) if (this.before(v, r)) v = r;
    return v;
  }

  private preempt(v: Req): void {
    const i = this.running.indexOf(v);
    if (i >= 0) this.running.splice(i, 1);
    if (v.stepTokens > 0) {
      const j = this.scheduled.indexOf(v);
      if (j >= 0) this.scheduled.splice(j, 1);
      v.stepTokens = 0;
    }
    this.pool.free(v.blocks);
    v.blocks.length = 0;
    v.recomputeLeft = Math.max(v.recomputeLeft, v.numComputed);
    v.numComputed = 0;
    v.numCachedBlocks = 0;
    v.lmcacheChunks = 0;
    v.preemptions++;
    this.counters.numPreemptions++;
    this.enqueueWaiting(v, true);
  }

  private noteComputed(r: Req, numNew: number): void {
    if (r.recomputeLeft > 0) {
      const n = Math.min(numNew, r.recomputeLeft);
      this.counters.recomputedTokens += n;
      r.recomputeLeft -= n;
    }
  }

  beginStep(now: number): StepPlan | null {
    if (this.inFlight) throw new Error("beginStep called while a step is in flight");
    this.lastNow = Math.max(this.lastNow, now);
    const cfg = this.config;
    let budget = cfg.maxNumBatchedTokens;
    let preempted = false;
    this.stepLoadSeconds = 0;
    this.stepStoreSeconds = 0;
    this.stepExternalSeconds = 0;
    let loadBytes = 0;
    this.scheduled.length = 0;

    // running requests first, in order
    let i = 0;
    while (i < this.running.length && budget > 0) {
      const r = this.running[i]!;
      let numNew = Math.min(r.numTokens - r.numComputed, budget);
      if (numNew <= 0) {
        i++;
        continue;
      }
      let selfPreempted = false;
      for (;;) {
        const need = this.blocksFor(r.numComputed + numNew) - r.blocks.length;
        if (need <= 0 || this.pool.allocate(need, r.blocks)) break;
        const v = this.pickVictim();
        const vi = this.running.indexOf(v);
        if (v.stepTokens > 0) budget += v.stepTokens;
        this.preempt(v);
        preempted = true;
        if (v === r) {
          selfPreempted = true;
          break;
        }
        if (vi < i) i--;
      }
      if (selfPreempted) continue;
      numNew = Math.min(numNew, budget);
      this.schedule(r, numNew, now);
      budget -= numNew;
      i++;
    }

    // then waiting requests, unless this step had to preempt (vLLM skips admissions then)
    while (!preempted && budget > 0 && this.waiting.length > 0 && this.running.length < cfg.maxNumSeqs) {
      const r = this.waiting[0]!;
      const bs = cfg.blockSize;
      const numTokens = r.numTokens;
      // at least the last token is computed, so the hit is capped at whole blocks below numTokens
      const maxHit = Math.floor((numTokens - 1) / bs);
      let gpuHit = 0;
      let cpuHit = 0;
      if (this.hashing && maxHit > 0) this.ensureHashes(r, maxHit);
      if (cfg.enablePrefixCaching) gpuHit = this.gpuHitBlocks(r, maxHit);
      if (this.cpu) {
        while (gpuHit + cpuHit < maxHit && this.cpu.has(r.hashIds[gpuHit + cpuHit]!)) cpuHit++;
      }
      // LMCache answers in whole chunks from the prompt start; it loads what the GPU does not hold
      let lmHit = 0;
      if (this.lmcache) lmHit = Math.max(0, this.lmcacheHitBlocks(r, maxHit) - gpuHit);
      // the external tier (decided by the caller before add) covers what neither local tier did
      const extBlocks = Math.min(maxHit, Math.floor((r.r.externalCachedTokens ?? 0) / bs));
      const extHit = Math.max(0, extBlocks - gpuHit - cpuHit - lmHit);
      const hitTokens = (gpuHit + cpuHit + lmHit + extHit) * bs;
      const numNew = Math.min(numTokens - hitTokens, budget);
      const need = this.blocksFor(hitTokens + numNew) - gpuHit;
      const free = this.pool.numFreeBlocks;
      // a blocked head is checked every step: skip counting its free hit blocks when even all free
      // blocks would not do
      if (need > free) break;
      let hitFree = 0;
      for (let b = 0; b < gpuHit; b++) if (this.pool.refs(r.hitBlocks[b]!) === 0) hitFree++;
      if (need > free - hitFree) break;

      this.waiting.shift();
      for (let b = 0; b < gpuHit; b++) {
        const blk = r.hitBlocks[b]!;
        this.pool.touch(blk);
        r.blocks.push(blk);
      }
      this.pool.allocate(need, r.blocks);
      if (cpuHit > 0) {
        for (let b = gpuHit; b < gpuHit + cpuHit; b++) this.cpu!.touch(r.hashIds[b]!);
        const perGpu = cpuHit * this.capacity.blockBytesPerGpu;
        loadBytes += perGpu;
        this.counters.offloadLoadedBlocks += cpuHit;
        this.counters.offloadHitTokens += cpuHit * bs;
        this.counters.offloadBytesToGpu += perGpu * cfg.tensorParallelSize;
      }
      if (lmHit > 0) {
        const cb = this.chunkBlocks;
        for (let c = 0; c < (gpuHit + lmHit) / cb; c++) this.lmcache!.touch(r.hashIds[(c + 1) * cb - 1]!);
        const perRank = lmHit * this.capacity.blockBytesPerGpu;
        this.stepExtraSeconds += perRank / this.lmcacheBps;
        this.counters.offloadLoadedBlocks += lmHit;
        this.counters.offloadHitTokens += lmHit * bs;
        this.counters.offloadBytesToGpu += perRank * cfg.tensorParallelSize;
      }
      if (extHit > 0) {
        const bytes = extHit * this.capacity.blockBytesPerGpu * cfg.tensorParallelSize;
        const secs = bytes / r.r.externalLoadBandwidth!;
        this.stepExternalSeconds += secs;
        this.counters.externalHitTokens += extHit * bs;
        this.counters.externalBytesLoaded += bytes;
        if (r.externalTokens === 0) r.externalTokens = extHit * bs;
      }
      if (cfg.enablePrefixCaching) {
        this.counters.prefixCacheQueries += numTokens;
        this.counters.prefixCacheHits += gpuHit * bs;
      }
      r.numComputed = hitTokens;
      r.numCachedBlocks = gpuHit;
      r.announcedChunks = Math.max(r.announcedChunks, Math.floor(hitTokens / this.announceTokens));
      r.recomputeLeft = Math.max(0, r.recomputeLeft - hitTokens);
      if (r.cachedTokens < 0) r.cachedTokens = hitTokens;
      r.status = Status.Running;
      this.running.push(r);
      this.schedule(r, numNew, now);
      budget -= numNew;
    }

    if (this.scheduled.length === 0) {
      this.stepExtraSeconds = 0;
      return null;
    }

    // one StepWork per engine, reused: a fleet in virtual time runs millions of steps
    const work = this.work;
    work.prefillTokens = 0;
    work.decodeSeqs = 0;
    work.attentionContext = 0;
    work.kvReadTokens = 0;
    work.loadBytesPerGpu = loadBytes;
    work.extraTransferSeconds = this.stepExtraSeconds + this.stepStoreSeconds + this.stepExternalSeconds;
    this.stepExtraSeconds = 0;
    for (const r of this.scheduled) {
      const n = r.stepTokens;
      const c = r.numComputed;
      if (n === 1 && r.outputs > 0 && c + 1 === r.numTokens) work.decodeSeqs++;
      else work.prefillTokens += n;
      work.attentionContext += n * c + (n * (n + 1)) / 2;
      work.kvReadTokens += c;
    }
    const t = this.timer.time(work);
    this.stepLoadSeconds = t.transfer - this.stepStoreSeconds - this.stepExternalSeconds;
    this.inFlight = true;
    this.stepDuration = t.duration;
    return { duration: t.duration, prefillTokens: work.prefillTokens, decodeSeqs: work.decodeSeqs };
  }

  private schedule(r: Req, numNew: number, now: number): void {
    r.stepTokens = numNew;
    if (r.firstScheduledTime < 0) r.firstScheduledTime = now;
    this.noteComputed(r, numNew);
    this.cacheFullBlocks(r, r.numComputed + numNew);
    this.scheduled.push(r);
  }

  completeStep(now: number): void {
    if (!this.inFlight) throw new Error("completeStep called with no step in flight");
    this.inFlight = false;
    this.lastNow = Math.max(this.lastNow, now);
    this.counters.steps++;
    this.counters.busySeconds += this.stepDuration;
    this.counters.offloadTransferSeconds += this.stepLoadSeconds;
    this.counters.offloadStoreSeconds += this.stepStoreSeconds;
    this.counters.externalTransferSeconds += this.stepExternalSeconds;
    const announce = this.observer.onChunksComputed;
    const done = this.finishedScratch;
    done.length = 0;
    for (const r of this.scheduled) {
      if (r.status !== Status.Running || r.stepTokens === 0) continue;
      r.numComputed += r.stepTokens;
      r.stepTokens = 0;
      if (announce && r.announcedChunks * this.announceTokens < r.promptLen) {
        const full = Math.floor(Math.min(r.numComputed, r.promptLen) / this.announceTokens);
        if (full > r.announcedChunks) {
          const from = r.announcedChunks;
          r.announcedChunks = full;
          // announced chunks are prompt chunks: the caller's prompt array holds them
          announce.call(this.observer, r.r.requestId, from, full, r.r.promptTokenIds, now);
        }
      }
      if (r.numComputed < r.numTokens) continue; // a prefill chunk: no token yet
      const tok = r.r.sampleToken(r.outputs);
      r.tokens[r.numTokens++] = tok;
      r.outputs++;
      this.counters.generationTokens++;
      if (r.firstTokenTime < 0) r.firstTokenTime = now;
      const one = this.oneToken;
      one[0] = tok;
      this.observer.onTokens(r.r.requestId, one, now);
      // the modelled EOS wins over the length limit when both land on the same token, as in vLLM
      if (!r.r.ignoreEos && r.outputs >= r.r.stopAfter && r.outputs >= r.r.minTokens) r.finishReason = "stop";
      else if (r.outputs >= r.r.maxTokens || r.numTokens >= this.config.maxModelLen)
        r.finishReason = "length";
      else continue;
      done.push(r);
    }
    this.scheduled.length = 0;
    for (const r of done) {
      const reason = r.finishReason!;
      const i = this.running.indexOf(r);
      if (i >= 0) this.running.splice(i, 1);
      this.finish(r, reason, now);
    }
    this.flushEvents(now);
  }

  private finish(r: Req, reason: FinishReason, now: number): void {
    r.status = Status.Done;
    if (r.blocks.length > 0) {
      this.pool.free(r.blocks);
      r.blocks.length = 0;
    }
    this.requests.delete(r.r.requestId);
    const timings: RequestTimings = {
      arrivalTime: r.r.arrivalTime,
      firstScheduledTime: r.firstScheduledTime,
      firstTokenTime: r.firstTokenTime,
      finishedTime: now,
      promptTokens: r.promptLen,
      outputTokens: r.outputs,
      cachedTokens: Math.max(0, r.cachedTokens),
      externalTokens: r.externalTokens,
      preemptions: r.preemptions,
    };
    this.observer.onFinished(r.r.requestId, reason, timings);
  }

  private flushEvents(now: number): void {
    if (this.events.length === 0) return;
    const batch = this.events.splice(0, this.events.length);
    this.observer.onKvEvents?.(batch, now);
  }

  snapshot(): EngineSnapshot {
    return {
      numRunning: this.running.length,
      numWaiting: this.waiting.length,
      kvCacheUsage: this.pool.usage(),
      numGpuBlocks: this.capacity.numGpuBlocks,
      numCpuBlocks: this.capacity.numCpuBlocks,
      counters: this.counters,
    };
  }

  /** drops the GPU prefix cache (and the CPU tier); false while blocks are in use, like vLLM */
  resetPrefixCache(): boolean {
    if (!this.pool.reset()) return false;
    this.cpu?.clear();
    this.lmcache?.clear();
    this.flushEvents(this.lastNow);
    return true;
  }

  /** free-queue order and cached-block count, for tests and debugging */
  debugState(): { freeQueue: number[]; cachedBlocks: number; cpuBlocks: number } {
    return {
      freeQueue: this.pool.freeQueue(),
      cachedBlocks: this.pool.numCachedBlocks,
      cpuBlocks: this.cpu?.size ?? (this.lmcache ? this.lmcache.size * this.chunkBlocks : 0),
    };
  }
}
