// BigIntLruMap (u64-lru-map.ts through bigint keys) behaves as LruMap does: the same values and the
// same least-recently-used order through adds, touches, deletes, evictions and growth, for keys over
// the whole 64-bit range, keys that share a half, and keys read back from their slots.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LruMap } from "../../src/collections/lru-map.js";
import { BigIntLruMap } from "../../src/collections/bigint-lru-map.js";
import { mulberry32 } from "../../src/random/rng.js";

const orderOf = <V>(m: BigIntLruMap<V>) => m.slotsOldestFirst().map((s) => [m.keyAt(s), m.valueAt(s)]);
const order = <V>(m: LruMap<bigint, V>) => [...m.oldestFirst()].map((e) => [e.key, e.value]);

test("a bigint LRU map keeps LruMap's values and order through adds, touches, deletes, evictions and growth", () => {
  for (const seed of [1, 2, 3]) {
    const r = mulberry32(seed);
    const word = () => BigInt(Math.floor(r() * 2 ** 32));
    // few keys sharing their low or high half (seed 1), or any 64-bit key
    const keyOf = () =>
      seed === 1
        ? (BigInt(Math.floor(r() * 20)) << 32n) | BigInt(Math.floor(r() * 20))
        : (word() << 32n) | word();
    const model = new LruMap<bigint, number>();
    const map = new BigIntLruMap<number>(16);
    const known: bigint[] = [];
    for (let i = 0; i < 20_000; i++) {
      const op = r();
      const key = known.length > 0 && r() < 0.6 ? known[Math.floor(r() * known.length)]! : keyOf();
      if (op < 0.35) {
        const e = model.useEntry(key);
        const s = map.find(key);
        assert.equal(s >= 0, e !== undefined);
        if (e) {
          e.value = i;
          map.setValueAt(s, i);
          map.touch(s);
        } else {
          model.add(key, i);
          map.add(key, i);
          known.push(key);
        }
      } else if (op < 0.55) assert.equal(map.get(key), model.get(key));
      else if (op < 0.7) assert.equal(map.delete(key), model.delete(key));
      else if (op < 0.8) assert.equal(map.shift(), model.shift()?.value);
      else assert.equal(map.has(key), model.has(key));
      assert.equal(map.size, model.size);
      if (i % 997 === 0) assert.deepEqual(orderOf(map), order(model), `seed ${seed}, op ${i}`);
    }
    assert.deepEqual(orderOf(map), order(model));
  }
});

test("a bigint LRU map reads back the extreme keys it was given and finds none it was not", () => {
  const map = new BigIntLruMap<string>();
  const keys = [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n, 0x8000000080000000n];
  for (const k of keys) map.add(k, k.toString(16));
  for (const k of keys) assert.equal(map.get(k), k.toString(16));
  assert.deepEqual(
    map.slotsOldestFirst().map((s) => map.keyAt(s)),
    keys,
  );
  assert.equal(map.get(3n), undefined);
  assert.equal(map.get(2n ** 64n - 2n), undefined);
});
