// A prompt's block hashes as each engine makes them, so the router can look them up in its KV-event
// index: per engine and block size the hash scheme of its release (seed, extra-key form) and cache
// config (hash unit), the GPU blocks' and offload blocks' hashes, and a shared tier's LMCache chunk
// hashes; long prompts hashed ahead of their decision in slices, one per turn of the event loop.
import { computeBlockHashes, type BlockHashOptions } from "../../protocol/block-hashing.js";
import {
  engineHashSeed,
  extraKeyStyleFor,
  PINNED_HASH_SEED,
  type ExtraKeyStyle,
} from "../../protocol/vllm-releases.js";
import { nextTurn, waitingSlices, type Cancellable } from "../../eventloop/turns.js";
import type { RequestView } from "../../routing/index.js";
import { chunkHashes, chunkHashesInto } from "../../protocol/lmcache-chunks.js";
import { BlockHashMemo } from "./hash-memo.js";

/** engines remembered per configuration by the per-engine memos (a fleet larger than this starts them over) */
export const MAX_ENGINE_MEMOS = 4096;

/**
 * Blocks hashed per turn of the event loop ahead of a decision: 1,024 blocks of 16 tokens cost 2.3–3 ms
 * of sha256 over CBOR on a quiet 2-core host. A prompt of at most this many blocks (16k tokens) is
 * hashed inside the decision, in one piece: slices of 256 blocks cost the prompts of
 * bench/routing/compare.ts (9–16k tokens) 5–7% of their TTFT p50 (each slice waits a turn), so only
 * prompts whose hashing would hold the loop far longer (128k tokens: 18 ms in one piece) are sliced.
 */
export const HASH_SLICE_BLOCKS = 1024;
/**
 * Slices that keep the request's place in the line (oldest work first): 8 × 1,024 blocks, 128k tokens
 * at 16 per block; the rest of a larger prompt re-enters the line as new work, as the tokenizer's does
 */
const HASH_OLDEST_FIRST_SLICES = 8;
/** prompt tokens per slice of a shared tier's LMCache chunk hashes: as many as a slice of blocks holds */
export const CHUNK_SLICE_TOKENS = HASH_SLICE_BLOCKS * 16;

/**
 * How one engine's block hashes are made, so a prompt is hashed as that engine hashes it: its block
 * size, the token unit vLLM hashes in (its hash_block_size: the block size, or a divisor of it on
 * hybrid models, where a block's hash is the chained hash at its end), and the NONE_HASH seed and
 * extra-key form of its release (vllm-releases.ts).
 */
export interface HashScheme {
  blockSize: number;
  unit: number;
  seed: string;
  style: ExtraKeyStyle;
  /** what a prompt's hashes under this scheme are kept by */
  key: string;
  /** what it was made from: the engine's /version and its cache_config_info labels */
  version: string | undefined;
  cacheConfig: Record<string, string> | undefined;
}

/** A prompt's token ids: as the tokenizer gave them, or as the prompt thread sent them */
export type PromptTokens = readonly number[] | Int32Array;

/** A request's prompt as the cache oracle keeps it for its decision. */
export interface PreparedPrompt {
  model: string;
  tokens: PromptTokens | null;
  /** hash scheme key → hashes of the blocks an engine could report as hits */
  hashes: Map<string, ArrayLike<bigint>>;
  /** chunk size → the prompt's LMCache chunk hashes (a shared tier's keys) */
  chunks?: Map<number, BigUint64Array>;
  /** the last prediction's tier figures, by engine id (the route note) */
  tier?: { ids: readonly string[]; tokens: Float64Array; seconds: Float64Array };
}

/** An engine as its hash scheme is made for it: its URL and the vLLM version it reported. */
export interface HashedEngine {
  url: string;
  version: string | undefined;
}

