// The KV-cache manager of one engine, as vLLM V1 splits it from the scheduler (KVCacheManager over a
// BlockPool): block hashing, the GPU prefix cache and its hit counting, block allocation for new and
// running requests, and the offload tiers behind it (the native CPU tier, LMCache's local CPU chunks,
// an external store the caller looked up). The scheduler asks it what a request finds cached and
// whether its blocks fit; the manager charges every transfer it causes to the step being planned.
import type { KvEvent } from "../kvevents/events.js";
import { BlockPool } from "./block-pool.js";
import { kvCapacity, type KvCapacity } from "./capacity.js";
import {
  BlockHasher,
  eventExtraKeys,
  extraKeysFor,
  noneHash,
  type ExtraKeys,
} from "../protocol/block-hashing.js";
import { ChunkTier, LMCACHE_LOCAL_CPU_BPS } from "./lmcache.js";
import { CpuTier } from "./offload.js";
import type { PrefixMemo, Req } from "./request.js";
import type { EngineConfig, EngineCounters, PrefixProbe, ProbeOptions } from "./types.js";
import { LMCACHE_CHUNK_TOKENS } from "../config/vllm-defaults.js";
import { InvariantError } from "../errors/index.js";

/** shared prefixes whose block hashes an engine remembers (EngineRequest.sharedPrefix) */
const MAX_PREFIX_MEMOS = 256;

/** what a waiting request finds cached, in blocks per tier (a reused scratch value) */
export interface PrefixHit {
  gpu: number;
  cpu: number;
  lmcache: number;
  external: number;
}

/** transfers charged to the step being planned */
export interface StepTransfers {
  /** bytes per GPU loaded from the native CPU tier (timed at the host link by the step timer) */
  loadBytesPerGpu: number;
  /** seconds of LMCache loads (at the tier's own copy rate) */
  lmcacheLoadSeconds: number;
  /** seconds of GPU time the offload stores take from the step (see docs/engine-model.md) */
  storeSeconds: number;
  /** seconds of loads from the external tier */
  externalSeconds: number;
}

export class KvCacheManager {
  readonly capacity: KvCapacity;
  /** KV events of the step (the engine drains them); shared with the tiers so the order is kept */
  readonly events: KvEvent[] = [];
  readonly step: StepTransfers = {
    loadBytesPerGpu: 0,
    lmcacheLoadSeconds: 0,
    storeSeconds: 0,
    externalSeconds: 0,
  };
  private readonly config: EngineConfig;
  private readonly counters: EngineCounters;
  private readonly pool: BlockPool;
  private readonly cpu: CpuTier | null;
  private readonly lmcache: ChunkTier | null;
  /** blocks per LMCache chunk, and the per-rank copy rate of the LMCache tier */
  private readonly chunkBlocks: number;
  private readonly lmcacheBps: number;
  /** GPU time one block stored by the native connector takes from its step, seconds */
  private readonly nativeStoreSecondsPerBlock: number;
  private readonly prefixMemos = new Map<string, PrefixMemo>();
  private readonly noneHash: Buffer;
  /** whether block hashes are needed at all (a prefix cache or a tier keyed by them) */
  readonly hashing: boolean;
  private readonly hasher: BlockHasher;
  private readonly wantEvents: boolean;
  private readonly hit: PrefixHit = { gpu: 0, cpu: 0, lmcache: 0, external: 0 };
  /**
   * a probe's chain: the digest of each of the prompt's leading blocks hashed so far, block b at b, so
   * that its GPU and tier walks hash each block once (reused, emptied when the probe ends)
   */
  private readonly probeChain: Buffer[] = [];
  private readonly probed: PrefixProbe = { gpuTokens: 0, tierTokens: 0, tierSeconds: 0 };

