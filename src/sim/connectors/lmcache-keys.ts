// LMCache chunks as the sim's connector stores them: the key scheme's checks against lm://'s key field,
// the header fields of one rank's chunk, and payloads derived from their key, so that a GET can be
// checked without remembering what was sent. The chunk hashes and key strings themselves are
// src/protocol/lmcache-chunks.ts's (the cache server and the router compute them too), re-exported here.
import { createHash } from "node:crypto";
import { type ObjectMeta, KEY_BYTES } from "../../cacheserver/protocol.js";
import { chunkKey, U64, type ChunkKeyScheme } from "../../protocol/lmcache-chunks.js";
import { kvHeadsPerRank } from "../../models/kv-shape.js";
import type { ModelProfile } from "../../models/types.js";

export {
  chunkHashes,
  chunkKey,
  lmcacheNoneHash,
  type ChunkKeyScheme,
} from "../../protocol/lmcache-chunks.js";

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
  return {
    fmt: FMT_KV_2LTD,
    dtype: DTYPE_CODES[model.dtype] ?? 0,
    shape: [2, model.layers, chunkTokens, kvHeadsPerRank(model, tp) * model.headDim],
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
