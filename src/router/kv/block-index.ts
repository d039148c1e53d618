// The exact index of the `kv` policy: block hash (vLLM's uint64 KV-event form) → the engines that hold
// the block and in which tiers (GPU, or an offload tier such as CPU). Fed by every engine's KV events;
// bounded: at most `maxBlocks` hashes, least recently stored evicted first.
import { BigIntLruMap } from "../../collections/bigint-lru-map.js";
import type { KvEvent } from "../../kvevents/events.js";

export const TIER_GPU = 1;
export const TIER_OFFLOAD = 2;

/**
 * Bytes one hash costs: its slots in a table kept from a quarter to a half full (two int32 halves, two
 * int32 links, a used byte and a value reference: 21 bytes a slot), and an array of its holders where
 * there are several: 52 with one holder, 117 with two (bench/micro/routing-indexes.ts).
 */
export const KV_BYTES_PER_BLOCK = 80;

/**
 * A purge of a table up to this many slots is one pass (about 2 ms at most); a larger one is spread over
 * turns of the event loop, this many slots a turn (a million hashes fill two to four million slots:
 * 32-66 ms in one pass).
 */
export const PURGE_SLOTS_PER_TURN = 65_536;

export interface KvBlockIndexOptions {
  maxBlocks?: number;
  /** slots a purge's pass takes per turn of the event loop (tests set it small) */
  purgeSlotsPerTurn?: number;
  /** credit for a block held only in an offload tier (llm-d: CPU 0.8 of a GPU hit) */
  offloadCredit?: number;
}

/** A hash's holders: one packed holder (engineNo << 2 | tierMask, never 0), or an array of two or more. */
type Holders = number | number[];

/** engine number `no`'s packed holder among `holders`, 0 when it holds none */
function heldBy(holders: Holders, no: number): number {
  if (typeof holders === "number") return holders >> 2 === no ? holders : 0;
  for (const p of holders) if (p >> 2 === no) return p;
  return 0;
}

/**
 * `holders` with `old` (0: none) replaced by `packed` (0: removed), undefined when none is left; an
 * array changes in place, and a new one is made of the exact size (push grows two slots to nineteen).
 */
function replaced(holders: Holders, old: number, packed: number): Holders | undefined {
  if (typeof holders === "number") {
    if (old === 0) return [holders, packed];
    return packed === 0 ? undefined : packed;
  }
  if (old === 0) return holders.concat(packed);
  const i = holders.indexOf(old);
  if (packed !== 0) holders[i] = packed;
  else if (holders.length === 2) return holders[1 - i];
  else holders.splice(i, 1);
  return holders;
}

/** One engine's part of the index: how many hashes it holds, and how many of them in its GPU tier. */
interface EngineBlocks {
  count: number;
  gpu: number;
}

export class KvBlockIndex {
  readonly maxBlocks: number;
  readonly offloadCredit: number;
  /**
   * hash → its holders, least recently stored first; one holder is kept as a number, as most hashes
   * have one (an array each was one more object per block to collect and to load). A table of typed
   * arrays (BigIntLruMap), not a Map of bigints: at 500 req/s of 4k-token prompts the walk's lookups
   * were a tenth of the router's loop, and the index's entries, bigints and per-engine sets grew the
   * old generation by some 15,000 objects a second for the collector to mark.
   */
  private readonly blocks = new BigIntLruMap<Holders>();
  /** per engine number: how many hashes it holds, and how many in its GPU tier (in use or free) */
  private readonly byEngine = new Map<number, EngineBlocks>();
  private readonly engineNos = new Map<string, number>();
  private nextNo = 0;
  /** the last walk's leading GPU-tier blocks and its blocks' credit (scratch, read right after walk) */
  private walkGpu = 0;
  private walkCredit = 0;
  /**
   * The holders looked up along the last prompt walked, until the index next changes (`changes`): a
   * decision walks a prompt once per engine, and where several hold its prefix each walk repeated
   * the same cold lookups (four engines holding 224 blocks: 29-35 µs a decision, 17-18 with this).
   */
  private readonly walked: (Holders | undefined)[] = [];
  private walkedOf: ArrayLike<bigint> | null = null;
  private walkedCount = 0;
  private walkedAt = -1;
  private changes = 0;
  evictions = 0;
  /**
   * Engine numbers purged while their holders are still being swept out of a large table: no engine
   * answers to them any more (its next event takes a new number), so what is left of them matches
   * nothing, counts for no one and is evicted like any other entry.
   */
  private readonly retired = new Set<number>();
  private readonly purgeSlotsPerTurn: number;
  /** the sweep's next slot, and the table's size when it started (a table that grew starts it again) */
  private sweepAt = 0;
  private sweepSlots = 0;
  private sweepTurn: NodeJS.Immediate | undefined;

  constructor(opts: KvBlockIndexOptions = {}) {
    this.maxBlocks = opts.maxBlocks ?? 1_000_000;
    this.offloadCredit = opts.offloadCredit ?? 0.8;
    this.purgeSlotsPerTurn = Math.max(1, opts.purgeSlotsPerTurn ?? PURGE_SLOTS_PER_TURN);
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
    return no === undefined ? 0 : (this.byEngine.get(no)?.count ?? 0);
  }

