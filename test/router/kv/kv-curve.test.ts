// CURVE between sims and the router (`--kv-curve-dir`, `routing.kvEvents.curve`): a sim holding the
// keys the router expects is routed by its KV events (kv-hit); a sim with another keypair, configured
// where the router expects a publisher, gets nothing into the index, and /metrics counts the refused
// handshakes. Key directories are laid out as `switchyard up --kv-curve` writes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { writeKeyDir } from "../../../src/kvevents/curve.js";
import { zmqGuardCounts } from "../../../src/kvevents/zmq-guard.js";
import type { RunningSim } from "../../../src/sim/app.js";
import { post, routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { kvEventsOf, startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
type Sim = RunningSim;

function sim(curveDir: string): Promise<Sim> {
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: "tcp://127.0.0.1:0",
    replay_endpoint: "tcp://127.0.0.1:0",
  });
  return startTestSim(MODEL, ["--kv-events-config", kv, "--kv-curve-dir", curveDir, "--time-scale", "0.05"]);
}

const LONG = "Answer every question about the rivers and mountains of Europe in careful detail. ".repeat(24);
const chat = (topic: string) => ({
  model: MODEL,
  messages: [
    { role: "system", content: `${topic}: ${LONG}` },
    { role: "user", content: "Which is longest?" },
  ],
  max_tokens: 2,
});

async function metric(url: string, re: RegExp): Promise<number> {
  const m = re.exec(await (await fetch(`${url}/metrics`)).text());
  return m ? Number(m[1]) : 0;
}

test("with CURVE keys the sim holding the expected secret key is routed by its events (kv-hit); one with another keypair indexes nothing and is counted", async () => {
  const root = mkdtempSync(join(tmpdir(), "switchyard-kv-curve-"));
  const engines = curveKeyPair();
  const router = curveKeyPair();
  writeKeyDir(join(root, "engines"), engines, { clientKeys: [router.publicKey] });
  writeKeyDir(join(root, "router"), router, { serverKey: engines.publicKey });
  // knows the router's public key (public by nature) but not the engines' secret
  writeKeyDir(join(root, "forger"), curveKeyPair(), { clientKeys: [router.publicKey] });
  const good = await sim(join(root, "engines"));
  const forged = await sim(join(root, "forger"));
  const r = await routerFor(
    [good, forged].map((s) => ({ url: s.url, kvEvents: kvEventsOf(s) })),
    { policy: "kv", routing: { kvEvents: { curve: { dir: join(root, "router") } } } },
  );
  const cache = r.router.cache;
  try {
    await waitUntil(
      () => r.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
      5000,
      "sims",
    );
    // each sim computes a prompt of its own, so each publishes BlockStored for it
    assert.equal((await post(`${good.url}/v1/chat/completions`, chat("good"))).status, 200);
    assert.equal((await post(`${forged.url}/v1/chat/completions`, chat("forged"))).status, 200);
    await waitUntil(
      () => cache.kv.blocksOf(good.url) > 10 && cache.kvRouted(good.url),
      10_000,
      "good indexed",
    );
    const hit = await routeOf(r.url, "/v1/chat/completions", chat("good"));
    assert.equal(hit.engine, good.url);
    assert.equal(hit.reason, "kv-hit");
    assert.equal(hit.source, "kv");
    await waitUntil(
      async () =>
        (await metric(r.url, /switchyard_zmq_auth_failures_total\{socket="kv-subscriber"\} (\d+)/)) > 0,
      10_000,
      "the forged publisher's handshake refused",
    );
    assert.equal(cache.kv.blocksOf(forged.url), 0);
    assert.equal(cache.kvRouted(forged.url), false);
    const sub = cache.subs.states.get(forged.url)!.sub!;
    assert.equal(sub.stats.received, 0);
    assert.ok(sub.stats.authFailures > 0);
  } finally {
    await r.close();
    await Promise.all([good.close(), forged.close()]);
    rmSync(root, { recursive: true, force: true });
  }
});

