// The exact index of the `kv` policy: block hash (vLLM's uint64 KV-event form) → the engines that hold
// the block and in which tiers (GPU, or an offload tier such as CPU). Fed by every engine's KV events;
// bounded: at most `maxBlocks` hashes, least recently stored evicted first.
import { LruMap } from "../../collections/lru-map.js";
import type { KvEvent } from "../../kvevents/events.js";

export const TIER_GPU = 1;
export const TIER_OFFLOAD = 2;

/**
 * Bytes one hash costs in V8 (Map slot, LRU entry, bigint key, per-engine Set slot; an array of its
 * holders when there are several): 130 with one holder, 215 with two (bench/micro/routing-indexes.ts).
 */
export const KV_BYTES_PER_BLOCK = 160;

export interface KvBlockIndexOptions {
  maxBlocks?: number;
  /** credit for a block held only in an offload tier (llm-d: CPU 0.8 of a GPU hit) */
  offloadCredit?: number;
}

/** A hash's holders: one packed holder, or several (never fewer than two in an array). */
type Holders = number | number[];

/** One engine's part of the index: the hashes it holds, and how many in its GPU tier. */
interface EngineBlocks {
  hashes: Set<bigint>;
  gpu: number;
}

export class KvBlockIndex {
  readonly maxBlocks: number;
  readonly offloadCredit: number;
  /**
   * hash → its holders, least recently stored first: one holder as its packed (engineNo << 2 |
   * tierMask), several as an array of them. Most hashes have one holder, and an array for each was
   * an object more per block for the collector to copy and a load more per lookup. An LruMap, not a
   * Map used as the LRU: deleting and re-inserting a hash on every store made each eviction walk past
   * the deleted slots (272 µs per 16-hash event at the cap, against 31; bench/micro/routing-indexes.ts).
   */
  private readonly blocks = new LruMap<bigint, Holders>();
  /** per engine number: its hashes, and how many of them it holds in its GPU tier (in use or free) */
  private readonly byEngine = new Map<number, EngineBlocks>();
  private readonly engineNos = new Map<string, number>();
  private nextNo = 0;
  /** the last walk's leading GPU-tier blocks and its blocks' credit (scratch, read right after walk) */
  private walkGpu = 0;
  private walkCredit = 0;
  /**
   * The holders looked up along the last prompt walked, while the index is unchanged: a decision walks
   * one prompt's hashes once per candidate engine, and where several engines hold its prefix each walk
   * repeated the same lookups of bigint keys in a map of up to a million (the walks were 7-8% of the
   * router's CPU at 500 req/s of 4k-token prompts). Four engines holding a 224-block prefix: 29-35 µs
   * a decision before, 17-18 after. Holds at most the longest prompt's blocks; `changes` counts every
   * change to the index, so nothing read here outlives one.
   */
  private readonly walked: (Holders | undefined)[] = [];
  private walkedOf: ArrayLike<bigint> | null = null;
  private walkedCount = 0;
  private walkedAt = -1;
  private changes = 0;
  evictions = 0;

  constructor(opts: KvBlockIndexOptions = {}) {
    this.maxBlocks = opts.maxBlocks ?? 1_000_000;
    this.offloadCredit = opts.offloadCredit ?? 0.8;
  }

  get size(): number {
    return this.blocks.size;
  }

  approxBytes(): number {
    return this.blocks.size * KV_BYTES_PER_BLOCK;
  }

  capBytes(): number {
    return this.maxBlocks * KV_BYTES_PER_BLOCK;
  }

  /** blocks indexed for one engine in its GPU tier: what its GPU cache holds, in use or cached free */
  gpuBlocksOf(engine: string): number {
    const no = this.engineNos.get(engine);
    return no === undefined ? 0 : (this.byEngine.get(no)?.gpu ?? 0);
  }

  /** blocks indexed for one engine */
  blocksOf(engine: string): number {
    const no = this.engineNos.get(engine);
    return no === undefined ? 0 : (this.byEngine.get(no)?.hashes.size ?? 0);
  }

  private no(engine: string): number {
    let n = this.engineNos.get(engine);
    if (n === undefined) {
      n = this.nextNo++;
      this.engineNos.set(engine, n);
      this.byEngine.set(n, { hashes: new Set(), gpu: 0 });
    }
    return n;
  }

  apply(engine: string, ev: KvEvent): void {
    this.changes++;
    switch (ev.type) {
      case "BlockStored": {
        const tier = ev.medium === null || ev.medium === "GPU" ? TIER_GPU : TIER_OFFLOAD;
        const no = this.no(engine);
        for (const h of ev.blockHashes) this.store(no, h, tier);
        this.evict();
        return;
      }
      case "BlockRemoved": {
        const no = this.engineNos.get(engine);
        if (no === undefined) return;
        const tier = ev.medium === null || ev.medium === "GPU" ? TIER_GPU : TIER_OFFLOAD;
        for (const h of ev.blockHashes) this.remove(no, h, tier);
        return;
      }
      case "AllBlocksCleared":
        this.purge(engine);
        return;
    }
  }

  private store(no: number, h: bigint, tier: number): void {
    const mine = this.byEngine.get(no)!;
    const entry = this.blocks.useEntry(h);
    const packed = (no << 2) | tier;
    if (!entry) {
      this.blocks.set(h, packed);
      if (tier & TIER_GPU) mine.gpu++;
    } else if (typeof entry.value === "number") {
      const held = entry.value;
      if (held >> 2 === no) {
        if (tier & TIER_GPU && !(held & TIER_GPU)) mine.gpu++;
        entry.value = held | tier;
      } else {
        entry.value = [held, packed];
        if (tier & TIER_GPU) mine.gpu++;
      }
    } else {
      const holders = entry.value;
      let found = false;
      for (let i = 0; i < holders.length; i++) {
        if (holders[i]! >> 2 === no) {
          if (tier & TIER_GPU && !(holders[i]! & TIER_GPU)) mine.gpu++;
          holders[i] = holders[i]! | tier;
          found = true;
          break;
        }
      }
      if (!found) {
        // a new array of the exact size: push would grow it to 19 slots
        entry.value = holders.concat(packed);
        if (tier & TIER_GPU) mine.gpu++;
      }
    }
    mine.hashes.add(h);
  }