  constructor(config: EngineConfig, counters: EngineCounters, wantEvents: boolean) {
    this.config = config;
    this.counters = counters;
    this.capacity = kvCapacity(config);
    this.pool = new BlockPool(this.capacity.numGpuBlocks, this.events);
    this.wantEvents = wantEvents;
    this.pool.enableEvents = config.enablePrefixCaching && wantEvents;
    const off = config.offload;
    this.cpu = off?.backend === "native" ? new CpuTier(this.capacity.numCpuBlocks, this.events) : null;
    if (this.cpu) this.cpu.enableEvents = wantEvents;
    this.chunkBlocks =
      off?.backend === "lmcache" ? (off.chunkTokens ?? LMCACHE_CHUNK_TOKENS) / config.blockSize : 1;
    this.lmcache =
      off?.backend === "lmcache"
        ? new ChunkTier(Math.floor(this.capacity.numCpuBlocks / this.chunkBlocks))
        : null;
    this.lmcacheBps = off?.bandwidth ?? LMCACHE_LOCAL_CPU_BPS;
    // each rank copies its own shard over its own host link
    this.nativeStoreSecondsPerBlock = this.capacity.blockBytesPerGpu / config.gpu.hostLinkBandwidth;
    this.noneHash = noneHash(config.hashSeed);
    this.hasher = new BlockHasher(config.blockSize, config.blockHashAlgo === "fast");
    this.hashing = config.enablePrefixCaching || this.cpu !== null || this.lmcache !== null;
  }

  get numFreeBlocks(): number {
    return this.pool.numFreeBlocks;
  }