test("with one keypair per engine (engines.keys) each engine is believed only with its own key: a sim holding another engine's keypair indexes nothing", async () => {
  const root = mkdtempSync(join(tmpdir(), "switchyard-kv-curve-"));
  const keyA = curveKeyPair();
  const keyB = curveKeyPair();
  const router = curveKeyPair();
  writeKeyDir(join(root, "a"), keyA, { clientKeys: [router.publicKey] });
  // engine b's process holds engine a's keypair, not its own: a leaked key of one engine
  writeKeyDir(join(root, "b-with-a"), keyA, { clientKeys: [router.publicKey] });
  const a = await sim(join(root, "a"));
  const b = await sim(join(root, "b-with-a"));
  writeKeyDir(join(root, "router"), router, {
    engineKeys: new Map([
      [a.url, keyA.publicKey],
      [b.url, keyB.publicKey],
    ]),
  });
  const r = await routerFor(
    [a, b].map((s) => ({ url: s.url, kvEvents: kvEventsOf(s) })),
    { policy: "kv", routing: { kvEvents: { curve: { dir: join(root, "router") } } } },
  );
  const cache = r.router.cache;
  try {
    await waitUntil(
      () => r.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
      5000,
      "sims",
    );
    assert.equal((await post(`${a.url}/v1/chat/completions`, chat("engine-a"))).status, 200);
    assert.equal((await post(`${b.url}/v1/chat/completions`, chat("engine-b"))).status, 200);
    await waitUntil(() => cache.kv.blocksOf(a.url) > 10 && cache.kvRouted(a.url), 10_000, "a indexed");
    await waitUntil(
      () => (cache.subs.states.get(b.url)?.sub?.stats.authFailures ?? 0) > 0,
      10_000,
      "b's publisher refused: it does not hold engine b's secret key",
    );
    assert.equal(cache.kv.blocksOf(b.url), 0);
    assert.equal(cache.subs.states.get(b.url)!.sub!.stats.received, 0);
  } finally {
    await r.close();
    await Promise.all([a.close(), b.close()]);
    rmSync(root, { recursive: true, force: true });
  }
});

test("collector mode with engines.keys: a sim admitted with its own key that writes another engine's topic indexes nothing there", async () => {
  const { freePorts } = await import("../../../bench/support/cli.js");
  const root = mkdtempSync(join(tmpdir(), "switchyard-kv-curve-"));
  const [pa, pb, pk] = (await freePorts(3)) as [number, number, number];
  const collector = `tcp://127.0.0.1:${pk}`;
  const router = curveKeyPair();
  const keyA = curveKeyPair();
  const keyB = curveKeyPair();
  writeKeyDir(join(root, "a"), keyA, { serverKey: router.publicKey });
  writeKeyDir(join(root, "b"), keyB, { serverKey: router.publicKey });
  const urlA = `http://127.0.0.1:${pa}`;
  const urlB = `http://127.0.0.1:${pb}`;
  writeKeyDir(join(root, "router"), router, {
    engineKeys: new Map([
      [urlA, keyA.publicKey],
      [urlB, keyB.publicKey],
    ]),
  });
  const connectOut = (port: number, topicPort: number, dir: string) =>
    startTestSim(
      MODEL,
      [
        "--kv-events-config",
        JSON.stringify({
          enable_kv_cache_events: true,
          publisher: "zmq",
          endpoint: collector,
          topic: `kv@127.0.0.1:${topicPort}@${MODEL}`,
        }),
        "--kv-curve-dir",
        dir,
        "--time-scale",
        "0.05",
      ],
      { port },
    );
  const a = await connectOut(pa, pa, join(root, "a"));
  // engine b, admitted with its own key, writes engine a's topic
  const b = await connectOut(pb, pa, join(root, "b"));
  const r = await routerFor([{ url: a.url }, { url: b.url }], {
    policy: "kv",
    routing: { kvEvents: { bind: collector, curve: { dir: join(root, "router") } } },
  });
  const cache = r.router.cache;
  try {
    await waitUntil(() => cache.subs.collector !== null, 5000, "the collector bound");
    for (let i = 0; !(cache.subs.collector!.stats.dropped.forged > 0 && cache.kv.blocksOf(a.url) > 0); i++) {
      assert.ok(i < 300, "a's events never indexed, or b's under a's topic never dropped");
      assert.equal((await post(`${a.url}/v1/chat/completions`, chat(`a ${i}`))).status, 200);
      assert.equal((await post(`${b.url}/v1/chat/completions`, chat(`b ${i}`))).status, 200);
      await new Promise((res) => setTimeout(res, 20));
    }
    // what b computed was never indexed as a's: of b's prompt only the chat template's opening block,
    // which a's prompts share, is known
    const hit = await routeOf(r.url, "/v1/chat/completions", chat("b 0"));
    assert.ok(Number(hit.predicted_cached_tokens) <= 16, JSON.stringify(hit));
    // while a's own events are taken: a prompt it computes now is routed to it by them
    assert.equal((await post(`${a.url}/v1/chat/completions`, chat("a again"))).status, 200);
    await waitUntil(
      async () =>
        Number((await routeOf(r.url, "/v1/chat/completions", chat("a again"))).predicted_cached_tokens) > 160,
      10_000,
      "a's prompt indexed",
    );
  } finally {
    await r.close();
    await Promise.all([a.close(), b.close()]);
    rmSync(root, { recursive: true, force: true });
  }
});

