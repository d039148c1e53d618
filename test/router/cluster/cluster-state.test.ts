// The shared routing state of a router group, piece by piece: counts summed over sources (absolute
// reports, a source that leaves taken out whole), picks learned once, the group's /metrics, and the
// KV-event relay that lets one process bind the collector for all. Real ZMQ for the relay.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Publisher, Subscriber } from "zeromq";
import { Counter, Gauge, Registry as PromRegistry } from "prom-client";
import { parseConfig } from "../../../src/router/config/config.js";
import { EngineRegistry } from "../../../src/router/engines/engine-registry.js";
import { SharedLoad } from "../../../src/router/cluster/shared-load.js";
import { WorkerLedger, countedEveryPick } from "../../../src/router/cluster/ledger.js";
import { PickExchange } from "../../../src/router/cluster/picks.js";
import { Claims } from "../../../src/router/cluster/claims.js";
import type { ToPrimary } from "../../../src/router/cluster/protocol.js";
import { aggregateMetrics } from "../../../src/router/cluster/aggregate.js";
import { KvEventRelay } from "../../../src/router/cluster/kv-relay.js";
import { createPolicy, PrefixIndex, type Policy } from "../../../src/routing/index.js";
import { HitWatchdog } from "../../../src/router/kv/watchdog.js";
import { freePort } from "../../../bench/support/cli.js";

function registryWith(urls: string[]): EngineRegistry {
  const reg = new EngineRegistry(parseConfig({}));
  // a follower's registry: records only, no probes
  reg.leader = { failure: () => undefined, shutdown: () => undefined, success: () => undefined };
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
  // in flight, of those awaiting their first token, and their queued prefill (no ledger here: 0)
  assert.deepEqual(load.changes(), [["http://a:1", 2, 2, 0]]);
  assert.deepEqual(load.changes(), []);
  reg.firstToken(a, performance.now());
  assert.deepEqual(load.changes(), [["http://a:1", 2, 1, 0]]);
  reg.freeSlot(a, true);
  reg.freeSlot(a);
  assert.deepEqual(load.changes(), [["http://a:1", 0, 0, 0]]);
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
    ["http://a:1", 0, 0, 0],
    ["http://b:1", 1],
  ]);
  assert.equal(reg.engines.get("http://a:1")!.view.inFlight, 0);
  await reg.close();
});

test("a claim stands when it counted every other pick, even if others' requests finished meanwhile", () => {
  const u = "http://e1";
  // [url, in flight, awaiting first token, queued prefill tokens]
  assert.equal(countedEveryPick([u, 3, 1], [u, 3, 1]), true);
  assert.equal(
    countedEveryPick([u, 3, 1, 500], [u, 3, 1, 900]),
    true,
    "queued prefill restated by a report, no new pick",
  );
  assert.equal(countedEveryPick([u, 3, 1], [u, 2, 0]), true, "finished and first tokens learned late");
  assert.equal(countedEveryPick([u, 3, 1], [u, 4, 2]), false, "another worker's pick was not counted");
  assert.equal(countedEveryPick([u, 3, 1], [u, 3, 2]), false, "a pick hidden by a finish still shows");
  assert.equal(countedEveryPick([u], [u, 1, 1]), false, "an engine read as idle");
});

test("a confirmed pick counts until a report written after its answer, even one with no counts", () => {
  const ledger = new WorkerLedger();
  // the claim's batch reported a at 0 (the pick itself still tentative), then the pick stood
  // (its prefill is in the report: the worker's ledger learned it at the decision)
  ledger.report([["http://a:1", 0, 0, 900]], 0);
  assert.deepEqual(ledger.confirm(1, "http://a:1"), ["http://a:1", 1, 1, 900]);
  // a report written before the answer was heard still counts it on top
  assert.deepEqual(ledger.report([["http://a:1", 0, 0, 900]], 0), [["http://a:1", 1, 1, 900]]);
  // the request ended before the worker's next report: its counts are as reported, only `acked` moved
  assert.deepEqual(ledger.report([], 1), [["http://a:1", 0, 0, 900]]);
});

