// vLLM's prefix-cache block hashes with --prefix-caching-hash-algo sha256_cbor (vLLM >= 0.11):
//   NONE_HASH = sha256(cbor(PYTHONHASHSEED as text))
//   h_i = sha256(cbor([parent_32_bytes, [token ids of block i], extra_keys]))
// extra_keys is null unless the request has a LoRA adapter and/or (on block 0 only) a cache salt, in
// that order: bare values up to vLLM 0.30, tuples tagged by source since 0.31 (`("lora", name, path)`,
// `("cache_salt", salt)`: vllm-releases.ts). The uint64 form published in KV events is the digest's
// low 64 bits read big-endian. The router hashes every prompt with this too, so the hot path reuses
// one scratch buffer per call.
import { hash as oneShotHash } from "node:crypto";
import { CBOR_NULL, textSize, writeArrayHead, writeBytes, writeHead, writeText, writeUint } from "./cbor.js";
import type { ExtraKeyStyle } from "./vllm-releases.js";

export interface BlockHashOptions {
  blockSize: number;
  hashSeed: string;
  cacheSalt?: string | null;
  loraName?: string | null;
  /** the adapter's path as the engine loaded it (the tagged form hashes it with the name) */
  loraPath?: string | null;
  /** the engine release's extra-key form (default untagged, vLLM <= 0.30) */
  extraKeyStyle?: ExtraKeyStyle;
}

/** One extra key: a bare value (vLLM <= 0.30) or a tuple tagged by its source (vLLM >= 0.31). */
export type ExtraKey = string | readonly string[];
export type ExtraKeys = readonly ExtraKey[] | null;

export interface BlockHashes {
  /** the 32-byte sha256 digests, one per full block, in chain order */
  digests: Buffer[];
  /** the uint64 KV-event form of each digest */
  ids: bigint[];
}

const noneHashCache = new Map<string, Buffer>();
const NONE_HASH_CACHE_CAP = 64;

/** NONE_HASH for a seed: the parent of block 0. Cached (a handful of seeds per process at most). */
export function noneHash(seed: string): Buffer {
  let h = noneHashCache.get(seed);
  if (h) return h;
  const buf = Buffer.alloc(textSize(seed));
  const len = writeText(buf, 0, seed);
  h = sha256(buf.subarray(0, len));
  if (noneHashCache.size >= NONE_HASH_CACHE_CAP) noneHashCache.clear();
  noneHashCache.set(seed, h);
  return h;
}

/** The uint64 id of a digest (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1). */
export function digestToId(digest: Uint8Array): bigint {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).readBigUInt64BE(24);
}

function scratchSize(numTokens: number, extraKeys: ExtraKeys): number {
  let n = 1 + 2 + 32 + 9 + numTokens * 9 + 1;
  if (extraKeys)
    for (const k of extraKeys) {
      if (typeof k === "string") n += textSize(k);
      else for (const part of k) n += 9 + textSize(part);
    }
  return n + 9;
}

function encodeBlock(
  buf: Buffer,
  parent: Uint8Array,
  tokens: ArrayLike<number>,
  start: number,
  end: number,
  extraKeys: ExtraKeys,
): number {
  let off = writeArrayHead(buf, 0, 3);
  off = writeBytes(buf, off, parent);
  off = writeArrayHead(buf, off, end - start);
  for (let i = start; i < end; i++) {
    const t = tokens[i]!;
    // token ids are small non-negative ints: skip the generic checks for the common cases
    if (t >= 0 && t < 0x10000 && (t | 0) === t) off = writeHead(buf, off, 0, t);
    else off = writeUint(buf, off, t);
  }
  if (extraKeys === null) {
    buf[off++] = CBOR_NULL;
  } else {
    off = writeArrayHead(buf, off, extraKeys.length);
    for (const k of extraKeys) {
      if (typeof k === "string") off = writeText(buf, off, k);
      else {
        off = writeArrayHead(buf, off, k.length);
        for (const part of k) off = writeText(buf, off, part);
      }
    }
  }
  return off;
}

/** One block's digest: sha256_cbor((parent, tokens, extraKeys)). */
export function hashBlockTokens(
  parent32: Uint8Array,
  tokens: ArrayLike<number>,
  extraKeys: ExtraKeys = null,
): Buffer {
  const buf = Buffer.allocUnsafe(scratchSize(tokens.length, extraKeys));
  const len = encodeBlock(buf, parent32, tokens, 0, tokens.length, extraKeys);
  return sha256(buf.subarray(0, len));
}

/**
 * vLLM's extra_keys for a block: (LoRA adapter?, cache_salt if block 0), or null when empty. Untagged
 * (vLLM <= 0.30): the bare name and salt. Tagged (vLLM >= 0.31, `generate_block_hash_extra_keys`):
 * `("lora", name, path)` and `("cache_salt", salt)`; an adapter whose path is unknown is hashed with
 * an empty path, which matches no engine (its blocks are simply not found).
 */
export function extraKeysFor(
  blockIndex: number,
  loraName: string | null | undefined,
  cacheSalt: string | null | undefined,
  style: ExtraKeyStyle = "untagged",
  loraPath: string | null | undefined = null,
): ExtraKey[] | null {
  const keys: ExtraKey[] = [];
  const salted = blockIndex === 0 && cacheSalt;
  if (style === "untagged") {
    if (loraName) keys.push(loraName);
    if (salted) keys.push(cacheSalt);
  } else {
    if (loraName) keys.push(["lora", loraName, loraPath ?? ""]);
    if (salted) keys.push(["cache_salt", cacheSalt]);
  }
  return keys.length > 0 ? keys : null;
}