test("a router config whose CURVE secret key file is readable by every user is refused at start, naming the file", async () => {
  const root = mkdtempSync(join(tmpdir(), "switchyard-kv-curve-"));
  try {
    const { chmodSync } = await import("node:fs");
    writeKeyDir(root, curveKeyPair());
    chmodSync(join(root, "secret.key"), 0o604);
    await assert.rejects(
      routerFor([], { policy: "kv", routing: { kvEvents: { curve: { dir: root } } } }),
      /routing\.kvEvents\.curve.*secret\.key is readable by every user/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a primary's relay with CURVE keys passes on the listed publisher's messages to the workers and nothing of another keypair's", async () => {
  const { KvEventRelay, workerKvEndpoint } = await import("../../../src/router/cluster/kv-relay.js");
  const { ZmqEventPublisher } = await import("../../../src/kvevents/publisher.js");
  const { KvEventCollector } = await import("../../../src/kvevents/collector.js");
  const { parseKvEventsConfig } = await import("../../../src/kvevents/config.js");
  const engines = curveKeyPair();
  const routerPair = curveKeyPair();
  const keys = { ...routerPair, serverKey: null, clientKeys: [engines.publicKey], source: "test" };
  // the worker's side: a plain collector on its private ipc endpoint, fed by the relay
  const workerEp = workerKvEndpoint(0, process.pid * 1000 + 7);
  const worker = await KvEventCollector.bind(workerEp);
  const got: number[] = [];
  worker.attach(
    { id: "e", addresses: ["127.0.0.1:8001"] },
    {
      onBatch: (_s, b) =>
        got.push(Number((b.events[0] as { blockHashes: bigint[] }).blockHashes[0]! & 0xffffn)),
    },
  );
  const relay = await KvEventRelay.start("tcp://127.0.0.1:*", [workerEp], undefined, keys);
  const cfg = parseKvEventsConfig({
    enable_kv_cache_events: true,
    endpoint: relay.endpoint,
    topic: "kv@127.0.0.1:8001@m",
  });
  const real = await ZmqEventPublisher.create(cfg, {
    curve: { ...engines, serverKey: routerPair.publicKey, clientKeys: null, source: "test" },
  });
  const forged = await ZmqEventPublisher.create(cfg, {
    curve: { ...curveKeyPair(), serverKey: routerPair.publicKey, clientKeys: null, source: "test" },
  });
  const batch = (i: number) => ({
    ts: 1,
    events: [
      {
        type: "BlockStored" as const,
        blockHashes: [(1n << 63n) + BigInt(i)],
        parentBlockHash: null,
        tokenIds: [1, 2, 3, 4],
        blockSize: 4,
        loraId: null,
        medium: "GPU",
        loraName: null,
      },
    ],
    dataParallelRank: 0,
  });
  try {
    for (let i = 0; got.length < 3; i++) {
      real.publish(batch(i));
      forged.publish(batch(1000 + i));
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(i < 1500, "nothing of the listed publisher was relayed");
    }
    await waitUntil(() => zmqGuardCounts.authFailures["kv-relay"] > 0, 5000, "the forged publisher refused");
    assert.ok(
      got.every((h) => h < 1000),
      `forged batches relayed: ${got.join(",")}`,
    );
  } finally {
    await Promise.all([real.close(), forged.close()]);
    await relay.close();
    await worker.close();
  }
});