test("others' requests awaiting a first token and their queued prefill show as the views' peer part", async () => {
  const reg = registryWith(["http://a:1"]);
  let queued = 1200;
  const load = new SharedLoad(reg, () => queued);
  const a = reg.engines.get("http://a:1")!;
  reg.takeSlot(a);
  load.set("w1", [["http://a:1", 3, 2, 9000]]);
  load.set("p:x", [["http://a:1", 1, 1, 150]]);
  assert.equal(a.view.awaitingFirstToken, 4, "own 1 + 2 + 1");
  assert.equal(a.view.peerAwaitingFirstToken, 3);
  assert.equal(a.view.peerPrefillTokens, 9150);
  assert.equal(load.own(a, "awaitingFirstToken"), 1);
  // this process's own prefill is its ledger's, a whole number of tokens
  queued = 1200.4;
  assert.deepEqual(load.changes(), [["http://a:1", 1, 1, 1200]]);
  load.drop("w1");
  assert.equal(a.view.peerAwaitingFirstToken, 1);
  assert.equal(a.view.peerPrefillTokens, 150);
  // a replica that reports two counts (no prefill) counts 0 tokens
  load.replace("p:x", [["http://a:1", 1, 1]]);
  assert.equal(a.view.peerPrefillTokens, 0);
  await reg.close();
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

test("a claim carries the counts of the engine it picked, or every engine's when the policy reads them all", async () => {
  const reg = registryWith(["http://a:1", "http://b:1", "http://c:1"]);
  const load = new SharedLoad(reg);
  load.set("w1", [["http://b:1", 2, 1]]);
  const picks = new PickExchange(
    { prefix: new PrefixIndex(), watchdog: new HitWatchdog() },
    () => undefined,
    true,
  );
  const sent: ToPrimary[] = [];
  let policy: Policy = createPolicy("least-load");
  const claims = new Claims(
    reg,
    load,
    picks,
    (m) => sent.push(m),
    () => true,
    () => policy,
    () => undefined,
  );
  const claimOf = (m: ToPrimary | undefined) => (m?.t === "claims" ? m.items[0]! : undefined);
  const holder = () => ({ claim: 0, takeBack: () => false, stands: () => undefined });
  claims.take(reg.engines.get("http://a:1")!, holder());
  // least-load prices each engine by its own load: another worker's pick elsewhere cannot change this one
  assert.deepEqual(claimOf(sent[0])?.seen, [["http://a:1", 0, 0, 0]]);
  claims.answer([[1, true]]);
  // session's bounded load reads the fleet's total: every engine's counts
  policy = createPolicy("session");
  claims.take(reg.engines.get("http://c:1")!, holder());
  assert.deepEqual(
    claimOf(sent[1])?.seen.map((r) => r[0]),
    ["http://a:1", "http://b:1", "http://c:1"],
  );
  assert.deepEqual(claimOf(sent[1])?.seen[1], ["http://b:1", 2, 1, 0]);
  claims.close();
  await reg.close();
});

test("a claimed pick is counted by its worker at once and reported only once it stands, or never if its request let go first", async () => {
  const reg = registryWith(["http://a:1", "http://b:1"]);
  const load = new SharedLoad(reg);
  const picks = new PickExchange(
    { prefix: new PrefixIndex(), watchdog: new HitWatchdog() },
    () => undefined,
    true,
  );
  const claims = new Claims(
    reg,
    load,
    picks,
    () => undefined,
    () => true,
    () => createPolicy("least-load"),
    () => undefined,
  );
  const a = reg.engines.get("http://a:1")!;
  const b = reg.engines.get("http://b:1")!;
  const said: string[] = [];
  const holder = (name: string, canTakeBack: boolean) => ({
    claim: 0,
    takeBack: () => (said.push(`${name} taken back`), canTakeBack),
    stands: () => void said.push(`${name} stands`),
  });
  const reported = (e: typeof a) => load.report(e).slice(1, 3);

  // refused and taken back: out of the reports until the request frees its slot and lets go
  const refused = holder("refused", true);
  claims.take(a, refused);
  assert.equal(a.view.inFlight, 1, "this worker's next pick counts it");
  assert.deepEqual(reported(a), [0, 0]);
  claims.answer([[refused.claim, false]]);
  assert.deepEqual(reported(a), [0, 0], "still out of the reports: its slot is not freed yet");
  claims.withdraw(refused.claim);
  reg.freeSlot(a);
  assert.deepEqual(reported(a), [0, 0]);

  // confirmed: reported from its answer on
  const confirmed = holder("confirmed", true);
  claims.take(b, confirmed);
  assert.deepEqual(reported(b), [0, 0]);
  claims.answer([[confirmed.claim, true]]);
  assert.deepEqual(reported(b), [1, 1]);

  // refused when it can no longer be taken back: it stands
  const late = holder("late", false);
  claims.take(a, late);
  claims.answer([[late.claim, false]]);
  assert.deepEqual(reported(a), [1, 1]);

  // the request failed before the word: its late confirmation changes nothing
  const gone = holder("gone", true);
  claims.take(b, gone);
  claims.withdraw(gone.claim);
  reg.freeSlot(b);
  claims.answer([[gone.claim, true]]);
  assert.deepEqual(reported(b), [1, 1], "only the confirmed one");
  assert.deepEqual(said, ["refused taken back", "confirmed stands", "late taken back", "late stands"]);
  claims.close();
  await reg.close();
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
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "kv-relay-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
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
