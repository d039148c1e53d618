// Block hashes of shared prefixes remembered, so a prompt that starts like an earlier one is hashed
// only past the part they share. Exact KV routing hashes every prompt's blocks with sha256 over CBOR
// (as vLLM does), and prompts share most of their blocks (system prompts, few-shot preambles, a
// conversation's history): at 500 req/s of 4k-token prompts that was the router's largest single cost.
// A block's hash is a function of its parent's hash, its tokens and the hash options (seed, extra-key
// form, adapter, salt, and whether it is the first block), so a remembered hash is reused only where
// all of them are the same: the parent is the very link reused or made for the block before (by serial
// number), the tokens are compared one by one, and the options by an id per distinct option set. The
// hashes are the ones computeBlockHashes gives, bit for bit; a lookup key that collides only costs a
// recompute.
import { Doorkeeper } from "../../collections/doorkeeper.js";
import { LruMap } from "../../collections/lru-map.js";
import { computeBlockHashes, type BlockHashOptions } from "../../protocol/block-hashing.js";

/**
 * Blocks remembered, the least recently used dropped first (a prompt's unique tail must not push out
 * the prefixes that every prompt reuses): a link holds a block's tokens, its digest and its id,
 * about 300 bytes with the map's share, so 65,536 links are about 20 MB, one million tokens of
 * prefixes at 16 tokens a block.
 */
export const HASH_MEMO_BLOCKS = 65_536;
/** distinct option sets given ids (per-request cache salts make many): forgotten beyond this, never reused */
const MAX_OPTION_SETS = 4096;

interface Link {
  serial: number;
  /** the serial of the block before it, 0 for a first block */
  parent: number;
  opts: number;
  tokens: number[];
  digest: Uint8Array;
  id: bigint;
}

/**
 * Blocks a span holds: a prompt's whole runs of this many blocks (from block 0) are remembered as one
 * entry too, so that a shared prefix of 225 blocks takes 14 lookups and one block's, not 225: each
 * lookup in a memo of 65,536 links is a cache miss or three, about 1 µs on a busy host.
 */
const SPAN_BLOCKS = 16;

/** SPAN_BLOCKS blocks as one: their tokens, their ids, the block before them and their last block */
interface Span {
  /** the serial of the link before the span, 0 for a span that starts the prompt */
  parent: number;
  opts: number;
  /** as int32 (a span with a token id an Int32Array cannot hold is not remembered) */
  tokens: Int32Array;
  ids: bigint[];
  last: Link;
}

export interface HashMemoStats {
  /** blocks whose hash was reused */
  hits: number;
  /** blocks hashed */
  misses: number;
}

export class BlockHashMemo {
  private readonly links = new LruMap<number, Link>();
  private readonly spans = new LruMap<number, Span>();
  /**
   * blocks hashed once: a block is remembered when it is hashed a second time, so a prompt's unique
   * tail, hashed once and never again, is not made links that the LRU drops seconds later
   */
  private readonly door: Doorkeeper;
  private readonly optionIds = new Map<string, number>();
  private nextSerial = 1;
  private nextOption = 1;
  readonly stats: HashMemoStats = { hits: 0, misses: 0 };

  constructor(private readonly cap = HASH_MEMO_BLOCKS) {
    // cleared after twice as many blocks as the memo holds (at 5% false positives)
    this.door = new Doorkeeper(cap * 16);
  }

  get size(): number {
    return this.links.size;
  }

  /** the KV-event ids of the first floor(count / blockSize) blocks of `tokens`, as computeBlockHashes gives them */
  ids(tokens: ArrayLike<number>, count: number, opts: BlockHashOptions): bigint[] {
    const bs = opts.blockSize;
    const blocks = Math.floor(Math.min(count, tokens.length) / bs);
    const out: bigint[] = new Array(blocks);
    if (blocks <= 0) return out;
    const optId = this.optionId(opts);
    const roll = this.roll.start(optId);
    let prev: Link | null = null;
    let b = 0;
    const chain = this.chain;
    chain.length = 0;
    const spanKeys = this.spanKeys;
    spanKeys.length = 0;
    // reuse while the chain is remembered: a span of SPAN_BLOCKS blocks at a time, else block by block
    for (; b < blocks; b++) {
      if (b % SPAN_BLOCKS === 0 && b + SPAN_BLOCKS <= blocks) {
        const s1 = roll.a;
        const s2 = roll.b;
        // a block's key is the rolling key at its end, so a span's is its last block's
        const span = this.spans.use(roll.fold(tokens, b * bs, (b + SPAN_BLOCKS) * bs));
        if (
          span !== undefined &&
          span.opts === optId &&
          span.parent === (prev === null ? 0 : prev.serial) &&
          sameSpan(span.tokens, tokens, b * bs)
        ) {
          for (let j = 0; j < SPAN_BLOCKS; j++) out[b + j] = span.ids[j]!;
          prev = span.last;
          // only its last block's link: the next span is chained to it (rememberSpans)
          chain[b + SPAN_BLOCKS - 1] = span.last;
          this.stats.hits += SPAN_BLOCKS;
          b += SPAN_BLOCKS - 1;
          continue;
        }
        roll.a = s1;
        roll.b = s2;
      }
      const start = b * bs;
      const k = this.blockKey(roll, tokens, b, bs);
      const link = this.links.use(k);
      if (
        link === undefined ||
        link.opts !== optId ||
        link.parent !== (prev === null ? 0 : prev.serial) ||
        !sameTokens(link.tokens, tokens, start)
      )
        break;
      out[b] = link.id;
      prev = link;
      this.stats.hits++;
      chain[b] = link;
    }
    if (b < blocks) {
      // the rest hashed in one go from the last block reused, and remembered
      const end = blocks * bs;
      const rest = computeBlockHashes(
        tokens.length === end ? tokens : Array.prototype.slice.call(tokens, 0, end),
        opts,
        prev === null ? null : prev.digest,
        b,
        b * bs,
      );
      this.stats.misses += rest.ids.length;
      // the first block's key was folded in the loop above, where its link was missed
      let k = key(roll.a, roll.b);
      let admit = true;
      for (let j = 0; j < rest.ids.length; j++, b++) {
        const start = b * bs;
        if (j > 0) k = this.blockKey(roll, tokens, b, bs);
        out[b] = rest.ids[j]!;
        // past a block not remembered, none is (a link is reached only through its parent's)
        admit = this.door.seen(roll.a, roll.b) && admit;
        if (!admit) continue;
        const toks: number[] = new Array<number>(bs);
        for (let i = 0; i < bs; i++) toks[i] = tokens[start + i]!;
        const link: Link = {
          serial: this.nextSerial++,
          parent: prev === null ? 0 : prev.serial,
          opts: optId,
          tokens: toks,
          digest: rest.digests[j]!,
          id: rest.ids[j]!,
        };
        this.links.set(k, link);
        prev = link;
        chain[b] = link;
      }
      while (this.links.size > this.cap) this.links.shift();
    }
    this.rememberSpans(tokens, blocks, optId, bs, out);
    return out;
  }