export class PromptHasher {
  /**
   * per engine and block size: the hash scheme made for it, remade when what it is made of changes
   * (the engine's version or cache config; every scheme is dropped when the configured seed changes)
   */
  private readonly schemes = new Map<string, Map<number, HashScheme>>();
  /**
   * served model → the adapter it names (name and path, as /v1/models says), or null for a base
   * model; cleared with the router's tokenizers at their cap (cache-routing.ts), so bounded as they are
   */
  readonly loraOf = new Map<string, { name: string; path: string | null } | null>();
  /** the engines' PYTHONHASHSEED as configured (routing.hashSeed, else $PYTHONHASHSEED); undefined: unset */
  private hashSeed: string | undefined;
  /** shared prefixes' block hashes, so a prompt is hashed only past what it shares with earlier ones */
  readonly memo = new BlockHashMemo();

  constructor(
    /** an engine's cache_config_info labels, as its last scrape read them */
    private readonly cacheConfigOf: (url: string) => Record<string, string> | undefined,
    /** the engines followed, for the seed of a shared tier */
    private readonly engines: () => Iterable<HashedEngine>,
  ) {}

  /** A new configured seed: every scheme is made again. */
  setHashSeed(seed: string | undefined): void {
    this.hashSeed = seed;
    this.schemes.clear();
  }

  /**
   * The hash scheme of a KV-routed engine for blocks of `blockSize` tokens: its release (from its
   * /version) decides the default seed and the extra-key form, its cache_config_info's hash_block_size
   * the unit where that divides the block size.
   */
  schemeOf(st: HashedEngine, blockSize: number): HashScheme {
    const cacheConfig = this.cacheConfigOf(st.url);
    let byEngine = this.schemes.get(st.url);
    const known = byEngine?.get(blockSize);
    // per request and engine: what it is made of is compared, the version not parsed again
    if (known && known.version === st.version && known.cacheConfig === cacheConfig) return known;
    const version = st.version ?? "";
    const seed = engineHashSeed(version, this.hashSeed);
    const style = extraKeyStyleFor(version);
    const unit = hashUnitOf(cacheConfig, blockSize);
    const scheme: HashScheme = {
      blockSize,
      unit,
      seed,
      style,
      key: `${blockSize}/${unit}/${style}/${seed}`,
      version: st.version,
      cacheConfig,
    };
    if (!byEngine) {
      if (this.schemes.size >= MAX_ENGINE_MEMOS) this.schemes.clear();
      byEngine = new Map();
      this.schemes.set(st.url, byEngine);
    }
    // a GPU block size and an offload tier's: two at most, but a cap all the same
    if (byEngine.size >= 4) byEngine.clear();
    byEngine.set(blockSize, scheme);
    return scheme;
  }

  /**
   * The seed of a shared tier's LMCache chunk hashes: LMCache chains from its engines' NONE_HASH, so
   * the configured seed, else what the engines' release defaults to (the first engine whose version
   * is known; a fleet mixing releases across 0.29 must set one), else the pinned seed.
   */
  sharedTierSeed(): string {
    if (this.hashSeed !== undefined) return this.hashSeed;
    for (const st of this.engines())
      if (st.version !== undefined && st.version !== "unknown") return engineHashSeed(st.version, undefined);
    return PINNED_HASH_SEED;
  }

  hashOptions(req: RequestView, s: HashScheme): BlockHashOptions {
    const salt = req.body?.cache_salt;
    const lora = this.loraOf.get(req.model) ?? null;
    return {
      blockSize: s.unit,
      hashSeed: s.seed,
      extraKeyStyle: s.style,
      loraName: lora?.name ?? null,
      loraPath: lora?.path ?? null,
      cacheSalt: typeof salt === "string" ? salt : null,
    };
  }

  /** the prompt's block hashes under a scheme, made once per request */
  hashesFor(req: RequestView, p: PreparedPrompt, s: HashScheme): ArrayLike<bigint> {
    let h = p.hashes.get(s.key);
    if (!h) {
      const tokens = p.tokens!;
      const units = this.memo.ids(
        tokens,
        hashedBlocks(tokens, s.blockSize) * s.blockSize,
        this.hashOptions(req, s),
      );
      h = blockEnds(units, s);
      p.hashes.set(s.key, h);
    }
    return h;
  }

