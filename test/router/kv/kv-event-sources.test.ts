// KV-event endpoints read from the engine: an engine given only as a URL, whose `/kv_event_sources`
// names `tcp://*:PORT`, is subscribed at its own host and routed by its events (a Messages request
// whose prompt it holds goes there with reason kv-hit); an engine without the route stays on the
// approximate prefix index; `/engines` says where each engine's events come from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { computeBlockHashes } from "../../../src/protocol/block-hashing.js";
import { engineHashSeed } from "../../../src/protocol/vllm-releases.js";
import { parseKvEventsConfig } from "../../../src/kvevents/config.js";
import { ZmqEventPublisher } from "../../../src/kvevents/publisher.js";
import { anthropicToChat } from "../../../src/router/request/endpoints.js";
import { parseKvEventSources, resolveWildcard } from "../../../src/router/kv/event-sources.js";
import { requestTokenizerFor } from "../../../src/router/kv/tokenizers.js";
import { freePorts } from "../../../bench/support/cli.js";
import { startFakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const ENGINE = "http://10.0.0.7:8000";

test("/kv_event_sources answers: both shapes, wildcards at the engine's host, one source per rank", () => {
  assert.equal(resolveWildcard("tcp://*:5557", ENGINE), "tcp://10.0.0.7:5557");
  assert.equal(resolveWildcard("tcp://0.0.0.0:5557", ENGINE), "tcp://10.0.0.7:5557");
  assert.equal(resolveWildcard("tcp://[::]:5557", ENGINE), "tcp://10.0.0.7:5557");
  assert.equal(resolveWildcard("tcp://10.0.0.9:5557", ENGINE), "tcp://10.0.0.9:5557");
  // vLLM 0.32: the --kv-events-config per data-parallel rank
  const v032 = JSON.stringify({
    "0": {
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: "tcp://*:31501",
      replay_endpoint: "tcp://*:31601",
      buffer_steps: 10000,
      hwm: 100000,
      max_queue_size: 100000,
      topic: "",
    },
  });
  assert.deepEqual(parseKvEventSources(v032, ENGINE), [
    { rank: 0, endpoint: "tcp://10.0.0.7:31501", replay: "tcp://10.0.0.7:31601", topic: "" },
  ]);
  // the list later builds answer, ranks reported apart
  const list = JSON.stringify([
    { data_parallel_rank: 1, endpoint: "tcp://*:5558", replay_endpoint: null, topic: "kv" },
    { data_parallel_rank: 0, endpoint: "tcp://*:5557", replay_endpoint: null, topic: "kv" },
  ]);
  assert.deepEqual(
    parseKvEventSources(list, ENGINE).map((s) => [s.rank, s.endpoint, s.replay]),
    [
      [0, "tcp://10.0.0.7:5557", undefined],
      [1, "tcp://10.0.0.7:5558", undefined],
    ],
  );
  // ranks that report the configured endpoint unchanged bind it plus their rank
  const same = JSON.stringify({ "0": { endpoint: "tcp://*:5557" }, "1": { endpoint: "tcp://*:5557" } });
  assert.deepEqual(
    parseKvEventSources(same, ENGINE).map((s) => s.endpoint),
    ["tcp://10.0.0.7:5557", "tcp://10.0.0.7:5558"],
  );
  // events off, or no ZMQ publisher: nothing to subscribe to
  assert.deepEqual(parseKvEventSources("{}", ENGINE), []);
  assert.deepEqual(
    parseKvEventSources(
      JSON.stringify({ "0": { enable_kv_cache_events: false, endpoint: "tcp://*:1" } }),
      ENGINE,
    ),
    [],
  );
  assert.throws(() => parseKvEventSources('"nope"', ENGINE));
});

test("an engine whose /kv_event_sources names tcp://*:PORT is subscribed at its host; a prompt it holds routes there as kv-hit", async () => {
  const [port, replayPort] = await freePorts(2);
  const publisher = await ZmqEventPublisher.create(
    parseKvEventsConfig({
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${port}`,
      replay_endpoint: `tcp://*:${replayPort}`,
    }),
  );
  const sources = {
    "0": {
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${port}`,
      replay_endpoint: `tcp://*:${replayPort}`,
      topic: "",
    },
  };
  const engineOpts = { models: [MODEL], hashAlgo: "sha256_cbor", blockSize: 16, version: "0.32.0" };
  const holder = await startFakeVllm("holder", { ...engineOpts, kvEventSources: sources });
  const older = await startFakeVllm("older", engineOpts);
  const router = await routerFor([holder.url, older.url], { policy: "kv" });
  const cache = router.router.cache;
  try {
    await waitUntil(() => cache.subs.describe(holder.url).origin === "discovered", 10_000, "sources read");
    assert.deepEqual(cache.subs.describe(holder.url), {
      origin: "discovered",
      endpoints: [`tcp://127.0.0.1:${port}`],
    });
    // the engine without the route was asked once and stays on the prefix index
    await waitUntil(() => older.kvSourceAsks === 1, 10_000, "the older engine asked");
    assert.deepEqual(cache.subs.describe(older.url), { origin: "none", endpoints: [] });

    // the holder's cache holds this conversation's blocks: published as vLLM would
    const body = {
      model: MODEL,
      max_tokens: 4,
      system:
        "You are a careful assistant. " + "Answer every question about the rivers of Europe. ".repeat(20),
      messages: [{ role: "user", content: "Which is longest?" }],
    };
    const tk = requestTokenizerFor(MODEL, undefined, {})!;
    const ids = tk.tokens({ model: MODEL, seq: 0, messages: anthropicToChat(body), body: {} })!;
    const blocks = Math.floor((ids.length - 1) / 16);
    assert.ok(blocks > 10, `${blocks} blocks`);
    // as a 0.32 engine hashes without PYTHONHASHSEED: from vLLM's fixed default seed
    const hashSeed = engineHashSeed("0.32.0", undefined);
    const hashes = computeBlockHashes(ids.slice(0, blocks * 16), { blockSize: 16, hashSeed }).ids;
    publisher.publish({
      ts: Date.now() / 1000,
      dataParallelRank: 0,
      events: [
        {
          type: "BlockStored",
          blockHashes: hashes,
          parentBlockHash: null,
          tokenIds: ids.slice(0, blocks * 16),
          blockSize: 16,
          loraId: null,
          medium: "GPU",
        },
      ],
    });
    await waitUntil(
      () => cache.kv.blocksOf(holder.url) >= blocks && cache.kvRouted(holder.url),
      10_000,
      "indexed",
    );
    for (const path of ["/v1/messages", "/v1/messages/count_tokens"]) {
      const r = await routeOf(router.url, path, body);
      assert.equal(r.engine, holder.url, path);
      assert.equal(r.source, "kv", path);
      assert.equal(r.reason, "kv-hit", path);
      assert.ok(Number(r.predicted_cached_tokens) >= 16 * blocks, r.predicted_cached_tokens);
    }
    // and /engines says where each engine's events come from
    const engines = (await (await fetch(`${router.url}/engines`)).json()) as {
      engines: { url: string; kvEvents: { origin: string } }[];
    };
    const origin = Object.fromEntries(engines.engines.map((e) => [e.url, e.kvEvents.origin]));
    assert.deepEqual(origin, { [holder.url]: "discovered", [older.url]: "none" });
  } finally {
    await router.close();
    await holder.close();
    await older.close();
    await publisher.close();
  }
});

test("a configured endpoint wins: the engine is not asked", async () => {
  const [port] = await freePorts(1);
  const engine = await startFakeVllm("a", { kvEventSources: { "0": { endpoint: "tcp://*:1" } } });
  const router = await routerFor([{ url: engine.url, kvEvents: `tcp://127.0.0.1:${port}` }], {
    policy: "kv",
  });
  try {
    await waitUntil(
      () => router.router.cache.subs.describe(engine.url).origin === "explicit",
      10_000,
      "known",
    );
    assert.deepEqual(router.router.cache.subs.describe(engine.url).endpoints, [`tcp://127.0.0.1:${port}`]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(engine.kvSourceAsks, 0);
  } finally {
    await router.close();
    await engine.close();
  }
});

test("sims given only as URLs: their events are found from /kv_event_sources, and a Messages conversation hits as its chat does", async () => {
  const ports = await freePorts(6);
  const sims = await Promise.all(
    [0, 1].map((i) =>
      startTestSim(
        MODEL,
        [
          "--kv-events-config",
          JSON.stringify({
            enable_kv_cache_events: true,
            publisher: "zmq",
            endpoint: `tcp://*:${ports[2 * i]}`,
            replay_endpoint: `tcp://*:${ports[2 * i + 1]}`,
          }),
          "--time-scale",
          "0.05",
        ],
        { port: ports[4 + i] },
      ),
    ),
  );
  const router = await routerFor(
    sims.map((s) => s.url),
    { policy: "kv" },
  );
  const cache = router.router.cache;
  try {
    await waitUntil(
      () => sims.every((s) => cache.subs.describe(s.url).origin === "discovered"),
      10_000,
      "both sims' sources read",
    );
    const system =
      "You are a careful assistant. " + "Answer every question about the rivers of Europe. ".repeat(20);
    const messages = {
      model: MODEL,
      max_tokens: 2,
      system,
      messages: [{ role: "user", content: "Which is longest?" }],
    };
    const first = await routeOf(router.url, "/v1/messages", messages);
    const home = first.engine!;
    await waitUntil(
      () => cache.kvRouted(home) && cache.kv.blocksOf(home) > 10,
      10_000,
      "the sim's events indexed",
    );
    const again = [
      await routeOf(router.url, "/v1/messages", messages),
      await routeOf(router.url, "/v1/chat/completions", {
        model: MODEL,
        max_tokens: 2,
        messages: [
          { role: "system", content: system },
          { role: "user", content: "Which is longest?" },
        ],
      }),
    ];
    for (const r of again) {
      assert.equal(r.engine, home);
      assert.equal(r.source, "kv");
      assert.equal(r.reason, "kv-hit");
    }
  } finally {
    await router.close();
    for (const s of sims) await s.close();
  }
});
