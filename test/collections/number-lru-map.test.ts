// NumberLruMap (open addressing in typed arrays) behaves as LruMap does for number keys: the same
// values and the same least-recently-used order through adds, touches, deletes that shift entries
// back, evictions and growth; keys that share a home slot are all found.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LruMap } from "../../src/collections/lru-map.js";
import { NumberLruMap } from "../../src/collections/number-lru-map.js";
import { mulberry32 } from "../../src/random/rng.js";

const order = <V>(m: LruMap<number, V>) => [...m.oldestFirst()].map((e) => [e.key, e.value]);
const orderOf = <V>(m: NumberLruMap<V>) => {
  const keys = m.keysOldestFirst();
  const values = [...m.values()];
  return keys.map((k, i) => [k, values[i]]);
};

test("a number LRU map keeps LruMap's values and order through adds, touches, deletes, evictions and growth", () => {
  for (const seed of [1, 2, 3]) {
    const r = mulberry32(seed);
    // few distinct keys (many collisions and re-adds) for one seed, 53-bit ids for the others
    const keyOf = () => (seed === 1 ? Math.floor(r() * 300) : Math.floor(r() * 2 ** 53));
    const model = new LruMap<number, number>();
    const map = new NumberLruMap<number>(16);
    const known: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const op = r();
      const key = known.length > 0 && r() < 0.6 ? known[Math.floor(r() * known.length)]! : keyOf();
      if (op < 0.35) {
        // useEntry / add, as the prefix index learns
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
      } else if (op < 0.5) assert.equal(map.get(key), model.get(key));
      else if (op < 0.55) {
        assert.equal(map.use(key), model.use(key));
        assert.equal(map.oldestValue(), model.oldest()?.value);
      } else if (op < 0.7) assert.equal(map.delete(key), model.delete(key));
      else if (op < 0.8) assert.equal(map.shift(), model.shift()?.value);
      else if (op < 0.9) {
        model.set(key, -i);
        map.set(key, -i);
      } else assert.equal(map.has(key), model.has(key));
      assert.equal(map.size, model.size);
      if (i % 997 === 0) assert.deepEqual(orderOf(map), order(model), `seed ${seed}, op ${i}`);
    }
    assert.deepEqual(orderOf(map), order(model));
    // everything out, oldest first
    while (model.size > 0) assert.equal(map.shift(), model.shift()!.value);
    assert.equal(map.size, 0);
    assert.equal(map.shift(), undefined);
  }
});

test("a number LRU map grows past its first slots and is emptied by clear", () => {
  const map = new NumberLruMap<string>(16);
  for (let k = 0; k < 5000; k++) map.add(k * 4294967296, `v${k}`);
  assert.equal(map.size, 5000);
  assert.ok(map.slots >= 10_000);
  for (let k = 0; k < 5000; k++) assert.equal(map.get(k * 4294967296), `v${k}`);
  assert.deepEqual(map.keysOldestFirst().slice(0, 3), [0, 4294967296, 2 * 4294967296]);
  map.clear();
  assert.equal(map.size, 0);
  assert.equal(map.get(0), undefined);
  assert.equal(map.has(Number.NaN), false);
});