  private no(engine: string): number {
    let n = this.engineNos.get(engine);
    if (n === undefined) {
      n = this.nextNo++;
      this.engineNos.set(engine, n);
      this.byEngine.set(n, { count: 0, gpu: 0 });
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
    const blocks = this.blocks;
    const s = blocks.find(h);
    if (s === -1) {
      blocks.add(h, (no << 2) | tier);
      mine.count++;
      if (tier & TIER_GPU) mine.gpu++;
      return;
    }
    const holders = blocks.valueAt(s);
    const held = heldBy(holders, no);
    if (held === 0) mine.count++;
    if (tier & TIER_GPU && !(held & TIER_GPU)) mine.gpu++;
    blocks.setValueAt(s, replaced(holders, held, (no << 2) | tier | (held & 3))!);
    blocks.touch(s);
  }

  private remove(no: number, h: bigint, tier: number): void {
    const s = this.blocks.find(h);
    if (s === -1) return;
    const holders = this.blocks.valueAt(s);
    const held = heldBy(holders, no);
    if (held === 0) return;
    const mine = this.byEngine.get(no);
    if (mine && tier & TIER_GPU && held & TIER_GPU) mine.gpu--;
    const mask = held & 3 & ~tier;
    if (mask === 0 && mine) mine.count--;
    this.keep(s, replaced(holders, held, mask === 0 ? 0 : (no << 2) | mask));
  }

  /** the holders of the hash in slot `s` after a change: none left drops the hash */
  private keep(s: number, rest: Holders | undefined): void {
    if (rest === undefined) this.blocks.removeAt(s);
    else this.blocks.setValueAt(s, rest);
  }

  private evict(): void {
    while (this.blocks.size > this.maxBlocks) {
      const holders = this.blocks.shift()!;
      if (typeof holders === "number") this.evicted(holders);
      else for (const p of holders) this.evicted(p);
      this.evictions++;
    }
  }

  /** the engine of packed holder `p` no longer holds a hash */
  private evicted(p: number): void {
    const holder = this.byEngine.get(p >> 2);
    if (holder) holder.count--;
    if (holder && p & TIER_GPU) holder.gpu--;
  }

  /**
   * Forgets everything about an engine (cache reset, restart, lost events, removal), at once for every
   * answer the index gives. A small table is cleaned in one pass. In a large one the engine's number is
   * retired instead (its next event takes a new one) and its holders are swept out a slice of slots
   * per turn of the event loop: at a million hashes one pass blocked the loop 32-66 ms.
   */
  purge(engine: string): number {
    this.changes++;
    const no = this.engineNos.get(engine);
    if (no === undefined) return 0;
    const mine = this.byEngine.get(no)!;
    const n = mine.count;
    if (n === 0) return 0;
    if (this.blocks.slots <= this.purgeSlotsPerTurn) {
      this.blocks.rewriteValues((holders) => {
        const held = heldBy(holders, no);
        return held === 0 ? holders : replaced(holders, held, 0);
      });
      mine.count = mine.gpu = 0;
      return n;
    }
    this.engineNos.delete(engine);
    this.byEngine.delete(no);
    this.retired.add(no);
    // the pass starts again to cover every number retired so far (a holder dropped twice is dropped once)
    this.sweepAt = 0;
    this.sweepSlots = this.blocks.slots;
    this.sweepTurn ??= setImmediate(this.sweep).unref();
    return n;
  }

  /** one slice of the pass that drops retired holders; the last one lets their numbers go */
  private readonly sweep = (): void => {
    this.sweepTurn = undefined;
    if (this.blocks.slots !== this.sweepSlots) {
      this.sweepAt = 0;
      this.sweepSlots = this.blocks.slots;
    }
    const end = Math.min(this.sweepAt + this.purgeSlotsPerTurn, this.sweepSlots);
    this.blocks.rewriteValuesIn(this.sweepAt, end, this.dropRetired);
    this.sweepAt = end;
    if (end < this.sweepSlots) this.sweepTurn = setImmediate(this.sweep).unref();
    else this.retired.clear();
  };

  /** holders without retired numbers (a new array where one is dropped: the walk may hold the old one) */
  private readonly dropRetired = (holders: Holders): Holders | undefined => {
    const retired = this.retired;
    if (typeof holders === "number") return retired.has(holders >> 2) ? undefined : holders;
    let any = false;
    for (const p of holders) if (retired.has(p >> 2)) any = true;
    if (!any) return holders;
    const kept = holders.filter((p) => !retired.has(p >> 2));
    return kept.length === 0 ? undefined : kept.length === 1 ? kept[0] : kept;
  };

  /** whether a purge's holders are still being swept out of the table (tests) */
  get sweeping(): boolean {
    return this.retired.size > 0;
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
  match(hashes: ArrayLike<bigint>, engine: string): { blocks: number; credit: number } {
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
      const mask = heldBy(holders, no) & 3;
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
    const no = this.engineNos.get(engine) ?? -1;
    const slots = this.blocks.slotsOldestFirst().filter((s) => heldBy(this.blocks.valueAt(s), no) !== 0);
    return slots.map((s) => this.blocks.keyAt(s));
  }
}
