// CURVE on the KV-event sockets: key files as zmq_curve_keypair writes them, a subscriber that believes
// only the publisher holding the expected secret key, and a collector that lets in only the publishers
// it lists. Real ZMQ over loopback; a forged publisher writes the very topic of a real engine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { KvEventCollector } from "../../src/kvevents/collector.js";
import {
  CurveKeyError,
  curveClientFor,
  endpointIsLocal,
  loadCurveKeys,
  newKeyPair,
  publicKeyOf,
  writeKeyDir,
  z85Decode,
  z85Encode,
  type CurveKeys,
} from "../../src/kvevents/curve.js";
import type { KvEventBatch } from "../../src/kvevents/events.js";
import { ZmqEventPublisher } from "../../src/kvevents/publisher.js";
import { KvEventSubscriber } from "../../src/kvevents/subscriber.js";
import { zmqGuardCounts } from "../../src/kvevents/zmq-guard.js";
import { batchNo, loopbackConfig, waitFor } from "./helpers.js";

function keys(opts: { serverKey?: string; clientKeys?: string[] } = {}): CurveKeys {
  const kp = curveKeyPair();
  return {
    ...kp,
    serverKey: opts.serverKey ?? null,
    clientKeys: opts.clientKeys ?? null,
    source: "test",
  };
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "switchyard-curve-test-"));
}

/** the first block hash of each batch received: batchNo(i) carries 2^63 + i */
const hashes = (bs: KvEventBatch[]) =>
  bs.map((b) => Number((b.events[0] as { blockHashes: bigint[] }).blockHashes[0]! - (1n << 63n)));