  private remove(no: number, h: bigint, tier: number): void {
    const entry = this.blocks.entry(h);
    if (!entry) return;
    const value = entry.value;
    const many = typeof value !== "number";
    const count = many ? value.length : 1;
    for (let i = 0; i < count; i++) {
      const held = many ? value[i]! : value;
      if (held >> 2 !== no) continue;
      const mine = this.byEngine.get(no);
      if (mine && tier & TIER_GPU && held & TIER_GPU) mine.gpu--;
      const mask = held & 3 & ~tier;
      if (mask !== 0) {
        if (many) value[i] = (no << 2) | mask;
        else entry.value = (no << 2) | mask;
        return;
      }
      mine?.hashes.delete(h);
      if (!many) this.blocks.delete(h);
      else if (count === 2) entry.value = value[1 - i]!;
      else value.splice(i, 1);
      return;
    }
  }

  private evict(): void {
    while (this.blocks.size > this.maxBlocks) {
      const e = this.blocks.shift()!;
      const value = e.value;
      const count = typeof value === "number" ? 1 : value.length;
      for (let i = 0; i < count; i++) {
        const p = typeof value === "number" ? value : value[i]!;
        const holder = this.byEngine.get(p >> 2);
        if (!holder) continue;
        holder.hashes.delete(e.key);
        if (p & TIER_GPU) holder.gpu--;
      }
      this.evictions++;
    }
  }

  /** Forgets everything about an engine (cache reset, restart, lost events, removal). */
  purge(engine: string): number {
    this.changes++;
    const no = this.engineNos.get(engine);
    if (no === undefined) return 0;
    const mine = this.byEngine.get(no)!;
    const n = mine.hashes.size;
    for (const h of mine.hashes) {
      const entry = this.blocks.entry(h);
      if (!entry) continue;
      const value = entry.value;
      if (typeof value === "number") {
        if (value >> 2 === no) this.blocks.delete(h);
        continue;
      }
      const i = value.findIndex((p) => p >> 2 === no);
      if (i < 0) continue;
      if (value.length === 2) entry.value = value[1 - i]!;
      else value.splice(i, 1);
    }
    mine.hashes.clear();
    mine.gpu = 0;
    return n;
  }

  /** Drops the engine's number too (it left the fleet). */
  forget(engine: string): void {
    this.purge(engine);
    const no = this.engineNos.get(engine);
    if (no === undefined) return;
    this.byEngine.delete(no);
    this.engineNos.delete(engine);
  }

  /**
   * Longest cached prefix of `hashes` on `engine`: the leading blocks held in some tier, and their
   * credit (1 per GPU block, `offloadCredit` per block held only in an offload tier).
   */
  match(hashes: readonly bigint[], engine: string): { blocks: number; credit: number } {
    const no = this.engineNos.get(engine);
    if (no === undefined) return { blocks: 0, credit: 0 };
    const blocks = this.walk(hashes, no);
    return { blocks, credit: this.walkCredit };
  }

  /**
   * Longest cached prefix of `hashes` on `engine` by tier: `gpu` leading blocks in its GPU tier, and
   * `any` leading blocks held in some tier (the GPU's, then its offload tier's beyond them): what vLLM
   * finds in HBM, and what its offloading connector loads after that.
   */
  matchTiers(hashes: ArrayLike<bigint>, engine: string): { gpu: number; any: number } {
    const no = this.engineNos.get(engine);
    if (no === undefined) return { gpu: 0, any: 0 };
    const any = this.walk(hashes, no);
    return { gpu: this.walkGpu, any };
  }

  /**
   * The one walk both matches read: the leading blocks of `hashes` engine number `no` holds in some
   * tier, returned; how many of them lead on its GPU tier and what they are credited left in walkGpu
   * and walkCredit, so that a match allocates nothing beyond its answer.
   */
  private walk(hashes: ArrayLike<bigint>, no: number): number {
    if (hashes !== this.walkedOf || this.walkedAt !== this.changes) {
      this.walkedOf = hashes;
      this.walkedAt = this.changes;
      this.walkedCount = 0;
    }
    const walked = this.walked;
    let credit = 0;
    let gpu = 0;
    let onGpu = true;
    let k = 0;
    for (; k < hashes.length; k++) {
      let holders: Holders | undefined;
      if (k < this.walkedCount) holders = walked[k];
      else {
        holders = this.blocks.get(hashes[k]!);
        walked[k] = holders;
        this.walkedCount = k + 1;
      }
      if (holders === undefined) break;
      let mask = 0;
      if (typeof holders === "number") {
        if (holders >> 2 === no) mask = holders & 3;
      } else for (const p of holders) if (p >> 2 === no) mask = p & 3;
      if (mask === 0) break;
      if (mask & TIER_GPU) {
        credit += 1;
        if (onGpu) gpu++;
      } else {
        credit += this.offloadCredit;
        onGpu = false;
      }
    }
    this.walkGpu = gpu;
    this.walkCredit = credit;
    return k;
  }

  /** every hash held for an engine (tests) */
  hashesOf(engine: string): bigint[] {
    const no = this.engineNos.get(engine);
    return no === undefined ? [] : [...(this.byEngine.get(no)?.hashes ?? [])];
  }
}