  /** the prompt's LMCache chunk hashes for chunks of `ct` tokens, made once per request */
  chunksOf(p: PreparedPrompt, ct: number): BigUint64Array {
    p.chunks ??= new Map();
    let hashes = p.chunks.get(ct);
    if (!hashes) {
      const tokens = p.tokens!;
      hashes = chunkHashes(tokens, Math.floor(tokens.length / ct), {
        chunkTokens: ct,
        hashSeed: this.sharedTierSeed(),
      });
      p.chunks.set(ct, hashes);
    }
    return hashes;
  }

  /**
   * Hashes the prompt under each scheme, and its LMCache chunks at each size, one slice per turn of
   * the event loop in the line of sliced work (src/eventloop/turns.ts); stops between slices once
   * `request.cancelled`, rejecting with WorkCancelled.
   */
  async hashInSlices(
    req: RequestView,
    p: PreparedPrompt,
    tokens: PromptTokens,
    schemes: readonly HashScheme[],
    chunkSizes: readonly number[],
    since: number,
    request: Cancellable,
  ): Promise<void> {
    // a hash seed reloaded meanwhile leaves this request's hashes on the old seed: it misses, once
    let slices = 0;
    const turn = async () => {
      if (slices > 0 || waitingSlices() > 0) {
        // as the tokenizer does: past its first slices a huge prompt takes turns with newer work
        await nextTurn(slices < HASH_OLDEST_FIRST_SLICES ? since : performance.now(), request);
      }
      slices++;
    };
    for (const s of schemes) {
      if (p.hashes.has(s.key)) continue;
      const bs = s.unit;
      const blocks = (hashedBlocks(tokens, s.blockSize) * s.blockSize) / bs;
      const opts = this.hashOptions(req, s);
      const ids: bigint[] = new Array(blocks);
      let parent: Uint8Array | null = null;
      // a slice is so many tokens, whatever the block size (the time goes per token)
      const step = Math.max(1, Math.floor(CHUNK_SLICE_TOKENS / bs));
      for (let b = 0; b < blocks; b += step) {
        await turn();
        const end = Math.min(blocks, b + step);
        const h = computeBlockHashes(tokens.slice(b * bs, end * bs), opts, parent, b);
        for (let i = 0; i < h.ids.length; i++) ids[b + i] = h.ids[i]!;
        parent = h.digests[h.digests.length - 1]!;
      }
      p.hashes.set(s.key, blockEnds(ids, s));
    }
    for (const ct of chunkSizes) {
      if (p.chunks?.has(ct)) continue;
      const scheme = { chunkTokens: ct, hashSeed: this.sharedTierSeed() };
      const out = new BigUint64Array(Math.floor(tokens.length / ct));
      const step = Math.max(1, Math.floor(CHUNK_SLICE_TOKENS / ct));
      for (let c = 0; c < out.length; c += step) {
        await turn();
        chunkHashesInto(tokens, out, c, Math.min(out.length, c + step), scheme);
      }
      (p.chunks ??= new Map()).set(ct, out);
    }
  }
}

/**
 * The hash unit vLLM 0.32 publishes in cache_config_info's hash_block_size where it is not the block
 * size ("None" on a plain engine): a divisor of the block size, else the block size.
 */
export function hashUnitOf(cacheConfig: Record<string, string> | undefined, blockSize: number): number {
  const unit = Number(cacheConfig?.hash_block_size);
  return Number.isInteger(unit) && unit > 0 && unit < blockSize && blockSize % unit === 0 ? unit : blockSize;
}

/**
 * A block's hash from the hashes of its units: the chained hash at the block's end
 * (vLLM's BlockHashListWithBlockSize); the units' own list where they are the blocks.
 */
export function blockEnds(units: bigint[], s: Pick<HashScheme, "blockSize" | "unit">): bigint[] {
  if (s.unit === s.blockSize) return units;
  const ratio = s.blockSize / s.unit;
  const out: bigint[] = new Array(Math.floor(units.length / ratio));
  for (let k = 0; k < out.length; k++) out[k] = units[(k + 1) * ratio - 1]!;
  return out;
}

/** the full blocks of a prompt an engine can report as hits: vLLM always computes the last token */
export function hashedBlocks(tokens: ArrayLike<number>, blockSize: number): number {
  return Math.floor(Math.max(0, tokens.length - 1) / blockSize);
}