  /** fraction of GPU blocks in use (vllm:kv_cache_usage_perc) */
  usage(): number {
    return this.pool.usage();
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.config.blockSize);
  }

  /** zeroes the transfers of the step about to be planned */
  beginStep(): void {
    const s = this.step;
    s.loadBytesPerGpu = 0;
    s.lmcacheLoadSeconds = 0;
    s.storeSeconds = 0;
    s.externalSeconds = 0;
  }

  // ---- hashing ----------------------------------------------------------------------------------

  /** seeds the request's hash chain from its declared shared prefix (computing and keeping it once) */
  attachSharedPrefix(r: Req, p: { key: string; tokens: number }): void {
    if (!this.hashing) return;
    const n = Math.floor(Math.min(p.tokens, r.promptLen) / this.config.blockSize);
    if (!(n > 0)) return;
    // the chain depends on the salt (block 0) and the adapter (every block) as well as on the tokens
    const key = `${r.r.cacheSalt ?? ""}\u0000${r.r.loraName ?? ""}\u0000${r.r.lora?.path ?? ""}\u0000${p.key}`;
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

  /** vLLM's extra keys of block `b`, in the form of the release modelled */
  private extraKeys(
    b: number,
    lora: string | null | undefined,
    salt: string | null | undefined,
    path: string | null | undefined,
  ): ExtraKeys {
    return extraKeysFor(b, lora, salt, this.config.extraKeyStyle, path);
  }

  private ensureHashes(r: Req, numBlocks: number): void {
    const bs = this.config.blockSize;
    for (let b = r.hashIds.length; b < numBlocks; b++) {
      const parent = b === 0 ? this.noneHash : r.hashDigests[b - 1]!;
      const keys =
        b === 0 || r.r.loraName ? this.extraKeys(b, r.r.loraName, r.r.cacheSalt, r.r.lora?.path) : null;
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
  probeCachedTokens(promptTokenIds: readonly number[], opts: ProbeOptions = {}): number {
    return this.walkGpu(promptTokenIds, opts, null);
  }

  /**
   * What the engine's own CPU tier adds to a GPU hit of `gpuTokens` for this prompt, as findCached would
   * take it (native: the blocks continuing the hit; LMCache: its whole chunks from the prompt start,
   * beyond the hit), and the seconds loading them adds to a step (each rank copies its shard over its
   * own link): what a router's price of the tier reads. No side effects; zeros without a CPU tier.
   */
  probeTierTokens(
    promptTokenIds: readonly number[],
    gpuTokens: number,
    opts: ProbeOptions = {},
  ): { tokens: number; seconds: number } {
    const tier = this.walkTier(promptTokenIds, gpuTokens, opts, this.probeChain);
    this.probeChain.length = 0;
    return tier;
  }

  /**
   * probeCachedTokens and probeTierTokens of one prompt at once, each of its blocks hashed once: the
   * tier walk goes on from the chain the GPU walk hashed. The result is a scratch value.
   */
  probePrefix(promptTokenIds: readonly number[], opts: ProbeOptions = {}): PrefixProbe {
    const chain = this.probeChain;
    const r = this.probed;
    r.gpuTokens = this.walkGpu(promptTokenIds, opts, chain);
    const tier = this.walkTier(promptTokenIds, r.gpuTokens, opts, chain);
    chain.length = 0;
    r.tierTokens = tier.tokens;
    r.tierSeconds = tier.seconds;
    return r;
  }

  /** probeCachedTokens, leaving the digests of the blocks it walks in `chain` when one is given */
  private walkGpu(promptTokenIds: readonly number[], opts: ProbeOptions, chain: Buffer[] | null): number {
    if (!this.config.enablePrefixCaching || promptTokenIds.length === 0) return 0;
    const bs = this.config.blockSize;
    const maxHit = Math.floor((promptTokenIds.length - 1) / bs);
    const salt = opts.cacheSalt ?? null;
    const lora = opts.loraName ?? null;
    const path = opts.loraPath ?? null;
    let n = 0;
    let parent: Buffer = this.noneHash;
    const sp = opts.sharedPrefix;
    const m = sp
      ? this.prefixMemos.get(`${salt ?? ""}\u0000${lora ?? ""}\u0000${path ?? ""}\u0000${sp.key}`)
      : undefined;
    if (m && sp) {
      const lim = Math.min(m.ids.length, maxHit, Math.floor(sp.tokens / bs));
      // blocks checked since the last eviction are still exact
      if (m.epoch === this.pool.cacheEpoch) n = Math.min(m.blocks.length, lim);
      while (n < lim && this.pool.lookup(m.ids[n]!, m.digests[n]) >= 0) n++;
      // the remembered chain is the prompt's own as far as the shared prefix goes
      if (chain) for (let b = 0; b < lim; b++) chain.push(m.digests[b]!);
      if (n < lim) return n * bs;
      if (n > 0) parent = m.digests[n - 1]!;
    }
    for (; n < maxHit; n++) {
      const keys = n === 0 || lora ? this.extraKeys(n, lora, salt, path) : null;
      const d = this.hasher.hash(parent, promptTokenIds, n * bs, (n + 1) * bs, keys);
      chain?.push(d);
      if (this.pool.lookup(0n, d) < 0) break;
      parent = d;
    }
    return n * bs;
  }

  /** probeTierTokens, hashing the prompt's blocks on from the digests `chain` already holds */
  private walkTier(
    promptTokenIds: readonly number[],
    gpuTokens: number,
    opts: ProbeOptions,
    chain: Buffer[],
  ): { tokens: number; seconds: number } {
    const none = { tokens: 0, seconds: 0 };
    if ((!this.cpu && !this.lmcache) || promptTokenIds.length === 0) return none;
    const bs = this.config.blockSize;
    const maxHit = Math.floor((promptTokenIds.length - 1) / bs);
    const gpu = Math.min(maxHit, Math.floor(gpuTokens / bs));
    const salt = opts.cacheSalt ?? null;
    const lora = opts.loraName ?? null;
    const path = opts.loraPath ?? null;
    /** the chained id of block n, hashing the chain as far as it is asked */
    const idOf = (n: number): bigint => {
      for (let b = chain.length; b <= n; b++) {
        const keys = b === 0 || lora ? this.extraKeys(b, lora, salt, path) : null;
        const parent = b === 0 ? this.noneHash : chain[b - 1]!;
        chain.push(this.hasher.hash(parent, promptTokenIds, b * bs, (b + 1) * bs, keys));
      }
      return chain[n]!.readBigUInt64BE(24);
    };
    let blocks = 0;
    let bps = this.config.gpu.hostLinkBandwidth;
    if (this.cpu) {
      while (gpu + blocks < maxHit && this.cpu.has(idOf(gpu + blocks))) blocks++;
    } else {
      const cb = this.chunkBlocks;
      const maxChunks = Math.floor(maxHit / cb);
      let c = 0;
      while (c < maxChunks && this.lmcache!.has(idOf((c + 1) * cb - 1))) c++;
      blocks = Math.max(0, c * cb - gpu);
      bps = this.lmcacheBps;
    }
    if (blocks === 0) return none;
    return { tokens: blocks * bs, seconds: (blocks * this.capacity.blockBytesPerGpu) / bps };
  }

  // ---- lookup and allocation (vLLM: get_computed_blocks, the connector's matched tokens, allocate_slots)

  /**
   * What a waiting request finds cached, leading blocks first: the GPU prefix cache, then the CPU tier's
   * continuation, LMCache's whole chunks beyond the GPU hit, then the external tier for the rest. Capped
   * at whole blocks below numTokens (at least the last token is computed). The result is a scratch value.
   */
  findCached(r: Req): PrefixHit {
    const cfg = this.config;
    const bs = cfg.blockSize;
    const maxHit = Math.floor((r.numTokens - 1) / bs);
    const hit = this.hit;
    hit.gpu = 0;
    hit.cpu = 0;
    hit.lmcache = 0;
    if (this.hashing && maxHit > 0) this.ensureHashes(r, maxHit);
    if (cfg.enablePrefixCaching) hit.gpu = this.gpuHitBlocks(r, maxHit);
    if (this.cpu) {
      // blocks found at the last look are still there if nothing left the tier since: look further only
      const start = hit.gpu;
      const cpu = this.cpu;
      let n =
        r.cpuHitStart === start && r.cpuHitEpoch === cpu.epoch ? Math.min(r.cpuHitCount, maxHit - start) : 0;
      while (start + n < maxHit && cpu.has(r.hashIds[start + n]!)) n++;
      r.cpuHitStart = start;
      r.cpuHitCount = n;
      r.cpuHitEpoch = cpu.epoch;
      hit.cpu = n;
    }
    // LMCache answers in whole chunks from the prompt start; it loads what the GPU does not hold
    if (this.lmcache) hit.lmcache = Math.max(0, this.lmcacheHitBlocks(r, maxHit) - hit.gpu);
    // the external tier (decided by the caller before add) covers what neither local tier did
    const extBlocks = Math.min(maxHit, Math.floor((r.r.externalCachedTokens ?? 0) / bs));
    hit.external = Math.max(0, extBlocks - hit.gpu - hit.cpu - hit.lmcache);
    return hit;
  }

  /**
   * Admits a waiting request: takes its GPU hit blocks and `need` fresh blocks, loads what the tiers
   * hold, and counts the hits. False, with nothing changed, when the blocks do not fit.
   */
  admit(r: Req, hit: PrefixHit, numNewTokens: number): boolean {
    const cfg = this.config;
    const bs = cfg.blockSize;
    const hitTokens = (hit.gpu + hit.cpu + hit.lmcache + hit.external) * bs;
    const need = this.blocksFor(hitTokens + numNewTokens) - hit.gpu;
    const free = this.pool.numFreeBlocks;
    // a blocked head is checked every step: skip counting its free hit blocks when even all free
    // blocks would not do
    if (need > free) return false;
    let hitFree = 0;
    for (let b = 0; b < hit.gpu; b++) if (this.pool.refs(r.hitBlocks[b]!) === 0) hitFree++;
    if (need > free - hitFree) return false;

    for (let b = 0; b < hit.gpu; b++) {
      const blk = r.hitBlocks[b]!;
      this.pool.touch(blk);
      r.blocks.push(blk);
    }
    this.pool.allocate(need, r.blocks);
    const c = this.counters;
    const blockBytes = this.capacity.blockBytesPerGpu;
    if (hit.cpu > 0) {
      for (let b = hit.gpu; b < hit.gpu + hit.cpu; b++) this.cpu!.touch(r.hashIds[b]!);
      const perGpu = hit.cpu * blockBytes;
      this.step.loadBytesPerGpu += perGpu;
      c.offloadLoadedBlocks += hit.cpu;
      c.offloadHitTokens += hit.cpu * bs;
      c.offloadBytesToGpu += perGpu * cfg.tensorParallelSize;
    }
    if (hit.lmcache > 0) {
      const cb = this.chunkBlocks;
      for (let ch = 0; ch < (hit.gpu + hit.lmcache) / cb; ch++)
        this.lmcache!.touch(r.hashIds[(ch + 1) * cb - 1]!);
      const perRank = hit.lmcache * blockBytes;
      this.step.lmcacheLoadSeconds += perRank / this.lmcacheBps;
      c.offloadLoadedBlocks += hit.lmcache;
      c.offloadHitTokens += hit.lmcache * bs;
      c.offloadBytesToGpu += perRank * cfg.tensorParallelSize;
    }
    if (hit.external > 0) {
      const bytes = hit.external * blockBytes * cfg.tensorParallelSize;
      this.step.externalSeconds += bytes / r.r.externalLoadBandwidth!;
      c.externalHitTokens += hit.external * bs;
      c.externalBytesLoaded += bytes;
      if (r.externalTokens === 0) r.externalTokens = hit.external * bs;
    }
    if (cfg.enablePrefixCaching) {
      c.prefixCacheQueries += r.numTokens;
      c.prefixCacheHits += hit.gpu * bs;
    }
    r.numCachedBlocks = hit.gpu;
    return true;
  }

  /** blocks for a running request's next `numNewTokens`; false (nothing taken) when too few are free */
  allocateSlots(r: Req, numNewTokens: number): boolean {
    const need = this.blocksFor(r.numComputed + numNewTokens) - r.blocks.length;
    return need <= 0 || this.pool.allocate(need, r.blocks);
  }

  /** returns a request's blocks (finished or preempted); its cached blocks stay hittable until reused */
  free(r: Req): void {
    if (r.blocks.length > 0) {
      this.pool.free(r.blocks);
      r.blocks.length = 0;
    }
    r.numCachedBlocks = 0;
    r.lmcacheChunks = 0;
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
    const lm = this.lmcache!;
    let c = r.lmHitEpoch === lm.epoch ? Math.min(r.lmHitChunks, maxChunks) : 0;
    while (c < maxChunks && lm.has(r.hashIds[(c + 1) * cb - 1]!)) c++;
    r.lmHitChunks = c;
    r.lmHitEpoch = lm.epoch;
    return c * cb;
  }

  // ---- caching and stores (vLLM: cache_blocks, the connector's save) ------------------------------

  /**
   * Puts the request's full blocks, computed by the end of this step, into the prefix cache and the
   * offload tier, and charges the stores to the step. Native: every newly computed block is copied to
   * the host at the host-link rate; the connector's copies are asynchronous, but they still take the
   * GPU's time (vLLM measured its connector 6% slower than no offload at 0% hits), so the copy time is
   * added to the step. LMCache: whole prompt chunks, saved at the end of the forward pass, blocking.
   */
  cacheBlocks(r: Req, numTokens: number): void {
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
      const stored = this.cpu.store(r.hashIds, first, full, r.tokens, bs, r.r.loraName);
      this.counters.offloadStoredBlocks += stored;
      this.counters.offloadBytesToCpu +=
        stored * this.capacity.blockBytesPerGpu * this.config.tensorParallelSize;
      this.step.storeSeconds += stored * this.nativeStoreSecondsPerBlock;
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
    this.step.storeSeconds += perRank / this.lmcacheBps;
  }

  /**
   * A stored event's extra_keys where its request has any (a salt, an adapter): one untagged entry per
   * block, as every release publishes them (to_event_extra_keys); left out otherwise, as before.
   */
  private eventKeys(r: Req, start: number, end: number): { extraKeys?: (string[] | null)[] } {
    if (!r.r.loraName && !(start === 0 && r.r.cacheSalt)) return {};
    const out: (string[] | null)[] = [];
    for (let b = start; b < end; b++)
      out.push(eventExtraKeys(this.extraKeys(b, r.r.loraName, r.r.cacheSalt, r.r.lora?.path)));
    return { extraKeys: out };
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
      ...this.eventKeys(r, start, end),
    });
  }

  // ---- invariants, reset, debugging ---------------------------------------------------------------

  /**
   * A scheduled request holds the blocks for every token it will have computed by the end of the step
   * (vLLM's allocate_slots guarantees it; the model runner would write past the block table otherwise).
   */
  assertCovers(r: Req): void {
    const need = this.blocksFor(r.numComputed + r.stepTokens);
    if (r.blocks.length < need)
      throw new InvariantError(
        `KV invariant: request ${r.r.requestId} has ${r.blocks.length} blocks for ${r.numComputed + r.stepTokens} tokens (needs ${need})`,
      );
  }

  /** drops the GPU prefix cache and the tiers; false while blocks are in use, like vLLM */
  reset(): boolean {
    if (!this.pool.reset()) return false;
    this.cpu?.clear();
    this.lmcache?.clear();
    return true;
  }

  /** GPU blocks holding a hash (in use or cached free): what the engine's KV events say it holds */
  get numCachedBlocks(): number {
    return this.pool.numCachedBlocks;
  }

  debugState(): { freeQueue: number[]; cachedBlocks: number; cpuBlocks: number } {
    return {
      freeQueue: this.pool.freeQueue(),
      cachedBlocks: this.pool.numCachedBlocks,
      cpuBlocks: this.cpu?.size ?? (this.lmcache ? this.lmcache.size * this.chunkBlocks : 0),
    };
  }
}
