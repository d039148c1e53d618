// vLLM's sha256_cbor block hashes, byte for byte, against the vectors computed with Python's cbor2 and
// hashlib (test/fixtures/PROVENANCE.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  computeBlockHashes,
  hashBlockTokens,
  noneHash,
  extraKeysFor,
} from "../../src/protocol/block-hashing.js";
import { vectorPath } from "../helpers/vectors.js";

interface VectorCase {
  name: string;
  python_hash_seed: string;
  block_size: number;
  cache_salt: string | null;
  lora_name: string | null;
  token_ids: number[];
  none_hash_hex: string;
  blocks: { digest_hex: string; uint64: string }[];
}

const vectors = JSON.parse(readFileSync(vectorPath("vllm-block-hashes.json"), "utf8")) as {
  cases: VectorCase[];
};

test("vectors file has cases", () => {
  assert.ok(vectors.cases.length >= 11);
});

for (const c of vectors.cases) {
  test(`block hashes match vLLM: ${c.name}`, () => {
    assert.equal(noneHash(c.python_hash_seed).toString("hex"), c.none_hash_hex);
    const { digests, ids } = computeBlockHashes(c.token_ids, {
      blockSize: c.block_size,
      hashSeed: c.python_hash_seed,
      cacheSalt: c.cache_salt,
      loraName: c.lora_name,
    });
    assert.equal(digests.length, c.blocks.length);
    assert.equal(digests.length, Math.floor(c.token_ids.length / c.block_size));
    c.blocks.forEach((b, i) => {
      assert.equal(digests[i]!.toString("hex"), b.digest_hex, `block ${i} digest`);
      assert.equal(ids[i], BigInt(b.uint64), `block ${i} uint64`);
    });
    // the one-block API chains to the same values
    let parent: Buffer = noneHash(c.python_hash_seed);
    for (let i = 0; i < c.blocks.length; i++) {
      const toks = c.token_ids.slice(i * c.block_size, (i + 1) * c.block_size);
      parent = hashBlockTokens(parent, toks, extraKeysFor(i, c.lora_name, c.cache_salt));
      assert.equal(parent.toString("hex"), c.blocks[i]!.digest_hex);
    }
  });
}

test("incremental hashing from a parent equals hashing the whole sequence", () => {
  const toks = Array.from({ length: 80 }, (_, i) => (i * 7919) % 128256);
  const opts = { blockSize: 16, hashSeed: "0", cacheSalt: "s", loraName: null };
  const all = computeBlockHashes(toks, opts);
  const head = computeBlockHashes(toks.slice(0, 32), opts);
  const tail = computeBlockHashes(toks, opts, head.digests[1]!, 2, 32);
  assert.deepEqual([...head.ids, ...tail.ids], all.ids);
});

test("large token ids and bad input", () => {
  const toks = Array.from({ length: 16 }, (_, i) => 2 ** 32 + i);
  assert.equal(computeBlockHashes(toks, { blockSize: 16, hashSeed: "0" }).ids.length, 1);
  assert.throws(
    () => computeBlockHashes([-1, ...toks.slice(1)], { blockSize: 16, hashSeed: "0" }),
    /unsigned/,
  );
  assert.throws(() => computeBlockHashes(toks, { blockSize: 0, hashSeed: "0" }), /blockSize/);
});
