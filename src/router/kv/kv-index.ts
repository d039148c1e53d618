// The KV-event index of every engine, one KvBlockIndex per KV-cache group. vLLM ≥ 0.20 tags each event
// with the group it concerns (`group_idx`): a hybrid-attention model keeps a full-attention group and,
// say, a sliding-window group whose blocks come and go on their own, with the same block hashes. Kept in
// one index, a sliding-window eviction would erase the full-attention block of the same hash.
//
// A prefix hit needs the block in every full-attention group (vLLM's hybrid manager requires each
// group to hit). Sliding-window and Mamba groups need only their last window before the hit point,
// which the router does not model, so they do not shorten a predicted hit. Groups are full attention
// when the engine says so (`kv_cache_spec_kind`, vLLM ≥ 0.22); without that, group 0 stands for the
// engine (single-group models send group 0, older engines send no group at all).
import type { KvEvent } from "../../kvevents/events.js";
import { KvBlockIndex, type KvBlockIndexOptions } from "./block-index.js";

/** Groups indexed per router; events of higher groups are counted and dropped. */
export const MAX_KV_GROUPS = 8;

/** vLLM's KVCacheSpecKind values whose group must hold every block of a prefix. */
const FULL_ATTENTION_KINDS = new Set(["full_attention", "mla_attention", "sink_full_attention"]);

export class KvIndex {
  private readonly groups: (KvBlockIndex | undefined)[] = [];
  /** engine → the groups it announced as full attention */
  private readonly gating = new Map<string, Set<number>>();
  /** events dropped because their group was beyond MAX_KV_GROUPS */
  droppedGroupEvents = 0;
  /** engine → its offload events' block size (LMCache's MP server's chunks; one entry per engine) */
  private readonly offloadBlock = new Map<string, number>();

  constructor(private readonly opts: KvBlockIndexOptions = {}) {
    this.groups[0] = new KvBlockIndex(opts);
  }

  private group(g: number): KvBlockIndex | undefined {
    if (!Number.isInteger(g) || g < 0 || g >= MAX_KV_GROUPS) return undefined;
    return (this.groups[g] ??= new KvBlockIndex(this.opts));
  }

  /** group 0 alone when the engine never said which groups are full attention */
  private gatingGroups(engine: string): Iterable<number> {
    const s = this.gating.get(engine);
    return s && s.size > 0 ? s : [0];
  }

  apply(engine: string, ev: KvEvent): void {
    if (ev.type === "AllBlocksCleared") {
      this.purge(engine);
      return;
    }
    const g = ev.groupIdx ?? 0;
    const idx = this.group(g);
    if (!idx) {
      this.droppedGroupEvents++;
      return;
    }
    // "CPU": vLLM's native offload, LMCache's MP server (in-process LMCache's "cpu" is hashed its own way)
    if (ev.type === "BlockStored" && ev.medium === "CPU" && ev.blockSize > 0)
      this.offloadBlock.set(engine, ev.blockSize);
    if (ev.type === "BlockStored" && ev.kvCacheSpecKind !== undefined) {
      let s = this.gating.get(engine);
      if (FULL_ATTENTION_KINDS.has(ev.kvCacheSpecKind)) {
        if (!s) this.gating.set(engine, (s = new Set()));
        s.add(g);
      } else s?.delete(g);
    }
    idx.apply(engine, ev);
  }

  /** Longest cached prefix on `engine`: the shortest over its full-attention groups. */
  match(hashes: ArrayLike<bigint>, engine: string): { blocks: number; credit: number } {
    let best: { blocks: number; credit: number } | null = null;
    for (const g of this.gatingGroups(engine)) {
      const m = this.groups[g]?.match(hashes, engine) ?? { blocks: 0, credit: 0 };
      if (!best || m.credit < best.credit) best = m;
    }
    return best ?? { blocks: 0, credit: 0 };
  }

  /** Longest cached prefix on `engine` by tier (KvBlockIndex.matchTiers): the shortest over its full-attention groups. */
  matchTiers(hashes: ArrayLike<bigint>, engine: string): { gpu: number; any: number } {
    let gpu = Infinity;
    let any = Infinity;
    for (const g of this.gatingGroups(engine)) {
      const m = this.groups[g]?.matchTiers(hashes, engine) ?? { gpu: 0, any: 0 };
      gpu = Math.min(gpu, m.gpu);
      any = Math.min(any, m.any);
    }
    return Number.isFinite(any) ? { gpu, any } : { gpu: 0, any: 0 };
  }

  /** Forgets what an engine holds (cache reset, restart, lost events, ejection). */
  purge(engine: string): number {
    let n = 0;
    for (const idx of this.groups) n += idx?.purge(engine) ?? 0;
    return n;
  }

  /** The engine left the fleet. */
  forget(engine: string): void {
    for (const idx of this.groups) idx?.forget(engine);
    this.gating.delete(engine);
    this.offloadBlock.delete(engine);
  }

  /** the block size of the engine's offload tier's last stored blocks; undefined: none seen */
  offloadBlockSize(engine: string): number | undefined {
    return this.offloadBlock.get(engine);
  }

  /** blocks indexed for one engine, over every group */
  blocksOf(engine: string): number {
    let n = 0;
    for (const idx of this.groups) n += idx?.blocksOf(engine) ?? 0;
    return n;
  }

  /**
   * blocks the engine's GPU cache holds, as its events tell: in its first full-attention group (every
   * such group holds a prefix's blocks alike; group 0 when it never said)
   */
  gpuBlocksOf(engine: string): number {
    const [g = 0] = this.gatingGroups(engine);
    return this.groups[g]?.gpuBlocksOf(engine) ?? 0;
  }

  /** blocks indexed for one engine in one group */
  blocksIn(group: number, engine: string): number {
    return this.groups[group]?.blocksOf(engine) ?? 0;
  }

  get size(): number {
    let n = 0;
    for (const idx of this.groups) n += idx?.size ?? 0;
    return n;
  }

  approxBytes(): number {
    let n = 0;
    for (const idx of this.groups) n += idx?.approxBytes() ?? 0;
    return n;
  }

  /** every group in use may reach its cap */
  capBytes(): number {
    let n = 0;
    for (const idx of this.groups) n += idx?.capBytes() ?? 0;
    return n;
  }

  /** every hash held for an engine in a group (tests) */
  hashesOf(engine: string, group = 0): bigint[] {
    return this.groups[group]?.hashesOf(engine) ?? [];
  }
}
