import { test } from "node:test";
import assert from "node:assert/strict";
import { LruMap } from "../../src/collections/lru-map.js";

const keys = (m: LruMap<string, number>) => [...m.oldestFirst()].map((e) => e.key);

test("LruMap: set and touch make a key the newest; shift takes the oldest; get does not touch", () => {
  const m = new LruMap<string, number>();
  for (const [k, v] of [
    ["a", 1],
    ["b", 2],
    ["c", 3],
  ] as const)
    m.set(k, v);
  assert.deepEqual(keys(m), ["a", "b", "c"]);
  assert.equal(m.get("a"), 1);
  assert.deepEqual(keys(m), ["a", "b", "c"], "get leaves the order alone");
  assert.equal(m.touch("a"), true);
  assert.equal(m.touch("zz"), false);
  assert.deepEqual(keys(m), ["b", "c", "a"]);
  assert.equal(m.use("c"), 3);
  assert.deepEqual(keys(m), ["b", "a", "c"], "use = get + touch");
  assert.equal(m.use("zz"), undefined);
  m.set("b", 20); // an update counts as a use
  assert.deepEqual(keys(m), ["a", "c", "b"]);
  assert.equal(m.get("b"), 20);
  const e = m.shift()!;
  assert.deepEqual([e.key, e.value], ["a", 1]);
  assert.equal(m.has("a"), false);
  assert.equal(m.size, 2);
  assert.deepEqual([...m.values()].sort(), [20, 3]);
});

test("LruMap: delete anywhere, including while walking oldest-first; clear; shift on empty", () => {
  const m = new LruMap<string, number>();
  for (let i = 0; i < 6; i++) m.set(`k${i}`, i);
  assert.equal(m.delete("k0"), true); // the oldest
  assert.equal(m.delete("k5"), true); // the newest
  assert.equal(m.delete("k9"), false);
  for (const e of m.oldestFirst()) if (e.value % 2 === 0) m.delete(e.key);
  assert.deepEqual(keys(m), ["k1", "k3"]);
  m.set("k6", 6);
  assert.deepEqual(keys(m), ["k1", "k3", "k6"]);
  m.clear();
  assert.equal(m.size, 0);
  assert.equal(m.shift(), undefined);
  m.set("x", 1);
  assert.deepEqual(keys(m), ["x"], "usable after clear");
});

test("LruMap: an entry's value replaced in place reads back; useEntry touches, entry does not; add appends", () => {
  const m = new LruMap<string, number>();
  m.set("a", 1);
  m.set("b", 2);
  const a = m.entry("a")!;
  a.value = 10;
  assert.deepEqual(keys(m), ["a", "b"], "entry leaves the order alone");
  assert.equal(m.get("a"), 10);
  m.useEntry("a")!.value = 11;
  assert.deepEqual(keys(m), ["b", "a"]);
  assert.equal(m.use("a"), 11);
  assert.equal(m.entry("zz"), undefined);
  assert.equal(m.useEntry("zz"), undefined);
  // a key known absent is added as the newest, and leaves first only after the older ones
  m.add("c", 3);
  assert.deepEqual(keys(m), ["b", "a", "c"]);
  assert.equal(m.shift()!.key, "b");
});
