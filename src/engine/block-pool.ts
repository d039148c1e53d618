// The GPU block pool of vLLM V1's KV cache manager: reference counts, a hash → block map for prefix
// caching, and a free queue that is an O(1) doubly linked LRU over typed arrays. Free blocks keep their
// hash (and stay hittable) until they are reallocated; reallocating one evicts it (BlockRemoved).
// Blocks freed together are appended tail-of-chain first, so a chain's tail is evicted before its head.
import type { KvEvent } from "../kvevents/events.js";

const NIL = -1;

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
  private readonly hashToBlock = new Map<bigint, number>();
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
    for (let i = 0; i < numBlocks; i++) this.pushTail(i);
  }

  get numFreeBlocks(): number {
    return this.freeCount;
  }

  get numCachedBlocks(): number {
    return this.hashToBlock.size;
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

  /** the cached block holding this hash, or -1 */
  lookup(id: bigint): number {
    return this.hashToBlock.get(id) ?? NIL;
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
    if (this.hashToBlock.get(h) === b) this.hashToBlock.delete(h);
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
      if (rc < 0) throw new Error(`block ${b} freed twice`);
      if (rc === 0) this.pushTail(b);
    }
  }

  /**
   * Puts a full block into the prefix cache. Returns false when another block already holds the same
   * contents (two requests computed it in the same step): this copy stays unhashed and is simply reused.
   */
  cacheBlock(b: number, id: bigint, digest: Buffer): boolean {
    if (this.blockHash[b] !== undefined) return false;
    if (this.hashToBlock.has(id)) return false;
    this.blockHash[b] = id;
    this.blockDigest[b] = digest;
    this.hashToBlock.set(id, b);
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
    this.hashToBlock.clear();
    this.cacheEpoch++;
    if (this.enableEvents) this.events.push({ type: "AllBlocksCleared" });
    return true;
  }
}
