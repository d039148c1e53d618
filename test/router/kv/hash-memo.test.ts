// The router remembers shared prefixes' block hashes (hash-memo.ts) so that a prompt is hashed only
// past what it shares with earlier ones; the hashes must be computeBlockHashes's, bit for bit, whatever
// the prompts share, the options they are hashed under, or how small the memo is.
import { test } from "node:test";
import assert from "node:assert/strict";
import { computeBlockHashes, type BlockHashOptions } from "../../../src/protocol/block-hashing.js";
import { BlockHashMemo } from "../../../src/router/kv/hash-memo.js";

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OPTIONS: BlockHashOptions[] = [
  { blockSize: 16, hashSeed: "vllm-none-hash", extraKeyStyle: "tagged" },
  { blockSize: 16, hashSeed: "0", extraKeyStyle: "untagged" },
  { blockSize: 16, hashSeed: "vllm-none-hash", extraKeyStyle: "tagged", cacheSalt: "tenant-a" },
  { blockSize: 16, hashSeed: "vllm-none-hash", extraKeyStyle: "tagged", loraName: "sql", loraPath: "/a/sql" },
  { blockSize: 4, hashSeed: "vllm-none-hash", extraKeyStyle: "tagged" },
];

test("prompts sharing prefixes get computeBlockHashes's own ids from the memo, under every option set, with a memo small enough to forget", () => {
  const r = rng(7);
  const prefixes = Array.from({ length: 5 }, () =>
    Array.from({ length: 40 + Math.floor(r() * 200) }, () => Math.floor(r() * 128_000)),
  );
  for (const cap of [100_000, 64, 3]) {
    const memo = new BlockHashMemo(cap);
    for (let i = 0; i < 300; i++) {
      const pre = prefixes[Math.floor(r() * prefixes.length)]!;
      // a shared prefix cut anywhere (mid-block too), then a tail of its own, sometimes none
      const cut = Math.floor(r() * (pre.length + 1));
      const tail = Array.from({ length: Math.floor(r() * 60) }, () => Math.floor(r() * 128_000));
      const tokens = [...pre.slice(0, cut), ...tail];
      const opts = OPTIONS[Math.floor(r() * OPTIONS.length)]!;
      const count = Math.floor(r() * (tokens.length + 1));
      const want = computeBlockHashes(tokens.slice(0, count - (count % opts.blockSize)), opts).ids;
      assert.deepEqual(memo.ids(tokens, count, opts), want, `prompt ${i}, cap ${cap}`);
      assert.ok(memo.size <= cap);
    }
    if (cap === 100_000) assert.ok(memo.stats.hits > memo.stats.misses, "shared prefixes are reused");
  }
});

test("a prompt whose block matches a remembered one only after a different block before it is hashed again, not reused", () => {
  const memo = new BlockHashMemo();
  const opts = OPTIONS[0]!;
  const a = Array.from({ length: 32 }, (_, i) => i);
  const b = [...a.slice(0, 16).map((x) => x + 1000), ...a.slice(16)];
  memo.ids(a, 32, opts);
  assert.deepEqual(memo.ids(b, 32, opts), computeBlockHashes(b, opts).ids);
  // token ids that an Int32Array cannot hold are compared as given, so they never match a wrapped one
  const big = [2 ** 32 + 5, ...a.slice(1, 16)];
  const wrapped = [5, ...a.slice(1, 16)];
  memo.ids(wrapped, 16, opts);
  assert.deepEqual(memo.ids(big, 16, opts), computeBlockHashes(big, opts).ids);
});

test("long shared prefixes, reused a span of blocks at a time, still get computeBlockHashes's own ids, however they part and however small the memo", () => {
  const r = rng(11);
  const prefixes = Array.from({ length: 6 }, () =>
    Array.from({ length: 300 + Math.floor(r() * 3000) }, () => Math.floor(r() * 128_000)),
  );
  for (const cap of [100_000, 400, 40, 3]) {
    const memo = new BlockHashMemo(cap);
    for (let i = 0; i < 160; i++) {
      const pre = prefixes[Math.floor(r() * prefixes.length)]!;
      // sometimes a prefix with one token changed inside: its spans from there on must not be reused
      const base = r() < 0.2 ? pre.map((t, k) => (k === Math.floor(pre.length / 2) ? t + 1 : t)) : pre;
      const cut = Math.floor(r() * (base.length + 1));
      const tail = Array.from({ length: Math.floor(r() * 400) }, () => Math.floor(r() * 128_000));
      const tokens = [...base.slice(0, cut), ...tail];
      const opts = OPTIONS[Math.floor(r() * OPTIONS.length)]!;
      const count = r() < 0.5 ? tokens.length : Math.floor(r() * (tokens.length + 1));
      const want = computeBlockHashes(tokens.slice(0, count - (count % opts.blockSize)), opts).ids;
      assert.deepEqual(memo.ids(tokens, count, opts), want, `prompt ${i}, cap ${cap}`);
      assert.ok(memo.size <= cap);
    }
    // each prefix under each option set comes about five times, and a block is remembered from its
    // second hashing (the doorkeeper): about a third of the blocks are reused
    if (cap === 100_000) assert.ok(3 * memo.stats.hits > memo.stats.misses, "shared prefixes are reused");
  }
});

test("a block is remembered once it is hashed a second time, so prompts' unique tails leave the memo to the prefixes they share", () => {
  const memo = new BlockHashMemo();
  const opts = OPTIONS[0]!;
  const r = rng(3);
  const prefix = Array.from({ length: 10 * 16 }, () => Math.floor(r() * 128_000));
  const prompt = () => [...prefix, ...Array.from({ length: 5 * 16 }, () => Math.floor(r() * 128_000))];
  const first = prompt();
  assert.deepEqual(memo.ids(first, first.length, opts), computeBlockHashes(first, opts).ids);
  assert.equal(memo.size, 0, "nothing is remembered on a first sighting");
  for (let i = 0; i < 200; i++) {
    const p = prompt();
    assert.deepEqual(memo.ids(p, p.length, opts), computeBlockHashes(p, opts).ids);
  }
  // the shared prefix's 10 blocks, and of 1,000 tail blocks only the doorkeeper's rare false positives
  assert.ok(memo.size >= 10 && memo.size <= 10 + 50, `memo holds ${memo.size} links`);
  const hitsBefore = memo.stats.hits;
  const last = prompt();
  memo.ids(last, last.length, opts);
  assert.equal(memo.stats.hits - hitsBefore, 10, "the shared prefix is reused whole");
});
