// The shared routing state of a router group, piece by piece: counts summed over sources (absolute
// reports, a source that leaves taken out whole), picks learned once, the group's /metrics, and the
// KV-event relay that lets one process bind the collector for all. Real ZMQ for the relay.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Publisher, Subscriber } from "zeromq";
import { Counter, Gauge, Registry as PromRegistry } from "prom-client";
import { parseConfig } from "../../src/router/config.js";
import { Registry } from "../../src/router/registry.js";
import { SharedLoad } from "../../src/router/cluster/shared-load.js";
import { WorkerLedger, countedEveryPick } from "../../src/router/cluster/ledger.js";
import { PickExchange } from "../../src/router/cluster/picks.js";
import { aggregateMetrics } from "../../src/router/cluster/aggregate.js";
import { KvEventRelay } from "../../src/router/cluster/kv-relay.js";
import { PrefixIndex } from "../../src/routing/index.js";
import { HitWatchdog } from "../../src/router/kv/watchdog.js";
import { freePort } from "../helpers/cli.js";

function registryWith(urls: string[]): Registry {
  const reg = new Registry(parseConfig({}));
  // a follower's registry: records only, no probes
  reg.leader = { failure: () => undefined, success: () => undefined };
  for (const url of urls) reg.upsert({ url, weight: 1 });
  return reg;
}

test("others' counts add into the engines' views, and a source that leaves takes its counts along", async () => {
  const reg = registryWith(["http://a:1", "http://b:1"]);
  const load = new SharedLoad(reg);
  const a = reg.engines.get("http://a:1")!;
  reg.takeSlot(a);
  load.set("w1", [["http://a:1", 3]]);
  load.set("w2", [
    ["http://a:1", 1],
    ["http://b:1", 2],
  ]);
  assert.equal(a.view.inFlight, 5, "own 1 + 3 + 1");
  assert.equal(load.own(a), 1);
  // reports are absolute: a repeat changes nothing, a new value replaces the old
  load.set("w1", [["http://a:1", 3]]);
  load.set("w1", [["http://a:1", 2]]);
  assert.equal(a.view.inFlight, 4);
  load.drop("w2");
  assert.equal(a.view.inFlight, 3);
  assert.equal(reg.engines.get("http://b:1")!.view.inFlight, 0);
  // a counter from the network that is not a count counts as nothing
  load.set("p:x", [["http://b:1", -5 as number]]);
  assert.equal(reg.engines.get("http://b:1")!.view.inFlight, 0);
  await reg.close();
});

test("a source reports only what changed, and a freed engine once more as 0", async () => {
  const reg = registryWith(["http://a:1"]);
  const load = new SharedLoad(reg);
  const a = reg.engines.get("http://a:1")!;
  assert.deepEqual(load.changes(), []);
  reg.takeSlot(a);
  reg.takeSlot(a);
  // in flight, and of those awaiting their first token
  assert.deepEqual(load.changes(), [["http://a:1", 2, 2]]);
  assert.deepEqual(load.changes(), []);
  reg.firstToken(a, performance.now());
  assert.deepEqual(load.changes(), [["http://a:1", 2, 1]]);
  reg.freeSlot(a, true);
  reg.freeSlot(a);
  assert.deepEqual(load.changes(), [["http://a:1", 0, 0]]);
  assert.deepEqual(load.changes(), []);
  await reg.close();
});

test("a replica's report is its whole table: an engine it no longer lists is back at 0", async () => {
  const reg = registryWith(["http://a:1", "http://b:1"]);
  const load = new SharedLoad(reg);
  load.replace("p:x", [
    ["http://a:1", 2],
    ["http://b:1", 1],
  ]);
  assert.equal(reg.engines.get("http://a:1")!.view.inFlight, 2);
  // its request on a ended: the next report lists b only, and a is passed on as 0
  assert.deepEqual(load.replace("p:x", [["http://b:1", 1]]), [
    ["http://a:1", 0, 0],
    ["http://b:1", 1],
  ]);
  assert.equal(reg.engines.get("http://a:1")!.view.inFlight, 0);
  await reg.close();
});

test("a claim stands when it counted every other pick, even if others' requests finished meanwhile", () => {
  const u = "http://e1";
  // [url, in flight, awaiting first token]
  assert.equal(countedEveryPick([u, 3, 1], [u, 3, 1]), true);
  assert.equal(countedEveryPick([u, 3, 1], [u, 2, 0]), true, "finished and first tokens learned late");
  assert.equal(countedEveryPick([u, 3, 1], [u, 4, 2]), false, "another worker's pick was not counted");
  assert.equal(countedEveryPick([u, 3, 1], [u, 3, 2]), false, "a pick hidden by a finish still shows");
  assert.equal(countedEveryPick([u], [u, 1, 1]), false, "an engine read as idle");
});

