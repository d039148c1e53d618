// LMCache chunk identity as the cache server and the router read it: a CacheEngineKey parses back into
// the parts chunkKey wrote, anything else is refused, and a chain hashed a slice at a time is the chain
// hashed in one piece.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  chunkHashes,
  chunkHashesInto,
  chunkKey,
  parseChunkKey,
  type ChunkKeyScheme,
} from "../../src/protocol/lmcache-chunks.js";

const SCHEME: ChunkKeyScheme = {
  modelName: "meta-llama/Llama-3.1-8B-Instruct",
  worldSize: 2,
  dtype: "bfloat16",
  chunkTokens: 16,
  hashSeed: "0",
};

test("a chunk key parses back into what chunkKey wrote; other keys are refused", () => {
  const [h] = chunkHashes(
    Array.from({ length: 16 }, (_, i) => i + 1),
    1,
    SCHEME,
  );
  const k = parseChunkKey(chunkKey(SCHEME, 1, h!));
  assert.deepEqual(k, {
    modelName: SCHEME.modelName,
    worldSize: 2,
    workerId: 1,
    hash: h,
    dtype: "bfloat16",
    chunk: `${SCHEME.modelName}@2@${h!.toString(16)}@bfloat16`,
  });
  // both ranks' shards name one chunk
  assert.equal(parseChunkKey(chunkKey(SCHEME, 0, h!))!.chunk, k!.chunk);
  for (const bad of [
    "plain-key",
    "m@2@0@abc", // four parts
    "m@2@0@abc@bfloat16@tag%x", // LMCache's tagged keys are not chunks this server announces
    "m@2@2@abc@bfloat16", // worker id outside the world size
    "m@0@0@abc@bfloat16",
    "m@2@0@ABC@bfloat16", // LMCache writes lowercase hex
    "m@2@0@12345678901234567@bfloat16", // wider than 64 bits
    "@2@0@abc@bfloat16",
    "m@02@0@abc@bfloat16",
  ])
    assert.equal(parseChunkKey(bad), null, bad);
});

test("a chain hashed a slice at a time is the chain hashed in one piece", () => {
  const tokens = Array.from({ length: 16 * 10 + 5 }, (_, i) => (i * 7919) % 32000);
  const whole = chunkHashes(tokens, 10, SCHEME);
  const sliced = new BigUint64Array(10);
  for (let c = 0; c < 10; c += 3) chunkHashesInto(tokens, sliced, c, Math.min(10, c + 3), SCHEME);
  assert.deepEqual([...sliced], [...whole]);
});
