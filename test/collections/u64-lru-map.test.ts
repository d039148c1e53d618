// U64LruMap through its two key views, NumberLruMap and BigIntLruMap, behaves as LruMap does: the same
// values and the same least-recently-used order through adds, touches, deletes that shift entries
// back, evictions and growth; keys that share a home slot or a half are all found, extreme keys are
// read back, and keys a view cannot hold are never found.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LruMap } from "../../src/collections/lru-map.js";
import { NumberLruMap } from "../../src/collections/number-lru-map.js";
import { BigIntLruMap } from "../../src/collections/bigint-lru-map.js";
import { mulberry32 } from "../../src/random/rng.js";

/** what the model test needs of a view: its own lookups, and its entries oldest first */
interface View<K> {
  find(key: K): number;
  get(key: K): number | undefined;
  add(key: K, value: number): void;
  delete(key: K): boolean;
  has(key: K): boolean;
  setValueAt(slot: number, value: number): void;
  touch(slot: number): void;
  shift(): number | undefined;
  readonly size: number;
  entries(): [K, number][];
  /** the number view's own: a lookup that touches, a set, the oldest value */
  use?(key: K): number | undefined;
  set?(key: K, value: number): void;
  oldestValue?(): number | undefined;
}

function againstModel<K>(view: View<K>, keyOf: () => K, r: () => number, label: string): void {
  const model = new LruMap<K, number>();
  const known: K[] = [];
  for (let i = 0; i < 20_000; i++) {
    const op = r();
    const key = known.length > 0 && r() < 0.6 ? known[Math.floor(r() * known.length)]! : keyOf();
    if (op < 0.35) {
      // useEntry / add, as the indexes learn
      const e = model.useEntry(key);
      const s = view.find(key);
      assert.equal(s >= 0, e !== undefined);
      if (e) {
        e.value = i;
        view.setValueAt(s, i);
        view.touch(s);
      } else {
        model.add(key, i);
        view.add(key, i);
        known.push(key);
      }
    } else if (op < 0.5) assert.equal(view.get(key), model.get(key));
    else if (op < 0.55 && view.use) {
      assert.equal(view.use(key), model.use(key));
      assert.equal(view.oldestValue!(), model.oldest()?.value);
    } else if (op < 0.6 && view.set) {
      model.set(key, -i);
      view.set(key, -i);
    } else if (op < 0.7) assert.equal(view.delete(key), model.delete(key));
    else if (op < 0.8) assert.equal(view.shift(), model.shift()?.value);
    else assert.equal(view.has(key), model.has(key));
    assert.equal(view.size, model.size);
    if (i % 997 === 0)
      assert.deepEqual(
        view.entries(),
        [...model.oldestFirst()].map((e) => [e.key, e.value]),
        `${label}, op ${i}`,
      );
  }
  assert.deepEqual(
    view.entries(),
    [...model.oldestFirst()].map((e) => [e.key, e.value]),
  );
  while (model.size > 0) assert.equal(view.shift(), model.shift()!.value);
  assert.equal(view.size, 0);
  assert.equal(view.shift(), undefined);
}

test("a number LRU map keeps LruMap's values and order through adds, touches, deletes, evictions and growth", () => {
  for (const seed of [1, 2, 3]) {
    const r = mulberry32(seed);
    const map = new NumberLruMap<number>(16);
    const view: View<number> = Object.assign(map, {
      entries: () => {
        const values = [...map.values()];
        return map.keysOldestFirst().map((k, i) => [k, values[i]!] as [number, number]);
      },
    });
    // few distinct keys (many collisions and re-adds) for one seed, 53-bit ids for the others
    againstModel(
      view,
      () => (seed === 1 ? Math.floor(r() * 300) : Math.floor(r() * 2 ** 53)),
      r,
      `seed ${seed}`,
    );
  }
});

test("a bigint LRU map keeps LruMap's values and order through adds, touches, deletes, evictions and growth", () => {
  for (const seed of [1, 2, 3]) {
    const r = mulberry32(seed);
    const word = () => BigInt(Math.floor(r() * 2 ** 32));
    const map = new BigIntLruMap<number>(16);
    const view: View<bigint> = Object.assign(map, {
      entries: () => map.slotsOldestFirst().map((s) => [map.keyAt(s), map.valueAt(s)] as [bigint, number]),
    });
    // few keys sharing their low or high half (seed 1), or any 64-bit key
    const small = () => BigInt(Math.floor(r() * 20));
    againstModel(
      view,
      () => (seed === 1 ? (small() << 32n) | small() : (word() << 32n) | word()),
      r,
      `seed ${seed}`,
    );
  }
});

test("a number LRU map grows past its first slots, is emptied by clear, and never finds a key it cannot hold", () => {
  const map = new NumberLruMap<string>(16);
  for (let k = 0; k < 5000; k++) map.add(k * 4294967296, `v${k}`);
  assert.equal(map.size, 5000);
  assert.ok(map.slots >= 10_000);
  for (let k = 0; k < 5000; k++) assert.equal(map.get(k * 4294967296), `v${k}`);
  assert.deepEqual(map.keysOldestFirst().slice(0, 3), [0, 4294967296, 2 * 4294967296]);
  map.add(7, "seven");
  for (const bad of [Number.NaN, -7, 7.5, 7 - 2 ** 32]) assert.equal(map.has(bad), false, String(bad));
  assert.throws(() => map.add(-1, "minus one"), RangeError);
  map.clear();
  assert.equal(map.size, 0);
  assert.equal(map.get(0), undefined);
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

test("rewriting values drops the entries it answers undefined for and keeps the rest in their order", () => {
  const map = new NumberLruMap<number>(16);
  const model = new LruMap<number, number>();
  // clustered keys: removals move later entries back, across the table's end too
  for (let k = 0; k < 3000; k++) {
    const key = (k * 7) % 4096;
    if (model.has(key)) continue;
    map.add(key, k);
    model.add(key, k);
  }
  let calls = 0;
  map.rewriteValues((v) => {
    calls++;
    return v % 3 === 0 ? undefined : v % 3 === 1 ? v + 1_000_000 : v;
  });
  for (const e of [...model.oldestFirst()]) {
    if (e.value % 3 === 0) model.delete(e.key);
    else if (e.value % 3 === 1) e.value += 1_000_000;
  }
  const values = [...map.values()];
  assert.deepEqual(
    map.keysOldestFirst().map((k, i) => [k, values[i]]),
    [...model.oldestFirst()].map((e) => [e.key, e.value]),
  );
  assert.ok(calls >= 3000);
});
