// LMCache chunk identity as it crosses the wire, exactly as LMCache 0.5.x computes it for vLLM (its
// token_database.py), so that a sim and a real vLLM + LMCache engine hit each other's chunks on a
// shared server:
//   NONE_HASH = first 8 bytes, big-endian, of vLLM's sha256_cbor(PYTHONHASHSEED)  (init_none_hash)
//   h_c = first 8 bytes of sha256(cbor([h_{c-1}, [tokens of chunk c], []]))      (chained from NONE_HASH)
// over full chunks of `chunk_size` tokens (save_unfull_chunk is off by default); the key of one TP
// rank's shard is `model@world_size@worker_id@<h_c as lowercase hex>@<dtype>` (CacheEngineKey.to_string).
// LMCache hashes tokens only: a LoRA adapter or a cache salt does not enter the chunk hash.
// Payloads are derived from their key, so a GET can be checked without remembering what was sent.
import { createHash } from "node:crypto";
import { type ObjectMeta, KEY_BYTES } from "../../cacheserver/protocol.js";
import { writeArrayHead, writeHead } from "../../protocol/cbor.js";
import { noneHash } from "../../protocol/block-hashing.js";
import type { ModelProfile } from "../../models/types.js";

/** LMCache's MemoryFormat.KV_2LTD: [2 (K and V), layers, tokens, kv_heads × head_dim] */
const FMT_KV_2LTD = 1;
const DTYPE_CODES: Record<string, number> = { half: 1, float16: 2, bfloat16: 3, float32: 4, float64: 5 };

/** torch dtype → the short name LMCache writes in keys (TORCH_DTYPE_TO_STR_DTYPE: float16 is "half"). */
const LMCACHE_DTYPE_NAMES: Record<string, string> = {
  float16: "half",
  half: "half",
  bfloat16: "bfloat16",
  float32: "float",
  float: "float",
  float64: "double",
  double: "double",
  float8_e4m3fn: "fp8_e4m3fn",
  fp8: "fp8_e4m3fn",
  float8_e5m2: "fp8_e5m2",
};

export function lmcacheDtypeName(dtype: string): string {
  return LMCACHE_DTYPE_NAMES[dtype] ?? dtype;
}

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

const U64 = (1n << 64n) - 1n;

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
export function chunkHashes(tokens: ArrayLike<number>, numChunks: number, s: ChunkKeyScheme): BigUint64Array {
  const out = new BigUint64Array(numChunks);
  const n = s.chunkTokens;
  // [prefix, [tokens...], []]: 1 + 9 + 5 + 9 per token + 1
  const buf = Buffer.allocUnsafe(16 + 9 * n);
  let prefix = lmcacheNoneHash(s.hashSeed);
  for (let c = 0; c < numChunks; c++) {
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
    prefix = createHash("sha256").update(buf.subarray(0, off)).digest().readBigUInt64BE(0);
    out[c] = prefix;
  }
  return out;
}

/** LMCache's CacheEngineKey string of one rank's shard of a chunk (0.5.x; no tags). */
export function chunkKey(s: ChunkKeyScheme, workerId: number, hash: bigint): string {
  return `${s.modelName}@${s.worldSize}@${workerId}@${hash.toString(16)}@${s.dtype}`;
}

/** null when every key fits the lm:// key field, else why not (long model names do not). */
export function keyProblem(s: ChunkKeyScheme): string | null {
  const longest = chunkKey(s, s.worldSize - 1, U64);
  if (longest.length > KEY_BYTES)
    return `LMCache keys for model '${s.modelName}' are ${longest.length} bytes; lm:// keys hold at most ${KEY_BYTES}`;
  if (!/^[\x20-\x7e]*$/.test(longest))
    return `LMCache keys must be printable ASCII; model '${s.modelName}' is not`;
  if (s.modelName.includes("@")) return `LMCache keys are split at '@'; model '${s.modelName}' contains one`;
  return null;
}

/** Header fields of one rank's chunk: the shape a naive-serde KV chunk has (the length is scaled). */
export function chunkMeta(model: ModelProfile, tp: number, chunkTokens: number): ObjectMeta {
  const kvHeadsPerRank = Math.max(1, Math.floor(model.kvHeads / tp));
  return {
    fmt: FMT_KV_2LTD,
    dtype: DTYPE_CODES[model.dtype] ?? 0,
    shape: [2, model.layers, chunkTokens, kvHeadsPerRank * model.headDim],
  };
}

/** `bytes` bytes repeating sha256(key): the same key always carries the same payload. */
export function chunkPayload(key: string, bytes: number): Buffer {
  const seed = createHash("sha256").update(key, "latin1").digest();
  return Buffer.alloc(bytes, seed);
}

/** Does a payload read back match what chunkPayload(key) wrote? (one native fill and compare) */
export function payloadMatches(key: string, payload: Buffer, bytes: number): boolean {
  return payload.length === bytes && chunkPayload(key, bytes).equals(payload);
}