test("a confirmed pick counts until a report written after its answer, even one with no counts", () => {
  const ledger = new WorkerLedger();
  // the claim's batch reported a at 0 (the pick itself still tentative), then the pick stood
  ledger.report([["http://a:1", 0, 0]], 0);
  assert.deepEqual(ledger.confirm(1, "http://a:1"), ["http://a:1", 1, 1]);
  // a report written before the answer was heard still counts it on top
  assert.deepEqual(ledger.report([["http://a:1", 0, 0]], 0), [["http://a:1", 1, 1]]);
  // the request ended before the worker's next report: its counts are as reported, only `acked` moved
  assert.deepEqual(ledger.report([], 1), [["http://a:1", 0, 0]]);
});

test("a new record of an engine starts from the others' counts", async () => {
  const reg = registryWith([]);
  const load = new SharedLoad(reg);
  load.set("w1", [["http://late:1", 4]]);
  reg.upsert({ url: "http://late:1", weight: 1 });
  assert.equal(reg.engines.get("http://late:1")!.view.inFlight, 4);
  await reg.close();
});

test("picks are sent once and others' are learned without being sent on", () => {
  const prefix = new PrefixIndex();
  const watchdog = new HitWatchdog();
  let scheduled = 0;
  const ex = new PickExchange({ prefix, watchdog }, () => scheduled++);
  prefix.insert([1, 2, 3], "http://a:1");
  watchdog.predicted("http://a:1", 48);
  assert.equal(scheduled, 1, "one flush per batch");
  assert.deepEqual(ex.take(), [["http://a:1", [1, 2, 3], 48]]);
  ex.apply([["http://b:1", [7, 8], 0]]);
  assert.equal(prefix.size, 5);
  assert.deepEqual(ex.take(), [], "a learned pick is not sent again");
  ex.close();
});

test("a worker learns a pick once it stands, and never one the primary refused", () => {
  const prefix = new PrefixIndex();
  const watchdog = new HitWatchdog();
  const ex = new PickExchange({ prefix, watchdog }, () => undefined, true);
  prefix.insert([1, 2], "http://a:1");
  assert.equal(prefix.size, 0, "held while the claim is out");
  const refused = ex.takeHeld();
  prefix.insert([1, 2], "http://b:1");
  const stood = ex.takeHeld();
  ex.commit(stood);
  void refused;
  assert.deepEqual([...prefix.enginesHeld()], ["http://b:1"]);
  assert.deepEqual(ex.take(), [["http://b:1", [1, 2], 0]]);
  ex.close();
});

test("the group's /metrics adds counters and own gauges, and takes shared gauges once", async () => {
  const one = async (inFlight: number, requests: number) => {
    const r = new PromRegistry();
    new Gauge({ name: "switchyard_engine_healthy", help: "h", labelNames: ["engine"], registers: [r] }).set(
      { engine: "e" },
      1,
    );
    new Gauge({ name: "switchyard_engine_in_flight", help: "h", labelNames: ["engine"], registers: [r] }).set(
      { engine: "e" },
      inFlight,
    );
    new Counter({ name: "switchyard_requests_total", help: "h", registers: [r] }).inc(requests);
    return (await r.getMetricsAsJSON()) as unknown[];
  };
  const { text } = await aggregateMetrics([await one(2, 10), await one(3, 5)]);
  assert.match(text, /^switchyard_engine_healthy\{engine="e"\} 1$/m);
  assert.match(text, /^switchyard_engine_in_flight\{engine="e"\} 5$/m);
  assert.match(text, /^switchyard_requests_total 15$/m);
});

test(
  "the KV-event relay binds once and passes every message to each worker's collector",
  { timeout: 20_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "kv-relay-"));
    const targets = [`ipc://${join(dir, "w0.sock")}`, `ipc://${join(dir, "w1.sock")}`];
    const port = await freePort();
    const relay = await KvEventRelay.start(`tcp://127.0.0.1:${port}`, targets);
    const subs = targets.map((t) => {
      const s = new Subscriber({ linger: 0 });
      s.subscribe();
      return { s, bound: s.bind(t) };
    });
    await Promise.all(subs.map((x) => x.bound));
    const engine = new Publisher({ linger: 0 });
    engine.connect(`tcp://127.0.0.1:${port}`);
    const got = subs.map(({ s }) =>
      (async () => {
        for await (const frames of s) {
          if (frames[0]!.toString() === "kv@e:8000@m" && frames[2]!.toString() === "payload") return frames;
        }
        return undefined;
      })(),
    );
    // PUB/SUB joins late: publish until both have one
    let done = false;
    void Promise.all(got).then(() => (done = true));
    for (let seq = 0; !done && seq < 400; seq++) {
      await engine.send(["kv@e:8000@m", Buffer.from([0, 0, 0, 0, 0, 0, 0, seq & 255]), "payload"]);
      await new Promise((r) => setTimeout(r, 25));
    }
    const frames = await Promise.all(got);
    for (const f of frames) assert.equal(f?.length, 3, "the frames arrive untouched");
    engine.close();
    for (const { s } of subs) s.close();
    await relay.close();
  },
);
