// LMCache chunk identity, shared by everything that must agree on it: the sim's LMCache connector
// writes chunks under these keys, the cache server reads its stored keys back into chunk hashes to
// announce them as KV events, and the router hashes a prompt the same way to find the prefix a shared
// cache server holds. Exactly as LMCache 0.5.x computes it for vLLM (its token_database.py), so that a
// sim and a real vLLM + LMCache engine hit each other's chunks on a shared server:
//   NONE_HASH = first 8 bytes, big-endian, of vLLM's sha256_cbor(PYTHONHASHSEED)  (init_none_hash)
//   h_c = first 8 bytes of sha256(cbor([h_{c-1}, [tokens of chunk c], []]))      (chained from NONE_HASH)
// over full chunks of `chunk_size` tokens (save_unfull_chunk is off by default); the key of one TP
// rank's shard is `model@world_size@worker_id@<h_c as lowercase hex>@<dtype>` (CacheEngineKey.to_string).
// LMCache hashes tokens only: a LoRA adapter or a cache salt does not enter the chunk hash.
import { writeArrayHead, writeHead } from "./cbor.js";
import { noneHash, sha256 } from "./block-hashing.js";

export interface ChunkKeyScheme {
  /** the model as given to vLLM (LMCache's model_name) */
  modelName: string;
  /** TP size (LMCache's world_size); one key per rank (worker_id) */
  worldSize: number;
  /** the KV dtype as LMCache names it in keys ("bfloat16", "half", ...) */
  dtype: string;
  chunkTokens: number;
  hashSeed: string;
}

/** What the chain needs of a scheme: chunks of `chunkTokens`, chained from the seed's NONE_HASH. */
export type ChunkHashScheme = Pick<ChunkKeyScheme, "chunkTokens" | "hashSeed">;

export const U64 = (1n << 64n) - 1n;

/** LMCache's NONE_HASH when vLLM is importable: vLLM's sha256_cbor(seed) folded to its first 8 bytes. */
export function lmcacheNoneHash(seed: string): bigint {
  return noneHash(seed).readBigUInt64BE(0);
}

/** Canonical CBOR of a Python int ≥ 0 below 2^64 (major type 0, shortest form). */
function writeUint64(buf: Buffer, off: number, v: bigint): number {
  if (v < 0n || v > U64) throw new RangeError(`chunk hash ${v} outside uint64`);
  if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return writeHead(buf, off, 0, Number(v));
  buf[off] = 0x1b;
  buf.writeBigUInt64BE(v, off + 1);
  return off + 9;
}

/**
 * The chunk hashes of the first `numChunks` full chunks of `tokens`, chained from NONE_HASH: one
 * BigUint64Array per request, kept from its lookup until it finishes.
 */
export function chunkHashes(
  tokens: ArrayLike<number>,
  numChunks: number,
  s: ChunkHashScheme,
): BigUint64Array {
  const out = new BigUint64Array(numChunks);
  chunkHashesInto(tokens, out, 0, numChunks, s);
  return out;
}

/**
 * Chunks [from, to) of the chain into `out`, chained from `out[from - 1]` (NONE_HASH for chunk 0): a
 * long prompt's chain can be hashed a slice at a time.
 */
export function chunkHashesInto(
  tokens: ArrayLike<number>,
  out: BigUint64Array,
  from: number,
  to: number,
  s: ChunkHashScheme,
): void {
  const n = s.chunkTokens;
  // [prefix, [tokens...], []]: 1 + 9 + 5 + 9 per token + 1
  const buf = Buffer.allocUnsafe(16 + 9 * n);
  let prefix = from === 0 ? lmcacheNoneHash(s.hashSeed) : out[from - 1]!;
  for (let c = from; c < to; c++) {
    let off = writeArrayHead(buf, 0, 3);
    off = writeUint64(buf, off, prefix);
    off = writeArrayHead(buf, off, n);
    for (let i = c * n; i < (c + 1) * n; i++) {
      const t = tokens[i]!;
      if (!Number.isSafeInteger(t) || t < 0)
        throw new RangeError(`token id ${t} is not a non-negative integer`);
      off = writeHead(buf, off, 0, t);
    }
    off = writeArrayHead(buf, off, 0);
    prefix = sha256(buf.subarray(0, off)).readBigUInt64BE(0);
    out[c] = prefix;
  }
}

/** LMCache's CacheEngineKey string of one rank's shard of a chunk (0.5.x; no tags). */
export function chunkKey(s: ChunkKeyScheme, workerId: number, hash: bigint): string {
  return `${s.modelName}@${s.worldSize}@${workerId}@${hash.toString(16)}@${s.dtype}`;
}

/** One rank's shard of a chunk, as its key names it. */
export interface ParsedChunkKey {
  modelName: string;
  worldSize: number;
  workerId: number;
  hash: bigint;
  dtype: string;
  /** the key without its worker id: every rank's shard of one chunk shares it */
  chunk: string;
}

const HEX64 = /^[0-9a-f]{1,16}$/;
const SMALL_INT = /^(0|[1-9][0-9]{0,3})$/;

/**
 * Reads a CacheEngineKey string back (chunkKey's inverse); null for anything else: a key some other
 * client stored, a key with LMCache's later tag suffixes, a worker id outside the world size. The model
 * name may itself hold no '@' (LMCache splits keys at it).
 */
export function parseChunkKey(key: string): ParsedChunkKey | null {
  const parts = key.split("@");
  if (parts.length !== 5) return null;
  const [modelName, ws, wid, hex, dtype] = parts as [string, string, string, string, string];
  if (modelName === "" || dtype === "" || !SMALL_INT.test(ws) || !SMALL_INT.test(wid) || !HEX64.test(hex))
    return null;
  const worldSize = Number(ws);
  const workerId = Number(wid);
  if (worldSize < 1 || workerId >= worldSize) return null;
  return {
    modelName,
    worldSize,
    workerId,
    hash: BigInt(`0x${hex}`),
    dtype,
    chunk: `${modelName}@${ws}@${hex}@${dtype}`,
  };
}
