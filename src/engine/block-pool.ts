// The GPU block pool of vLLM V1's KV cache manager: reference counts, a hash → block map for prefix
// caching, and a free queue that is an O(1) doubly linked LRU over typed arrays. Free blocks keep their
// hash (and stay hittable) until they are reallocated; reallocating one evicts it (BlockRemoved).
// Blocks freed together are appended tail-of-chain first, so a chain's tail is evicted before its head.
import type { KvEvent } from "../kvevents/events.js";
import { InvariantError } from "../errors/index.js";

const NIL = -1;

/** the two 32-bit halves of a digest's uint64 id (bytes 24..31, big-endian) */
function hiOf(d: Uint8Array): number {
  return ((d[24]! << 24) | (d[25]! << 16) | (d[26]! << 8) | d[27]!) >>> 0;
}
function loOf(d: Uint8Array): number {
  return ((d[28]! << 24) | (d[29]! << 16) | (d[30]! << 8) | d[31]!) >>> 0;
}
/** the same halves from the id itself (block hash ids are uint64) */
function idHi(id: bigint): number {
  return Number(id >> 32n) >>> 0;
}
function idLo(id: bigint): number {
  return Number(id & 0xffffffffn);
}

export class BlockPool {
  readonly numBlocks: number;
  private readonly refCount: Int32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly inFree: Uint8Array;
  private head = NIL;
  private tail = NIL;
  private freeCount = 0;
  /** hash id of the block's contents while it is in the prefix cache, else undefined */
  private readonly blockHash: (bigint | undefined)[];
  private readonly blockDigest: (Buffer | undefined)[];
  /**
   * hash id → block, open addressing over typed arrays keyed by the id's two 32-bit halves (read from
   * the digest, where the id lives). A JS Map under this churn (every allocation evicts a hash, every
   * computed block inserts one) spent ~0.5 µs per insert/delete pair on rehashing its tombstones.
   */
  private readonly slotHi: Uint32Array;
  private readonly slotLo: Uint32Array;
  private readonly slotBlock: Int32Array;
  private readonly slotMask: number;
  /** each cached block's key halves, so evicting it needs no bigint arithmetic */
  private readonly blockHi: Uint32Array;
  private readonly blockLo: Uint32Array;
  private cachedCount = 0;
  enableEvents = true;
  /**
   * bumped whenever a cached hash leaves a block (eviction, reset): a block list checked against the
   * cache at the same value is still exact, so a blocked queue head need not check it again
   */
  cacheEpoch = 0;

