// The block pool's hash table (open addressing with backward-shift deletion) against a plain Map under
// the churn a fleet produces: every allocation evicts a cached hash, every computed block inserts one.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BlockPool } from "../../src/engine/block-pool.js";
import { fastBlockHash } from "../../src/protocol/block-hashing.js";

test("hash table agrees with a Map through heavy insert/evict churn and a reset", () => {
  const pool = new BlockPool(97);
  pool.enableEvents = false;
  const ref = new Map<bigint, number>();
  const byBlock = new Map<number, bigint>();
  let parent: Buffer = Buffer.alloc(32);
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const held: number[][] = [];
  const ids: { id: bigint; d: Buffer }[] = [];
  for (let i = 0; i < 400; i++) {
    const d = fastBlockHash(parent, [i, i * 7], 0, 2, null);
    // a few ids share their low half or their high half with another, to exercise probe runs
    if (i % 13 === 0) d.writeUInt32BE(0xabcdef01, 28);
    if (i % 17 === 0) d.writeUInt32BE(0x12345678, 24);
    ids.push({ id: d.readBigUInt64BE(24), d });
    parent = d;
  }
  for (let step = 0; step < 20_000; step++) {
    if (held.length > 0 && (rnd() < 0.45 || pool.numFreeBlocks < 4)) {
      pool.free(held.splice(Math.floor(rnd() * held.length), 1)[0]!);
      continue;
    }
    const blocks: number[] = [];
    const n = 1 + Math.floor(rnd() * 3);
    if (!pool.allocate(n, blocks)) continue;
    // allocation evicted whatever those blocks held
    for (const b of blocks) {
      const old = byBlock.get(b);
      if (old !== undefined && ref.get(old) === b) ref.delete(old);
      byBlock.delete(b);
    }
    for (const b of blocks) {
      const { id, d } = ids[Math.floor(rnd() * ids.length)]!;
      const fromDigest = rnd() < 0.5;
      const ok = pool.cacheBlock(b, id, d, fromDigest);
      assert.equal(ok, !ref.has(id), `step ${step}: cacheBlock(${b}, ${id})`);
      if (ok) {
        ref.set(id, b);
        byBlock.set(b, id);
      }
    }
    held.push(blocks);
    if (step % 97 === 0) {
      for (const { id, d } of ids) {
        const want = ref.get(id) ?? -1;
        assert.equal(pool.lookup(id), want, `step ${step}: lookup(${id})`);
        assert.equal(pool.lookup(id, d), want);
      }
      assert.equal(pool.numCachedBlocks, ref.size);
    }
  }
  for (const h of held) pool.free(h);
  assert.equal(pool.reset(), true);
  assert.equal(pool.numCachedBlocks, 0);
  for (const { id } of ids) assert.equal(pool.lookup(id), -1);
});