/**
 * The untagged per-block values a KV event's `extra_keys` carries, in every release
 * (`to_event_extra_keys`): the tagged tuples' values without their tags.
 */
export function eventExtraKeys(keys: ExtraKeys): string[] | null {
  if (!keys) return null;
  return keys.map((k) => (typeof k === "string" ? k : k[1]!));
}

/**
 * Hashes the full blocks of `tokenIds` (a trailing partial block is not hashed), chaining from
 * `parent` (NONE_HASH by default) and starting at block index `firstBlock` (for extra keys).
 */
export function computeBlockHashes(
  tokenIds: ArrayLike<number>,
  opts: BlockHashOptions,
  parent: Uint8Array | null = null,
  firstBlock = 0,
  startToken = 0,
): BlockHashes {
  const bs = opts.blockSize;
  if (!Number.isInteger(bs) || bs <= 0)
    throw new RangeError(`blockSize must be a positive integer, got ${bs}`);
  const numBlocks = Math.floor((tokenIds.length - startToken) / bs);
  const digests: Buffer[] = new Array(numBlocks);
  const ids: bigint[] = new Array(numBlocks);
  if (numBlocks === 0) return { digests: [], ids: [] };
  const lora = opts.loraName ?? null;
  const salt = opts.cacheSalt ?? null;
  const style = opts.extraKeyStyle ?? "untagged";
  const path = opts.loraPath ?? null;
  const plainKeys = extraKeysFor(1, lora, salt, style, path);
  const firstKeys = extraKeysFor(0, lora, salt, style, path);
  const buf = Buffer.allocUnsafe(scratchSize(bs, firstKeys ?? plainKeys));
  let prev: Uint8Array = parent ?? noneHash(opts.hashSeed);
  for (let b = 0; b < numBlocks; b++) {
    const start = startToken + b * bs;
    const keys = firstBlock + b === 0 ? firstKeys : plainKeys;
    const len = encodeBlock(buf, prev, tokenIds, start, start + bs, keys);
    const d = sha256(buf.subarray(0, len));
    digests[b] = d;
    ids[b] = d.readBigUInt64BE(24);
    prev = d;
  }
  return { digests, ids };
}

/**
 * A non-cryptographic block hash for virtual-time fleets, where nobody reads KV-event ids: two 32-bit
 * multiplicative lanes over (parent, tokens, extra keys), written where a sha256 digest keeps the id
 * (bytes 24..31), so the engine chains and caches exactly as with sha256_cbor at a fraction of the cost.
 */
export function fastBlockHash(
  parent: Uint8Array,
  tokens: ArrayLike<number>,
  start: number,
  end: number,
  extraKeys: ExtraKeys,
): Buffer {
  const p = parent.length;
  let a =
    (parent[p - 1]! | (parent[p - 2]! << 8) | (parent[p - 3]! << 16) | (parent[p - 4]! << 24)) ^ 0x811c9dc5;
  let b =
    (parent[p - 5]! | (parent[p - 6]! << 8) | (parent[p - 7]! << 16) | (parent[p - 8]! << 24)) ^ 0x9e3779b9;
  for (let i = start; i < end; i++) {
    const t = tokens[i]!;
    a = Math.imul(a ^ t, 0x01000193);
    b = Math.imul(b ^ t, 0x85ebca6b);
    b ^= b >>> 13;
  }
  if (extraKeys) {
    for (const key of extraKeys) {
      for (const k of typeof key === "string" ? [key] : key) {
        for (let i = 0; i < k.length; i++) {
          a = Math.imul(a ^ k.charCodeAt(i), 0x01000193);
          b = Math.imul(b ^ k.charCodeAt(i), 0x85ebca6b);
        }
        a = Math.imul(a ^ 0xff, 0x01000193);
      }
      // a tuple ends apart from its parts, so ("a","b") and "a","b" differ; bare keys hash as before
      if (typeof key !== "string") a = Math.imul(a ^ 0xfe, 0x01000193);
    }
  }
  b = Math.imul(b ^ (b >>> 16), 0xc2b2ae35);
  const d = Buffer.allocUnsafe(32);
  d.writeUInt32BE(b >>> 0, 24);
  d.writeUInt32BE(a >>> 0, 28);
  return d;
}

/** Hashes single blocks into a reused scratch buffer: the engine's per-block path when a block fills. */
export class BlockHasher {
  private buf: Buffer;
  constructor(
    blockSize: number,
    private readonly fast = false,
  ) {
    this.buf = Buffer.allocUnsafe(scratchSize(blockSize, null) + 256);
  }
  hash(
    parent: Uint8Array,
    tokens: ArrayLike<number>,
    start: number,
    end: number,
    extraKeys: ExtraKeys,
  ): Buffer {
    if (this.fast) return fastBlockHash(parent, tokens, start, end, extraKeys);
    const need = scratchSize(end - start, extraKeys);
    if (this.buf.length < need) this.buf = Buffer.allocUnsafe(need);
    const len = encodeBlock(this.buf, parent, tokens, start, end, extraKeys);
    return sha256(this.buf.subarray(0, len));
  }
}

/**
 * sha256 in one call (crypto.hash, Node 21.7+): about a third cheaper a block than a Hash object
 * (0.85 against 1.25 µs for a 100-byte block), the same digest
 */
export function sha256(data: Uint8Array): Buffer {
  return oneShotHash("sha256", data, "buffer");
}
