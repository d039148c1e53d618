// A counter family hands back the same child for the same label values, scrapes each label set once in
// the order it first came, and keeps at most 10,000 of them, dropping the oldest (whose values then
// start a new child).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry, type Metric } from "prom-client";
import { CounterFamily } from "../../src/obs/metric-families.js";

test("the same label values give the same child; each label set is scraped once, oldest first", async () => {
  const f = new CounterFamily("t_requests_total", "help", ["model", "status"] as const);
  f.child("m", "200").value++;
  f.child("m", "500").value++;
  f.child("m", "200").value += 2;
  f.child("n", "200").value++;
  assert.equal(f.child("m", "200"), f.child("m", "200"));
  assert.notEqual(f.child("m", "200"), f.child("m", "500"));
  assert.deepEqual(
    f.get().values.map((v) => [v.labels, v.value]),
    [
      [{ model: "m", status: "200" }, 3],
      [{ model: "m", status: "500" }, 1],
      [{ model: "n", status: "200" }, 1],
    ],
  );
  const r = new Registry();
  r.registerMetric(f as unknown as Metric);
  assert.match(await r.metrics(), /t_requests_total\{model="n",status="200"\} 1/);
});

test("a family without labels has one child, and `inc` by label object finds the bound child", () => {
  const none = new CounterFamily("t_none_total", "help", []);
  none.child().value++;
  none.child().value++;
  assert.deepEqual(none.get().values, [{ labels: {}, value: 2 }]);
  const f = new CounterFamily("t_inc_total", "help", ["a", "b"] as const);
  f.inc({ a: "x", b: "y" }, 5);
  assert.equal(f.child("x", "y").value, 5);
});

test("past 10,000 label sets the oldest is dropped, and its values start a new child", () => {
  const f = new CounterFamily("t_many_total", "help", ["model", "engine"] as const);
  const first = f.child("m0", "e");
  first.value = 7;
  for (let i = 1; i < 10_000; i++) f.child(`m${i}`, "e").value++;
  assert.equal(f.get().values.length, 10_000);
  f.child("new", "e").value++;
  const values = f.get().values;
  assert.equal(values.length, 10_000);
  assert.equal(values[0]!.labels.model, "m1");
  assert.equal(values.at(-1)!.labels.model, "new");
  const again = f.child("m0", "e");
  assert.notEqual(again, first);
  assert.equal(again.value, 0);
  assert.equal(f.get().values.length, 10_000);
  assert.equal(f.get().values[0]!.labels.model, "m2");
  f.reset();
  assert.equal(f.get().values.length, 0);
  assert.equal(f.child("m5", "e").value, 0);
});
