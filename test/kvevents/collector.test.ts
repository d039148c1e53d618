import { test } from "node:test";
import assert from "node:assert/strict";
import { Publisher } from "zeromq";
import { encodeBatch } from "../../src/kvevents/codec.js";
import {
  KvEventCollector,
  topicAddress,
  UNKNOWN_TOPICS_BYTES,
  UNKNOWN_TOPICS_MAX,
  urlAddresses,
} from "../../src/kvevents/collector.js";
import type { KvEventBatch } from "../../src/kvevents/events.js";
import { ZmqEventPublisher } from "../../src/kvevents/publisher.js";
import { zmqGuardCounts } from "../../src/kvevents/zmq-guard.js";
import { batchNo, loopbackConfig, waitFor } from "./helpers.js";

function seqFrame(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
}

function recorder() {
  const r = {
    batches: [] as Array<[number, KvEventBatch]>,
    gaps: [] as Array<[number, number]>,
    restarts: [] as number[],
    onBatch: (s: number, b: KvEventBatch) => void r.batches.push([s, b]),
    onGap: (a: number, b: number) => void r.gaps.push([a, b]),
    onRestart: (s: number) => void r.restarts.push(s),
  };
  return r;
}

/** A raw PUB that connects to the collector and sends frames we choose (seqs with holes, old ones). */
async function rawPublisher(endpoint: string): Promise<Publisher> {
  const p = new Publisher({ linger: 0 });
  p.connect(endpoint);
  return p;
}