test("a key directory as up writes it is read back: the public key derived from the secret, server and client keys", () => {
  const dir = tempDir();
  try {
    const own = curveKeyPair();
    const server = curveKeyPair();
    const client = curveKeyPair();
    writeKeyDir(dir, own, { serverKey: server.publicKey, clientKeys: [client.publicKey] });
    const k = loadCurveKeys({ dir });
    assert.equal(k.secretKey, own.secretKey);
    assert.equal(k.publicKey, own.publicKey);
    assert.equal(k.serverKey, server.publicKey);
    assert.deepEqual(k.clientKeys, [client.publicKey]);
    // libzmq's own pairs: the X25519 derivation agrees with every one
    for (let i = 0; i < 20; i++) {
      const kp = curveKeyPair();
      assert.equal(publicKeyOf(kp.secretKey), kp.publicKey);
      assert.equal(z85Encode(z85Decode(kp.publicKey)), kp.publicKey);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a secret key file every user can read is refused, and key file errors name the file and line but never a key", () => {
  const dir = tempDir();
  try {
    const own = curveKeyPair();
    writeKeyDir(dir, own);
    chmodSync(join(dir, "secret.key"), 0o644);
    assert.throws(() => loadCurveKeys({ dir }), /readable by every user \(mode 0644\).*defaultMode: 0400/);
    chmodSync(join(dir, "secret.key"), 0o640);
    assert.doesNotThrow(() => loadCurveKeys({ dir }));
    writeFileSync(
      join(dir, "clients.keys"),
      `# engines\n${curveKeyPair().publicKey}\nnot-a-key ${own.secretKey}\n`,
    );
    assert.throws(
      () => loadCurveKeys({ dir }),
      (err: Error) =>
        err instanceof CurveKeyError &&
        /clients\.keys, line 3: not a 40-character Z85 CURVE key/.test(err.message) &&
        !err.message.includes(own.secretKey),
    );
    rmSync(join(dir, "clients.keys"));
    writeFileSync(join(dir, "public.key"), `${curveKeyPair().publicKey}\n`);
    assert.throws(() => loadCurveKeys({ dir }), /does not match secret key file/);
    assert.throws(() => loadCurveKeys({ dir: join(dir, "absent") }), /cannot read secret key file .*ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a subscriber reaches a publisher in plain when it is marked plain or there are no keys, else by its own key, the fallback, then server.key, and not at all without one", () => {
  const pair = newKeyPair();
  const keys: CurveKeys = { ...pair, serverKey: "S", clientKeys: null, source: "test" };
  const none: CurveKeys = { ...keys, serverKey: null };
  assert.deepEqual(curveClientFor(null, {}), { mode: "plain" });
  assert.deepEqual(curveClientFor(keys, { plain: true, serverKey: "P" }), { mode: "plain" });
  assert.deepEqual(curveClientFor(keys, { serverKey: "P" }, "E"), {
    mode: "curve",
    curve: { keys, serverKey: "P" },
  });
  assert.deepEqual(curveClientFor(keys, {}, "E"), { mode: "curve", curve: { keys, serverKey: "E" } });
  assert.deepEqual(curveClientFor(keys, {}), { mode: "curve", curve: { keys, serverKey: "S" } });
  assert.deepEqual(curveClientFor(none, {}), { mode: "no-key" });
});

test("loopback and ipc endpoints are local; wildcards, other addresses and names are not", () => {
  for (const ep of [
    "ipc:///tmp/x.sock",
    "inproc://a",
    "tcp://127.0.0.1:5557",
    "tcp://[::1]:5557",
    "tcp://localhost:1",
  ])
    assert.equal(endpointIsLocal(ep), true, ep);
  for (const ep of [
    "tcp://*:5557",
    "tcp://0.0.0.0:5557",
    "tcp://10.0.0.7:5557",
    "tcp://engine-0:5557",
    "tcp://[::]:1",
  ])
    assert.equal(endpointIsLocal(ep), false, ep);
});

test("with CURVE a subscriber takes the batches of the publisher holding the server key's secret, replay included", async () => {
  const server = keys();
  const router = keys();
  const pub = await ZmqEventPublisher.create(loopbackConfig({ topic: "kv@a" }), { curve: server });
  for (let i = 0; i < 5; i++) pub.publish(batchNo(i));
  await pub.flush();
  const got: KvEventBatch[] = [];
  const sub = await KvEventSubscriber.create({
    endpoint: pub.endpoint,
    replayEndpoint: pub.replayEndpoint,
    initialSeq: 0,
    curve: { keys: router, serverKey: server.publicKey },
    onBatch: (_s, b) => got.push(b),
  });
  try {
    // the five published before joining come by replay (a CURVE DEALER), the rest live
    await waitFor(() => got.length >= 5, "the replayed batches");
    let i = 5;
    while (got.length < 10) {
      pub.publish(batchNo(i++));
      await waitFor(() => got.length >= i, "a live batch", 50).catch(() => undefined);
      assert.ok(i < 600, "no live batch arrived");
    }
    assert.deepEqual(hashes(got).slice(0, 5), [0, 1, 2, 3, 4]);
    assert.equal(sub.stats.authFailures, 0);
    assert.equal(sub.stats.gaps, 0);
  } finally {
    await sub.close();
    await pub.close();
  }
});

test("a forged publisher without the expected secret key delivers nothing to a CURVE subscriber, and the failures are counted", async () => {
  const real = keys();
  const forger = keys();
  const forged = await ZmqEventPublisher.create(loopbackConfig({ topic: "kv@a" }), { curve: forger });
  const plain = await ZmqEventPublisher.create(loopbackConfig({ topic: "kv@a" }));
  const before = zmqGuardCounts.authFailures["kv-subscriber"];
  const got: KvEventBatch[] = [];
  const subs = await Promise.all(
    [forged, plain].map((p) =>
      KvEventSubscriber.create({
        endpoint: p.endpoint,
        replayEndpoint: p.replayEndpoint,
        initialSeq: 0,
        replayTimeoutMs: 200,
        curve: { keys: keys(), serverKey: real.publicKey },
        onBatch: (_s, b) => got.push(b),
      }),
    ),
  );
  try {
    for (let i = 0; i < 20; i++) {
      forged.publish(batchNo(i));
      plain.publish(batchNo(i));
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitFor(() => subs.every((s) => s.stats.authFailures > 0), "both handshakes refused");
    assert.equal(got.length, 0);
    assert.ok(subs.every((s) => s.stats.received === 0));
    assert.ok(zmqGuardCounts.authFailures["kv-subscriber"] >= before + 2);
  } finally {
    await Promise.all(subs.map((s) => s.close()));
    await Promise.all([forged.close(), plain.close()]);
  }
});

test("a CURVE collector takes the listed publisher's batches; another keypair or a plain publisher writing the same topic delivers nothing", async () => {
  const engine = keys();
  const collectorKeys = keys({ clientKeys: [engine.publicKey] });
  const collector = await KvEventCollector.bind("tcp://127.0.0.1:*", { curve: collectorKeys });
  const topic = "kv@127.0.0.1:8001@m";
  const got: KvEventBatch[] = [];
  collector.attach({ id: "e", addresses: ["127.0.0.1:8001"] }, { onBatch: (_s, b) => got.push(b) });
  const cfg = loopbackConfig({ endpoint: collector.endpoint, replay_endpoint: null, topic });
  const real = await ZmqEventPublisher.create(cfg, {
    curve: { ...engine, serverKey: collectorKeys.publicKey },
  });
  // knows the collector's public key (it is public) but holds a key the collector does not list
  const forged = await ZmqEventPublisher.create(cfg, {
    curve: keys({ serverKey: collectorKeys.publicKey }),
  });
  const plain = await ZmqEventPublisher.create(cfg);
  try {
    for (let i = 0; got.length < 5; i++) {
      real.publish(batchNo(i));
      // the forger's batches would read as block hashes 1000+
      forged.publish(batchNo(1000 + i));
      plain.publish(batchNo(2000 + i));
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(i < 1500, "no batch of the listed publisher arrived");
    }
    await waitFor(
      () => collector.deniedPublishers >= 1 && collector.stats.authFailures >= 2,
      "the forged and plain publishers refused",
    );
    for (let i = 0; i < 10; i++) {
      forged.publish(batchNo(1100 + i));
      plain.publish(batchNo(2100 + i));
    }
    await Promise.all([forged.flush(), plain.flush()]);
    assert.ok(
      hashes(got).every((h) => h < 1000),
      `forged batches delivered: ${hashes(got).join(",")}`,
    );
    assert.equal(collector.stats.dropped["unknown-engine"], 0);
  } finally {
    await Promise.all([real.close(), forged.close(), plain.close()]);
    await collector.close();
  }
});

test("a collector given CURVE keys without any publisher key refuses to bind", async () => {
  await assert.rejects(
    KvEventCollector.bind("tcp://127.0.0.1:*", { curve: keys() }),
    /name no publisher: list the engines' public keys in clients\.keys/,
  );
});

test("plain mode on loopback still works alongside CURVE sockets in the same process", async () => {
  const curvePub = await ZmqEventPublisher.create(loopbackConfig({ replay_endpoint: null }), {
    curve: keys(),
  });
  const pub = await ZmqEventPublisher.create(loopbackConfig({ replay_endpoint: null }));
  const got: KvEventBatch[] = [];
  const sub = await KvEventSubscriber.create({ endpoint: pub.endpoint, onBatch: (_s, b) => got.push(b) });
  try {
    for (let i = 0; got.length === 0; i++) {
      pub.publish(batchNo(i));
      await waitFor(() => got.length > 0, "a plain batch", 50).catch(() => undefined);
      assert.ok(i < 600, "plain subscriber received nothing");
    }
    assert.equal(sub.stats.authFailures, 0);
  } finally {
    await sub.close();
    await Promise.all([pub.close(), curvePub.close()]);
  }
});

test("a CURVE collector binds each engine's topic to its key: another admitted publisher writing that engine's topic delivers nothing", async () => {
  const engineA = keys();
  const engineB = keys();
  const collectorKeys = keys({ clientKeys: [engineA.publicKey, engineB.publicKey] });
  const collector = await KvEventCollector.bind("tcp://127.0.0.1:*", { curve: collectorKeys });
  const topicA = "kv@127.0.0.1:8001@m";
  const gotA: KvEventBatch[] = [];
  const gotB: KvEventBatch[] = [];
  collector.attach(
    { id: "a", addresses: ["127.0.0.1:8001"], publicKey: engineA.publicKey },
    { onBatch: (_s, b) => gotA.push(b) },
  );
  collector.attach(
    { id: "b", addresses: ["127.0.0.1:8002"], publicKey: engineB.publicKey },
    { onBatch: (_s, b) => gotB.push(b) },
  );
  const publisher = (k: CurveKeys, topic: string) =>
    ZmqEventPublisher.create(loopbackConfig({ endpoint: collector.endpoint, replay_endpoint: null, topic }), {
      curve: { ...k, serverKey: collectorKeys.publicKey },
    });
  const realA = await publisher(engineA, topicA);
  const realB = await publisher(engineB, "kv@127.0.0.1:8002@m");
  // engine B's process, admitted with its own key, writes engine A's topic
  const bAsA = await publisher(engineB, topicA);
  try {
    for (let i = 0; gotA.length < 5 || gotB.length < 1; i++) {
      realA.publish(batchNo(i));
      realB.publish(batchNo(i));
      bAsA.publish(batchNo(1000 + i));
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(i < 1500, "no batch of the engines' own publishers arrived");
    }
    await waitFor(() => collector.stats.dropped.forged > 0, "B's batches under A's topic dropped");
    assert.ok(
      hashes(gotA).every((h) => h < 1000),
      `B's batches delivered as A's: ${hashes(gotA).join(",")}`,
    );
  } finally {
    await Promise.all([realA.close(), realB.close(), bAsA.close()]);
    await collector.close();
  }
});