  /** block `b`'s key, folded on from the block before; a span's last block's kept for rememberSpans */
  private blockKey(roll: RollingKey, tokens: ArrayLike<number>, b: number, bs: number): number {
    const k = roll.fold(tokens, b * bs, (b + 1) * bs);
    if ((b + 1) % SPAN_BLOCKS === 0) this.spanKeys[(b + 1) / SPAN_BLOCKS - 1] = k;
    return k;
  }

  private readonly roll = new RollingKey();
  /**
   * Per-call scratch: each block's link where ids() went block by block (a span found whole has only
   * its last), so that the whole spans it did not find are remembered as spans, under their keys
   */
  private readonly chain: Link[] = [];
  private readonly spanKeys: number[] = [];

  /** the prompt's whole spans that were not found as spans, remembered for the next prompt sharing them */
  private rememberSpans(
    tokens: ArrayLike<number>,
    blocks: number,
    optId: number,
    bs: number,
    out: readonly bigint[],
  ): void {
    const chain = this.chain;
    for (let b = 0; b + SPAN_BLOCKS <= blocks; b += SPAN_BLOCKS) {
      const before = b === 0 ? null : chain[b - 1];
      const last = chain[b + SPAN_BLOCKS - 1];
      // a span found whole (its first block has no link here) is remembered already
      if (chain[b] === undefined || before === undefined || last === undefined) continue;
      const start = b * bs;
      const spanTokens = new Int32Array(SPAN_BLOCKS * bs);
      let int32 = true;
      for (let i = 0; i < spanTokens.length && int32; i++) {
        const t = tokens[start + i]!;
        spanTokens[i] = t;
        int32 = (t | 0) === t;
      }
      if (!int32) continue;
      this.spans.set(this.spanKeys[b / SPAN_BLOCKS]!, {
        parent: before === null ? 0 : before.serial,
        opts: optId,
        tokens: spanTokens,
        ids: out.slice(b, b + SPAN_BLOCKS),
        last,
      });
    }
    // bounded by tokens (as many as the links hold at 16 a block): a memo hashing 256-token offload
    // blocks keeps a sixteenth as many spans, each of 16 KB
    const maxSpans = Math.max(1, Math.floor((this.cap * 16) / (SPAN_BLOCKS * Math.max(16, bs))));
    while (this.spans.size > maxSpans) this.spans.shift();
  }

  private optionId(o: BlockHashOptions): number {
    const k = `${o.blockSize}\u0000${o.hashSeed}\u0000${o.extraKeyStyle ?? "untagged"}\u0000${o.loraName ?? "\u0001"}\u0000${o.loraPath ?? "\u0001"}\u0000${o.cacheSalt ?? "\u0001"}`;
    let id = this.optionIds.get(k);
    if (id === undefined) {
      // ids are never given twice, so a forgotten set's links can never match a new one
      if (this.optionIds.size >= MAX_OPTION_SETS) this.optionIds.clear();
      id = this.nextOption++;
      this.optionIds.set(k, id);
    }
    return id;
  }
}

/**
 * The lookup key of a prompt's prefix so far: two 32-bit lanes folded over its tokens from the option
 * set's id, one fold for links, spans and their keys alike.
 */
class RollingKey {
  a = 0;
  b = 0;

  start(optId: number): this {
    this.a = optId | 0;
    this.b = Math.imul(optId, 0x9e3779b1);
    return this;
  }

  /** folds tokens [from, to) in; the key of the prefix that ends at `to` */
  fold(tokens: ArrayLike<number>, from: number, to: number): number {
    let a = this.a;
    let b = this.b;
    for (let i = from; i < to; i++) {
      const t = tokens[i]!;
      a = Math.imul(a ^ t, 0x01000193);
      b = Math.imul(b + t, 0x5bd1e995);
      b ^= b >>> 15;
    }
    this.a = a;
    this.b = b;
    return key(a, b);
  }
}

/** two 32-bit lanes folded into a small integer (V8 hashes those fastest); a collision only costs a recompute */
function key(k1: number, k2: number): number {
  return (k1 ^ (k2 >>> 7)) & 0x3fffffff;
}

function sameSpan(a: Int32Array, tokens: ArrayLike<number>, start: number): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== tokens[start + i]) return false;
  return true;
}

function sameTokens(a: readonly number[], tokens: ArrayLike<number>, start: number): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== tokens[start + i]) return false;
  return true;
}