/** PUB→SUB subscriptions travel asynchronously: send seq 0 until the collector has seen a message. */
async function warmUp(c: KvEventCollector, send: () => Promise<void>): Promise<void> {
  const before = c.stats.received;
  for (let i = 0; c.stats.received === before; i++) {
    assert.ok(i < 200, "the collector never received anything");
    await send();
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("topics name the engine: kv@<host:port>@<model> or kv@<host>@<model>", () => {
  assert.equal(topicAddress("kv@10.0.0.7:8000@meta-llama/Llama-3.1-8B-Instruct"), "10.0.0.7:8000");
  assert.equal(topicAddress("kv@10.0.0.7@m"), "10.0.0.7");
  assert.equal(topicAddress("kv@pod-a"), "pod-a");
  assert.equal(topicAddress(""), null);
  assert.equal(topicAddress("kv@@m"), null);
  assert.equal(topicAddress("engine-0"), null);
  assert.deepEqual(urlAddresses("http://10.0.0.7:8000"), ["10.0.0.7:8000", "10.0.0.7"]);
  assert.deepEqual(urlAddresses("http://engine"), ["engine:80", "engine"]);
  assert.deepEqual(urlAddresses("http://[::1]:8000"), ["[::1]:8000", "[::1]", "::1:8000", "::1"]);
});

test("engines that connect out feed one bound collector; each engine's batches come in order under its own name", async () => {
  const c = await KvEventCollector.bind("tcp://127.0.0.1:*");
  const a = recorder();
  c.attach({ id: "http://127.0.0.1:8001", addresses: urlAddresses("http://127.0.0.1:8001") }, a);
  // the sim's own publisher, connecting because its endpoint has no wildcard (vLLM's rule)
  const pubA = await ZmqEventPublisher.create(
    loopbackConfig({ endpoint: c.endpoint, replay_endpoint: null, topic: "kv@127.0.0.1:8001@m" }),
  );
  const rawB = await rawPublisher(c.endpoint);
  try {
    let i = 0;
    await warmUp(c, async () => pubA.publish(batchNo(i++)));
    const first = a.batches[0]?.[0] ?? 0;
    for (let k = 0; k < 5; k++) pubA.publish(batchNo(i++));
    await waitFor(() => a.batches.at(-1)?.[0] === i - 1, "engine A's batches");
    assert.deepEqual(
      a.batches.map(([s]) => s),
      Array.from({ length: i - first }, (_, k) => first + k),
    );
    for (const [s, b] of a.batches) assert.deepEqual(b, batchNo(s));

    // engine B is not known yet: its messages are counted and dropped
    const topicB = Buffer.from("kv@127.0.0.1:8002@m");
    await warmUp(c, () => rawB.send([topicB, seqFrame(0), encodeBatch(batchNo(0), "map")]));
    assert.ok(c.stats.dropped["unknown-engine"] >= 1);
    // ...until it is attached: then it is picked up from the next message
    const b = recorder();
    c.attach({ id: "http://127.0.0.1:8002", addresses: urlAddresses("http://127.0.0.1:8002") }, b);
    await rawB.send([topicB, seqFrame(1), encodeBatch(batchNo(1), "map")]);
    await rawB.send([topicB, seqFrame(2), encodeBatch(batchNo(2), "map")]);
    // a lost seq (no replay endpoint): a gap of engine B only, once B's next batch follows the jump
    await rawB.send([topicB, seqFrame(4), encodeBatch(batchNo(4), "map")]);
    await rawB.send([topicB, seqFrame(5), encodeBatch(batchNo(5), "map")]);
    await waitFor(() => b.batches.length === 4, "engine B's batches");
    assert.deepEqual(
      b.batches.map(([s]) => s),
      [1, 2, 4, 5],
    );
    assert.deepEqual(b.gaps, [[3, 3]]);
    assert.deepEqual(a.gaps, []);
    // B restarts: its seq goes back to 0, and 1 follows
    await rawB.send([topicB, seqFrame(0), encodeBatch(batchNo(0), "map")]);
    await rawB.send([topicB, seqFrame(1), encodeBatch(batchNo(1), "map")]);
    await waitFor(() => b.restarts.length === 1, "B's restart");
    assert.equal(c.streamStats("http://127.0.0.1:8002")!.restarts, 1);
    assert.equal(c.streamStats("http://127.0.0.1:8001")!.restarts, 0);
    // a topic outside the convention is dropped too
    await rawB.send([Buffer.from("engine-b"), seqFrame(9), encodeBatch(batchNo(9), "map")]);
    await waitFor(() => c.stats.dropped.topic === 1, "the bad topic to be counted");
    // detached engines are unknown again
    c.detach("http://127.0.0.1:8002");
    const unknown = c.stats.dropped["unknown-engine"];
    await rawB.send([topicB, seqFrame(2), encodeBatch(batchNo(2), "map")]);
    await waitFor(() => c.stats.dropped["unknown-engine"] === unknown + 1, "B's message to be dropped");
  } finally {
    rawB.close();
    await pubA.close();
    await c.close();
  }
});

test("two engines on one host must name their port: a bare host shared by both is ambiguous", async () => {
  const c = await KvEventCollector.bind("tcp://127.0.0.1:*");
  const a = recorder();
  const b = recorder();
  c.attach({ id: "a", addresses: urlAddresses("http://127.0.0.1:8001") }, a);
  c.attach({ id: "b", addresses: urlAddresses("http://127.0.0.1:8002") }, b);
  const raw = await rawPublisher(c.endpoint);
  try {
    await warmUp(c, () => raw.send([Buffer.from("kv@127.0.0.1@m"), seqFrame(0), encodeBatch(batchNo(0))]));
    assert.ok(c.stats.dropped["ambiguous-engine"] >= 1);
    await raw.send([Buffer.from("kv@127.0.0.1:8002@m"), seqFrame(0), encodeBatch(batchNo(0))]);
    await waitFor(() => b.batches.length === 1, "b's batch");
    assert.equal(a.batches.length, 0);
  } finally {
    raw.close();
    await c.close();
  }
});

test("a 64 MiB frame sent to the collector is refused and counted; the engines' batches still arrive", async () => {
  const c = await KvEventCollector.bind("tcp://127.0.0.1:*", { maxMessageBytes: 1 << 20 });
  const a = recorder();
  c.attach({ id: "a", addresses: urlAddresses("http://127.0.0.1:8001") }, a);
  const raw = await rawPublisher(c.endpoint);
  const topic = Buffer.from("kv@127.0.0.1:8001@m");
  try {
    await warmUp(c, () => raw.send([topic, seqFrame(0), encodeBatch(batchNo(0))]));
    const before = zmqGuardCounts.disconnects["kv-collector"];
    await raw.send([topic, seqFrame(1), Buffer.alloc(64 * 2 ** 20)]);
    await waitFor(() => zmqGuardCounts.disconnects["kv-collector"] > before, "libzmq to cut the sender off");
    // the PUB reconnects by itself: the engine's next batches come through
    const received = c.stats.received;
    for (let i = 2; c.stats.received === received; i++) {
      assert.ok(i < 600, "nothing arrived after the reconnect");
      await raw.send([topic, seqFrame(i), encodeBatch(batchNo(i))]);
      await new Promise((r) => setTimeout(r, 50));
    }
    // several frames, each under the cap, that together are over it: measured and dropped
    await raw.send([topic, seqFrame(900), Buffer.alloc(600 * 1024), Buffer.alloc(600 * 1024)]);
    await waitFor(() => c.stats.dropped.oversized === 1, "the many-frame message dropped");
    assert.equal(zmqGuardCounts.oversized["kv-collector"] >= 1, true);
  } finally {
    raw.close();
    await c.close();
  }
});

test("unknown topics are remembered within a count and a byte bound: one sender cycling huge topics cannot grow the cache", async () => {
  const c = await KvEventCollector.bind("tcp://127.0.0.1:*");
  const raw = await rawPublisher(c.endpoint);
  try {
    await warmUp(c, async () => raw.send(["kv@warm-up@m", seqFrame(0), encodeBatch(batchNo(0))]));
    const big = "x".repeat(256 * 1024);
    const before = c.stats.dropped["unknown-engine"];
    for (let i = 0; i < 100; i++)
      await raw.send([`kv@unknown-${i}:1@${big}`, seqFrame(i), encodeBatch(batchNo(i))]);
    await waitFor(() => c.stats.dropped["unknown-engine"] - before === 100, "100 unknown topics dropped");
    const seen = c.unknownTopics;
    assert.ok(seen.bytes <= UNKNOWN_TOPICS_BYTES, `${seen.bytes} bytes of topics remembered`);
    // short topics: the count binds
    for (let i = 0; i < 100; i++) await raw.send([`kv@short-${i}:1@m`, seqFrame(i), encodeBatch(batchNo(i))]);
    await waitFor(() => c.stats.dropped["unknown-engine"] - before === 200, "100 more dropped");
    assert.ok(c.unknownTopics.count <= UNKNOWN_TOPICS_MAX, `${c.unknownTopics.count} topics remembered`);
    assert.ok(c.unknownTopics.bytes <= UNKNOWN_TOPICS_BYTES);
  } finally {
    raw.close();
    await c.close();
  }
});
