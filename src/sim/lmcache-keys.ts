// LMCache chunk identity as it crosses the wire: chained chunk hashes (vLLM's sha256_cbor over
// 256-token chunks from NONE_HASH), the CacheEngineKey string LMCache stores each TP rank's shard
// under, the object header fields, and a payload whose bytes are derived from its key so that a GET
// can be checked without remembering what was sent.
import { createHash } from "node:crypto";
import type { ObjectMeta } from "../cacheserver/protocol.js";
import { KEY_BYTES } from "../cacheserver/protocol.js";
import { extraKeysFor, hashBlockTokens, noneHash } from "../engine/hashing.js";
import type { ModelProfile } from "../engine/types.js";

export const DIGEST_BYTES = 32;

/** LMCache's MemoryFormat.KV_2LTD: [2 (K and V), layers, tokens, kv_heads × head_dim] */
const FMT_KV_2LTD = 1;
const DTYPE_CODES: Record<string, number> = { half: 1, float16: 2, bfloat16: 3, float32: 4, float64: 5 };

export interface ChunkKeyScheme {
  /** the model as given to vLLM (LMCache's model_name) */
  modelName: string;
  /** TP size (LMCache's world_size); one key per rank (worker_id) */
  worldSize: number;
  dtype: string;
  chunkTokens: number;
  hashSeed: string;
}

/**
 * Digests of the first `numChunks` full chunks of `tokens`, 32 bytes each, in one Buffer: a request
 * keeps them from its lookup until it finishes, so one allocation per request, not one per chunk.
 */
export function chunkDigests(
  tokens: readonly number[],
  numChunks: number,
  s: ChunkKeyScheme,
  loraName: string | null,
  cacheSalt: string | null,
): Buffer {
  const out = Buffer.allocUnsafe(numChunks * DIGEST_BYTES);
  let parent: Uint8Array = noneHash(s.hashSeed);
  const n = s.chunkTokens;
  for (let c = 0; c < numChunks; c++) {
    const d = hashBlockTokens(parent, tokens.slice(c * n, (c + 1) * n), extraKeysFor(c, loraName, cacheSalt));
    d.copy(out, c * DIGEST_BYTES);
    parent = d;
  }
  return out;
}

export function digestAt(digests: Buffer, chunk: number): Buffer {
  return digests.subarray(chunk * DIGEST_BYTES, (chunk + 1) * DIGEST_BYTES);
}

/** LMCache's CacheEngineKey string: fmt@model_name@world_size@worker_id@<chunk hash hex>@dtype. */
export function chunkKey(s: ChunkKeyScheme, workerId: number, digest: Buffer): string {
  return `vllm@${s.modelName}@${s.worldSize}@${workerId}@${digest.toString("hex")}@${s.dtype}`;
}

/** null when every key fits the lm:// key field, else why not (long model names do not). */
export function keyProblem(s: ChunkKeyScheme): string | null {
  const longest = chunkKey(s, s.worldSize - 1, Buffer.alloc(DIGEST_BYTES));
  if (longest.length > KEY_BYTES)
    return `LMCache keys for model '${s.modelName}' are ${longest.length} bytes; lm:// keys hold at most ${KEY_BYTES}`;
  if (!/^[\x20-\x7e]*$/.test(longest))
    return `LMCache keys must be printable ASCII; model '${s.modelName}' is not`;
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
