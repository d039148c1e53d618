// vLLM's prefix-cache block hashes with --prefix-caching-hash-algo sha256_cbor (vLLM >= 0.11):
//   NONE_HASH = sha256(cbor(PYTHONHASHSEED as text))
//   h_i = sha256(cbor([parent_32_bytes, [token ids of block i], extra_keys]))
// extra_keys is null unless the request has a LoRA adapter name and/or (on block 0 only) a cache salt, in
// that order. The uint64 form published in KV events is the digest's low 64 bits read big-endian.
// The router hashes every prompt with this too, so the hot path reuses one scratch buffer per call.
import { createHash } from "node:crypto";
import { CBOR_NULL, textSize, writeArrayHead, writeBytes, writeHead, writeText, writeUint } from "./cbor.js";

export interface BlockHashOptions {
  blockSize: number;
  hashSeed: string;
  cacheSalt?: string | null;
  loraName?: string | null;
}

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
  h = createHash("sha256").update(buf.subarray(0, len)).digest();
  if (noneHashCache.size >= NONE_HASH_CACHE_CAP) noneHashCache.clear();
  noneHashCache.set(seed, h);
  return h;
}

/** The uint64 id of a digest (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1). */
export function digestToId(digest: Uint8Array): bigint {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).readBigUInt64BE(24);
}

function scratchSize(numTokens: number, extraKeys: readonly string[] | null): number {
  let n = 1 + 2 + 32 + 9 + numTokens * 9 + 1;
  if (extraKeys) for (const k of extraKeys) n += textSize(k);
  return n + 9;
}

function encodeBlock(
  buf: Buffer,
  parent: Uint8Array,
  tokens: ArrayLike<number>,
  start: number,
  end: number,
  extraKeys: readonly string[] | null,
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
    for (const k of extraKeys) off = writeText(buf, off, k);
  }
  return off;
}

/** One block's digest: sha256_cbor((parent, tokens, extraKeys)). */
export function hashBlockTokens(
  parent32: Uint8Array,
  tokens: ArrayLike<number>,
  extraKeys: readonly string[] | null = null,
): Buffer {
  const buf = Buffer.allocUnsafe(scratchSize(tokens.length, extraKeys));
  const len = encodeBlock(buf, parent32, tokens, 0, tokens.length, extraKeys);
  return createHash("sha256").update(buf.subarray(0, len)).digest();
}

/** vLLM's extra_keys for a block: (lora_name?, cache_salt if block 0), or null when empty. */
export function extraKeysFor(
  blockIndex: number,
  loraName: string | null | undefined,
  cacheSalt: string | null | undefined,
): string[] | null {
  const keys: string[] = [];
  if (loraName) keys.push(loraName);
  if (blockIndex === 0 && cacheSalt) keys.push(cacheSalt);
  return keys.length > 0 ? keys : null;
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
  const plainKeys = extraKeysFor(1, lora, salt);
  const firstKeys = extraKeysFor(0, lora, salt);
  const buf = Buffer.allocUnsafe(scratchSize(bs, firstKeys ?? plainKeys));
  let prev: Uint8Array = parent ?? noneHash(opts.hashSeed);
  for (let b = 0; b < numBlocks; b++) {
    const start = startToken + b * bs;
    const keys = firstBlock + b === 0 ? firstKeys : plainKeys;
    const len = encodeBlock(buf, prev, tokenIds, start, start + bs, keys);
    const d = createHash("sha256").update(buf.subarray(0, len)).digest();
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
  extraKeys: readonly string[] | null,
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
    for (const k of extraKeys) {
      for (let i = 0; i < k.length; i++) {
        a = Math.imul(a ^ k.charCodeAt(i), 0x01000193);
        b = Math.imul(b ^ k.charCodeAt(i), 0x85ebca6b);
      }
      a = Math.imul(a ^ 0xff, 0x01000193);
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
    extraKeys: readonly string[] | null,
  ): Buffer {
    if (this.fast) return fastBlockHash(parent, tokens, start, end, extraKeys);
    const need = scratchSize(end - start, extraKeys);
    if (this.buf.length < need) this.buf = Buffer.allocUnsafe(need);
    const len = encodeBlock(this.buf, parent, tokens, start, end, extraKeys);
    return createHash("sha256").update(this.buf.subarray(0, len)).digest();
  }
}
