// vLLM's sha256_cbor block hashes, byte for byte, against the vectors computed with Python's cbor2 and
// hashlib (test/fixtures/PROVENANCE.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  computeBlockHashes,
  eventExtraKeys,
  hashBlockTokens,
  noneHash,
  extraKeysFor,
} from "../../src/protocol/block-hashing.js";
import { engineHashSeed, extraKeyStyleFor } from "../../src/protocol/vllm-releases.js";
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

interface TaggedCase {
  name: string;
  python_hash_seed: string | null;
  block_size: number;
  cache_salt: string | null;
  lora_name: string | null;
  lora_path: string | null;
  token_ids: number[];
  none_hash_hex: string;
  blocks: { digest_hex: string; uint64: string; event_extra_keys: (string[] | null)[] | null }[];
}

const tagged = JSON.parse(readFileSync(vectorPath("vllm-block-hashes-tagged.json"), "utf8")) as {
  cases: TaggedCase[];
};

for (const c of tagged.cases) {
  test(`block hashes match vLLM 0.32 (tagged extra keys, default seed): ${c.name}`, () => {
    // an unset PYTHONHASHSEED is the release's default seed
    const seed = engineHashSeed("0.32.0", c.python_hash_seed ?? undefined);
    assert.equal(noneHash(seed).toString("hex"), c.none_hash_hex);
    const { ids } = computeBlockHashes(c.token_ids, {
      blockSize: c.block_size,
      hashSeed: seed,
      cacheSalt: c.cache_salt,
      loraName: c.lora_name,
      loraPath: c.lora_path,
      extraKeyStyle: extraKeyStyleFor("0.32.0"),
    });
    assert.deepEqual(
      ids.map(String),
      c.blocks.map((b) => b.uint64),
    );
    c.blocks.forEach((b, i) => {
      const keys = extraKeysFor(i, c.lora_name, c.cache_salt, "tagged", c.lora_path);
      assert.deepEqual(eventExtraKeys(keys), b.event_extra_keys?.[0] ?? null, `block ${i} event keys`);
    });
  });
}

test("releases before 0.31 hash bare extra keys and before 0.29 have no fixed default seed", () => {
  assert.equal(extraKeyStyleFor("0.30.0"), "untagged");
  assert.equal(extraKeyStyleFor("0.31.0"), "tagged");
  assert.equal(extraKeyStyleFor("0.32.0rc1.dev12+gabc"), "tagged");
  assert.equal(engineHashSeed("0.29.0", undefined), "vllm-none-hash");
  assert.equal(engineHashSeed("0.28.0", undefined), "0");
  assert.equal(engineHashSeed("0.32.0", "7"), "7");
  // the same salted prompt hashes differently in the two forms
  const toks = Array.from({ length: 32 }, (_, i) => i + 5);
  const base = { blockSize: 16, hashSeed: "0", cacheSalt: "s" };
  assert.notDeepEqual(
    computeBlockHashes(toks, { ...base, extraKeyStyle: "tagged" }).ids,
    computeBlockHashes(toks, base).ids,
  );
});
