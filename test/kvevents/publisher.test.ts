import { test } from "node:test";
import assert from "node:assert/strict";
import { Dealer, Subscriber } from "zeromq";
import { decodeBatch } from "../../src/kvevents/codec.js";
import { parseKvEventsConfig } from "../../src/kvevents/config.js";
import { endpointBinds, offsetEndpoint, wildcardOnHost } from "../../src/kvevents/endpoint.js";
import {
  createEventPublisher,
  NullEventPublisher,
  REPLAY_END_SEQ,
  ZmqEventPublisher,
} from "../../src/kvevents/publisher.js";
import { batchNo, loopbackConfig, sleep, waitFor } from "./helpers.js";

test("bind/connect and data-parallel port rules follow vLLM", () => {
  assert.equal(endpointBinds("tcp://*:5557"), true);
  assert.equal(endpointBinds("tcp://[::]:5557"), true);
  assert.equal(endpointBinds("ipc:///tmp/kv"), true);
  assert.equal(endpointBinds("inproc://kv"), true);
  assert.equal(endpointBinds("tcp://127.0.0.1:0"), true);
  assert.equal(endpointBinds("tcp://10.0.0.7:5557"), false);
  assert.equal(offsetEndpoint("tcp://*:5557", 2), "tcp://*:5559");
  assert.equal(offsetEndpoint("tcp://*:5557", 0), "tcp://*:5557");
  assert.equal(offsetEndpoint("tcp://127.0.0.1:*", 3), "tcp://127.0.0.1:*");
  assert.equal(offsetEndpoint("ipc:///tmp/kv", 1), "ipc:///tmp/kv_dp1");
  assert.throws(() => offsetEndpoint("tcp://*:65535", 1), /exceeds 65535/);
});