  /** `events` receives BlockRemoved / AllBlocksCleared in order (the engine drains it each step) */
  constructor(
    numBlocks: number,
    readonly events: KvEvent[] = [],
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1)
      throw new RangeError(`numBlocks must be >= 1, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    this.refCount = new Int32Array(numBlocks);
    this.prev = new Int32Array(numBlocks);
    this.next = new Int32Array(numBlocks);
    this.inFree = new Uint8Array(numBlocks);
    this.blockHash = new Array<bigint | undefined>(numBlocks).fill(undefined);
    this.blockDigest = new Array<Buffer | undefined>(numBlocks).fill(undefined);
    // at most one entry per block: a table of ≥ 2× the blocks keeps probe runs short
    let cap = 16;
    while (cap < numBlocks * 2) cap *= 2;
    this.slotHi = new Uint32Array(cap);
    this.slotLo = new Uint32Array(cap);
    this.slotBlock = new Int32Array(cap).fill(NIL);
    this.slotMask = cap - 1;
    this.blockHi = new Uint32Array(numBlocks);
    this.blockLo = new Uint32Array(numBlocks);
    for (let i = 0; i < numBlocks; i++) this.pushTail(i);
  }

  get numFreeBlocks(): number {
    return this.freeCount;
  }

  get numCachedBlocks(): number {
    return this.cachedCount;
  }

  /** fraction of blocks in use (vllm:kv_cache_usage_perc) */
  usage(): number {
    return 1 - this.freeCount / this.numBlocks;
  }

  private pushTail(b: number): void {
    this.prev[b] = this.tail;
    this.next[b] = NIL;
    if (this.tail !== NIL) this.next[this.tail] = b;
    else this.head = b;
    this.tail = b;
    this.inFree[b] = 1;
    this.freeCount++;
  }

  private unlink(b: number): void {
    const p = this.prev[b]!;
    const n = this.next[b]!;
    if (p !== NIL) this.next[p] = n;
    else this.head = n;
    if (n !== NIL) this.prev[n] = p;
    else this.tail = p;
    this.inFree[b] = 0;
    this.freeCount--;
  }

  private home(hi: number, lo: number): number {
    return (Math.imul(hi ^ (lo >>> 16), 0x9e3779b1) ^ lo) & this.slotMask;
  }

  /** the slot holding (hi, lo), or -1 */
  private findSlot(hi: number, lo: number): number {
    const mask = this.slotMask;
    for (let i = this.home(hi, lo); ; i = (i + 1) & mask) {
      if (this.slotBlock[i] === NIL) return NIL;
      if (this.slotLo[i] === lo && this.slotHi[i] === hi) return i;
    }
  }

  private removeSlot(i: number): void {
    // backward-shift deletion: later entries of the probe run move up, so no tombstones are left
    const mask = this.slotMask;
    let hole = i;
    for (let j = (i + 1) & mask; this.slotBlock[j] !== NIL; j = (j + 1) & mask) {
      const k = this.home(this.slotHi[j]!, this.slotLo[j]!);
      const movable = hole <= j ? k <= hole || k > j : k <= hole && k > j;
      if (movable) {
        this.slotHi[hole] = this.slotHi[j]!;
        this.slotLo[hole] = this.slotLo[j]!;
        this.slotBlock[hole] = this.slotBlock[j]!;
        hole = j;
      }
    }
    this.slotBlock[hole] = NIL;
    this.cachedCount--;
  }

  /**
   * the cached block holding this hash, or -1. `digest`, when given, must be the one `id` was read
   * from (bytes 24..31): its halves are read directly instead of splitting the bigint
   */
  lookup(id: bigint, digest?: Uint8Array): number {
    const i = digest ? this.findSlot(hiOf(digest), loOf(digest)) : this.findSlot(idHi(id), idLo(id));
    return i === NIL ? NIL : this.slotBlock[i]!;
  }

  /** takes a reference on a prefix-cache hit; a free block leaves the free queue */
  touch(b: number): void {
    if (this.refCount[b] === 0 && this.inFree[b]) this.unlink(b);
    this.refCount[b]!++;
  }

  /** allocates `n` fresh blocks from the LRU end (evicting their cached contents), or null if short */
  allocate(n: number, out: number[]): boolean {
    if (n > this.freeCount) return false;
    for (let i = 0; i < n; i++) {
      const b = this.head;
      this.unlink(b);
      this.evictCached(b);
      this.refCount[b] = 1;
      out.push(b);
    }
    return true;
  }

  private evictCached(b: number): void {
    const h = this.blockHash[b];
    if (h === undefined) return;
    this.cacheEpoch++;
    this.blockHash[b] = undefined;
    this.blockDigest[b] = undefined;
    const i = this.findSlot(this.blockHi[b]!, this.blockLo[b]!);
    if (i !== NIL && this.slotBlock[i] === b) this.removeSlot(i);
    if (this.enableEvents) this.events.push({ type: "BlockRemoved", blockHashes: [h], medium: "GPU" });
  }

  /**
   * Frees a request's blocks; `blocks` is in chain order and is released tail first, so among blocks freed
   * together the end of the chain is evicted first (vLLM's order).
   */
  free(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) {
      const b = blocks[i]!;
      const rc = --this.refCount[b]!;
      if (rc < 0) throw new InvariantError(`block ${b} freed twice`);
      if (rc === 0) this.pushTail(b);
    }
  }

  /**
   * Puts a full block into the prefix cache. Returns false when another block already holds the same
   * contents (two requests computed it in the same step): this copy stays unhashed and is simply reused.
   */
  cacheBlock(b: number, id: bigint, digest: Buffer, idFromDigest = false): boolean {
    if (this.blockHash[b] !== undefined) return false;
    // the engine's ids are read from their digests (bytes 24..31): their halves come straight from it
    const hi = idFromDigest ? hiOf(digest) : idHi(id);
    const lo = idFromDigest ? loOf(digest) : idLo(id);
    const mask = this.slotMask;
    let i = this.home(hi, lo);
    for (; this.slotBlock[i] !== NIL; i = (i + 1) & mask)
      if (this.slotLo[i] === lo && this.slotHi[i] === hi) return false;
    this.slotHi[i] = hi;
    this.slotLo[i] = lo;
    this.slotBlock[i] = b;
    this.cachedCount++;
    this.blockHi[b] = hi;
    this.blockLo[b] = lo;
    this.blockHash[b] = id;
    this.blockDigest[b] = digest;
    return true;
  }

  hashOf(b: number): bigint | undefined {
    return this.blockHash[b];
  }

  digestOf(b: number): Buffer | undefined {
    return this.blockDigest[b];
  }

  refs(b: number): number {
    return this.refCount[b]!;
  }

  /** block ids in free-queue order, LRU first (tests and debugging) */
  freeQueue(): number[] {
    const out: number[] = [];
    for (let b = this.head; b !== NIL; b = this.next[b]!) out.push(b);
    return out;
  }

  /** drops every cached hash; refused (false) while any block is in use, like vLLM */
  reset(): boolean {
    if (this.freeCount !== this.numBlocks) return false;
    for (let b = 0; b < this.numBlocks; b++) {
      this.blockHash[b] = undefined;
      this.blockDigest[b] = undefined;
    }
    this.slotBlock.fill(NIL);
    this.cachedCount = 0;
    this.cacheEpoch++;
    if (this.enableEvents) this.events.push({ type: "AllBlocksCleared" });
    return true;
  }
}