test("a publisher told its server's host binds wildcard endpoints there, and a taken port is named", async () => {
  assert.deepEqual(wildcardOnHost("tcp://*:5557", "127.0.0.1"), {
    endpoint: "tcp://127.0.0.1:5557",
    ipv6: false,
  });
  assert.deepEqual(wildcardOnHost("tcp://*:5557", "localhost"), {
    endpoint: "tcp://127.0.0.1:5557",
    ipv6: false,
  });
  assert.deepEqual(wildcardOnHost("tcp://*:5557", "::1"), { endpoint: "tcp://[::1]:5557", ipv6: true });
  // every interface stays every interface; names and other transports are left alone
  for (const host of ["0.0.0.0", "::", "engine-0", undefined])
    assert.deepEqual(wildcardOnHost("tcp://*:5557", host), { endpoint: "tcp://*:5557", ipv6: false });
  assert.equal(wildcardOnHost("tcp://10.0.0.7:5557", "127.0.0.1").endpoint, "tcp://10.0.0.7:5557");
  assert.equal(wildcardOnHost("ipc:///tmp/kv", "127.0.0.1").endpoint, "ipc:///tmp/kv");

  const pub = await ZmqEventPublisher.create(
    loopbackConfig({ endpoint: "tcp://*:*", replay_endpoint: "tcp://*:*" }),
    { bindHost: "127.0.0.1" },
  );
  try {
    assert.match(pub.endpoint, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    assert.match(pub.replayEndpoint!, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    // a second publisher on the same ports says which socket and endpoint could not be bound
    const port = pub.endpoint.split(":").at(-1);
    await assert.rejects(
      ZmqEventPublisher.create(loopbackConfig({ endpoint: `tcp://*:${port}`, replay_endpoint: null }), {
        bindHost: "127.0.0.1",
      }),
      new RegExp(`cannot bind the KV-event PUB socket to tcp://127\\.0\\.0\\.1:${port}: .*in use`, "i"),
    );
  } finally {
    await pub.close();
  }
});

test("config: defaults as in vLLM, errors name the field", () => {
  const c = parseKvEventsConfig('{"enable_kv_cache_events": true}');
  assert.deepEqual(c, {
    enabled: true,
    publisher: "zmq",
    endpoint: "tcp://*:5557",
    replayEndpoint: null,
    topic: "",
    bufferSteps: 10000,
    hwm: 100000,
    maxQueueSize: 100000,
  });
  assert.equal(parseKvEventsConfig("{}").publisher, "null");
  assert.throws(() => parseKvEventsConfig('{"buffer_steps": 0}'), /buffer_steps: must be at least 1/);
  assert.throws(() => parseKvEventsConfig('{"publisher": "kafka"}'), /publisher:/);
  assert.throws(() => parseKvEventsConfig('{"endpoint": "localhost:5557"}'), /endpoint: must look like/);
  assert.throws(
    () => parseKvEventsConfig('{"enable_kv_events": true}'),
    /unknown field\(s\) "enable_kv_events"/,
  );
  assert.throws(() => parseKvEventsConfig("{nope"), /not valid JSON/);
});

test("publisher 'null' or disabled events give the null publisher", async () => {
  const p = await createEventPublisher(parseKvEventsConfig('{"enable_kv_cache_events": false}'));
  assert.ok(p instanceof NullEventPublisher);
  p.publish(batchNo(0));
  await p.close();
});

test("frames are [topic, seq u64 BE from 0, payload], and replay answers from a start seq then the end frame", async () => {
  const pub = await ZmqEventPublisher.create(loopbackConfig({ topic: "kv@sim@m", buffer_steps: 4 }));
  // receive timeouts and the publish loop's bound are hang guards
  const sub = new Subscriber({ receiveTimeout: 30_000 });
  const dealer = new Dealer({ receiveTimeout: 30_000 });
  try {
    assert.match(pub.endpoint, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    sub.connect(pub.endpoint);
    sub.subscribe("kv@sim@m");
    // PUB drops what it sends before the subscription arrives: publish until one gets through.
    let i = 0;
    const firstReceive = sub.receive();
    let frames: Buffer[] | undefined;
    while (!frames) {
      pub.publish(batchNo(i++));
      frames = await Promise.race([firstReceive, sleep(50).then(() => undefined)]);
      assert.ok(i < 600, "the subscriber never received anything");
    }
    while (i < 6) pub.publish(batchNo(i++));
    for (let current: Buffer[] = frames; ; current = await sub.receive()) {
      const [topic, seq, payload] = current;
      assert.equal(topic!.toString(), "kv@sim@m");
      assert.equal(seq!.length, 8);
      // batch k is the k-th publish(): its seq is k, counting from 0
      assert.deepEqual(decodeBatch(payload!), batchNo(Number(seq!.readBigUInt64BE())));
      if (seq!.readBigUInt64BE() === BigInt(i - 1)) break;
    }
    // buffer_steps 4: the last 4 seqs are kept; asking from 0 returns those, then the end marker
    dealer.connect(pub.replayEndpoint!);
    const start = Buffer.alloc(8);
    await dealer.send([Buffer.alloc(0), start]);
    const got: bigint[] = [];
    for (;;) {
      const frames = await dealer.receive();
      assert.equal(frames.length, 3);
      assert.equal(frames[0]!.length, 0);
      const seq = frames[1]!.readBigUInt64BE();
      if (seq === REPLAY_END_SEQ) {
        assert.equal(frames[2]!.length, 0);
        break;
      }
      assert.deepEqual(decodeBatch(frames[2]!), batchNo(Number(seq)));
      got.push(seq);
    }
    const last = BigInt(i - 1);
    assert.deepEqual(got, [last - 3n, last - 2n, last - 1n, last]);
    // from the middle
    start.writeBigUInt64BE(last - 1n);
    await dealer.send([Buffer.alloc(0), start]);
    const mid: bigint[] = [];
    for (;;) {
      const frames = await dealer.receive();
      const seq = frames[1]!.readBigUInt64BE();
      if (seq === REPLAY_END_SEQ) break;
      mid.push(seq);
    }
    assert.deepEqual(mid, [last - 1n, last]);
    assert.equal(pub.stats.published, i);
    assert.equal(pub.stats.sent, i);
    assert.equal(pub.stats.replayRequests, 2);
  } finally {
    sub.close();
    dealer.close();
    await pub.close();
  }
});

test("a full send queue drops the oldest batches and counts them; publish never waits", async () => {
  const pub = await ZmqEventPublisher.create(loopbackConfig({ max_queue_size: 3, replay_endpoint: null }));
  try {
    // All published in one tick: the pump cannot run in between, so only the newest 3 stay queued
    // (the first is already taken by the pump when publish starts it).
    for (let i = 0; i < 10; i++) pub.publish(batchNo(i));
    assert.equal(pub.stats.published, 10);
    assert.equal(pub.stats.dropped, 6);
    await pub.flush();
    await waitFor(() => pub.stats.sent === 4, "the queued batches to be sent");
    assert.equal(pub.nextSequence, 10n);
  } finally {
    await pub.close();
  }
  // publishing after close is a no-op, not an error
  pub.publish(batchNo(11));
  assert.equal(pub.stats.published, 10);
});

test("data-parallel rank offsets a fixed port", async (t) => {
  const { freePort } = await import("../../bench/support/cli.js");
  const free = await freePort();
  const port = free - 1; // rank 1 lands on the port known to be free
  const pub = await ZmqEventPublisher.create(
    loopbackConfig({ endpoint: `tcp://*:${port}`, replay_endpoint: null }),
    { dataParallelRank: 1 },
  ).catch((err: Error) => {
    t.skip(`port ${port + 1} taken: ${err.message}`);
    return null;
  });
  if (!pub) return;
  try {
    assert.equal(pub.endpoint, `tcp://127.0.0.1:${port + 1}`);
  } finally {
    await pub.close();
  }
});
