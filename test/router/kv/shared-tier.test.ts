// The shared tier as the live router sees it, over real ZMQ against a real cache server and real sims
// on loopback: the router's tier index follows the cache server's KV events within its cap; with a
// long prefix on the cache server and on no engine's GPU, predictive's prediction prices it at its load
// time on the engines wired to that server and on no other; chunks sims store through LMCache reach the
// router under the hashes it computes itself; an engine's own CPU tier (vLLM's native offload, LMCache's
// local one, the chunks LMCache's multiprocess server relays through vLLM) is priced by load time too
// (predictive), while the other policies keep their fixed credit; bad config is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startCacheServer, type CacheServer } from "../../../src/cacheserver/server.js";
import { chunkHashes, chunkKey, type ChunkKeyScheme } from "../../../src/protocol/lmcache-chunks.js";
import { computeBlockHashes } from "../../../src/protocol/block-hashing.js";
import { resolveGpu, resolveModel } from "../../../src/models/profiles.js";
import { parseConfig } from "../../../src/router/index.js";
import { main as routerMain } from "../../../src/router/cli.js";
import { SharedTiers } from "../../../src/router/kv/tier-index.js";
import type { RunningSim } from "../../../src/sim/app.js";
import { freePorts } from "../../../bench/support/cli.js";
import { routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { kvEventsOf, startTestSim, tokenIds } from "../../sim/helpers.js";
import { RawConn } from "../../cacheserver/raw.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const SCHEME: ChunkKeyScheme = {
  modelName: MODEL,
  worldSize: 1,
  dtype: "bfloat16",
  chunkTokens: 256,
  hashSeed: "0",
};
/** Llama-3.1-8B's KV per token: 2 (K, V) × 32 layers × 8 kv heads × 128 × 2 bytes */
const KV_BYTES_PER_TOKEN = (() => {
  const m = resolveModel(MODEL);
  return 2 * m.layers * m.kvHeads * m.headDim * m.dtypeBytes;
})();

async function cacheServer(): Promise<CacheServer> {
  return startCacheServer({
    host: "127.0.0.1",
    port: 0,
    maxMemoryBytes: 64 * 2 ** 20,
    kvEvents: { port: 0, replayPort: 0, chunkTokens: 256 },
  });
}

/** Stores the prompt's full chunks on the server as an LMCache engine would (one rank, small payloads). */
async function storeChunks(server: CacheServer, prompt: number[]): Promise<bigint[]> {
  const hashes = [...chunkHashes(prompt, Math.floor(prompt.length / 256), SCHEME)];
  const c = await RawConn.open(server.port);
  try {
    for (const h of hashes) await c.put(chunkKey(SCHEME, 0, h), Buffer.alloc(1024, 1));
    await c.exist(chunkKey(SCHEME, 0, hashes[hashes.length - 1]!));
  } finally {
    await c.close();
  }
  return hashes;
}

async function sim(ports: number[], extra: string[] = []): Promise<RunningSim> {
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: `tcp://*:${ports[0]}`,
    replay_endpoint: `tcp://*:${ports[1]}`,
  });
  return startTestSim(MODEL, ["--kv-events-config", kv, "--time-scale", "0.05", ...extra]);
}

/** One sim with KV events behind a `predictive` router (H100 timing, time scale 0.05), the sim seen healthy. */
async function predictiveOverSim(extra: string[]) {
  const s = await sim(await freePorts(2), extra);
  try {
    const router = await routerFor([{ url: s.url, kvEvents: kvEventsOf(s) }], {
      policy: "predictive",
      predictive: { gpu: "h100", timeScale: 0.05 },
    });
    await waitUntil(
      () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
      10_000,
      "sim",
    ).catch(async (err: unknown) => {
      await router.close();
      throw err;
    });
    return { s, router };
  } catch (err) {
    await s.close();
    throw err;
  }
}

test("the router's tier index follows a cache server's events and keeps within its cap", async () => {
  const server = await cacheServer();
  const tiers = new SharedTiers(() => 64 * 2 ** 20);
  try {
    await tiers.apply([
      {
        name: "shared",
        events: server.kvEventsEndpoint!,
        replay: server.kvEventsReplayEndpoint!,
        bandwidthGbps: 100,
        chunkTokens: 256,
        maxChunks: 3,
      },
    ]);
    const tier = tiers.get("shared")!;
    const hashes = await storeChunks(server, tokenIds(5 * 256, 11));
    assert.equal(hashes.length, 5);
    await waitUntil(() => tier.index.has(hashes[4]!), 10_000, "the last chunk indexed");
    // bounded: the oldest two evicted at the cap
    assert.equal(tier.index.size, 3);
    assert.equal(tier.index.evictions, 2);
    assert.deepEqual(
      hashes.map((h) => tier.index.has(h)),
      [false, false, true, true, true],
    );
    // a prefix match stops at the first chunk it lacks
    assert.equal(tier.index.match(hashes), 0);
    assert.equal(tier.index.match(hashes.slice(2)), 3);
    // the server drops one (a DEL): the index hears it
    assert.equal(server.store.delete(chunkKey(SCHEME, 0, hashes[3]!)), true);
    await waitUntil(() => !tier.index.has(hashes[3]!), 10_000, "the removed chunk dropped");
    assert.equal(tier.index.size, 2);
    assert.equal(tier.flowing, true);
    // a reload that changes the engines or the link keeps the index; a new endpoint starts it over
    const base = tier.config;
    await tiers.apply([{ ...base, engines: ["http://e1:8000"], bandwidthGbps: 25 }]);
    assert.equal(tiers.get("shared"), tier);
    assert.equal(tier.index.size, 2);
    assert.equal(tiers.serverFor("http://e1:8000"), tier);
    assert.equal(tiers.serverFor("http://e2:8000"), undefined);
    assert.equal(tier.bandwidth, 25e9 / 8);
    await tiers.apply([{ ...base, maxChunks: 4 }]);
    assert.notEqual(tiers.get("shared"), tier);
    assert.equal(tiers.get("shared")!.index.maxChunks, 4);
    await tiers.apply([]);
    assert.equal(tiers.get("shared"), undefined);
  } finally {
    await tiers.close();
    await server.close();
  }
});

test("predictive prices a prefix the cache server holds at its load time, on the engines wired to it only", async () => {
  const server = await cacheServer();
  const ports = await freePorts(6);
  const sims = [await sim(ports.slice(0, 2)), await sim(ports.slice(2, 4)), await sim(ports.slice(4, 6))];
  const wired = [sims[0]!.url, sims[1]!.url];
  const router = await routerFor(
    sims.map((s) => ({ url: s.url, kvEvents: kvEventsOf(s) })),
    {
      policy: "predictive",
      predictive: { gpu: "h100", timeScale: 0.05 },
      routing: {
        cacheServers: [
          {
            name: "shared",
            events: server.kvEventsEndpoint!,
            replay: server.kvEventsReplayEndpoint!,
            engines: wired,
            bandwidthGbps: 80,
          },
        ],
      },
    },
  );
  try {
    const cache = router.router.cache;
    await waitUntil(
      () => router.router.registry.snapshot().filter((v) => v.healthy && v.blockSize === 16).length === 3,
      10_000,
      "three sims",
    );
    // 16 full chunks of 256 tokens, and one token more: the engine computes the last one itself
    const prompt = tokenIds(16 * 256 + 1, 29);
    const hashes = await storeChunks(server, prompt);
    const tier = cache.tiers.get("shared")!;
    await waitUntil(() => tier.index.match(hashes) === 16, 10_000, "the prefix indexed");
    // each engine routed by its KV events (an engine that has computed nothing, by its empty index)
    await waitUntil(() => sims.every((s) => cache.kvRouted(s.url)), 10_000, "kv mode");

    const view = { model: MODEL, seq: 1, prompt, body: { model: MODEL, prompt, max_tokens: 1 } };
    const engines = router.router.registry.snapshot();
    const pred = cache.predict(view, engines);
    assert.equal(pred.promptTokens, prompt.length);
    assert.ok(pred.tierTokens && pred.tierLoadSeconds, "tier figures filled");
    const loadSeconds = ((16 * 256 * KV_BYTES_PER_TOKEN) / (80e9 / 8)) * 0.05;
    engines.forEach((e, i) => {
      // neither engine's GPU holds any of it
      assert.equal(pred.cachedTokens[i], 0, e.id);
      if (wired.includes(e.id)) {
        assert.equal(pred.tierTokens![i], 16 * 256, e.id);
        assert.ok(
          Math.abs(pred.tierLoadSeconds![i]! - loadSeconds) < 1e-9,
          `${e.id} ${pred.tierLoadSeconds![i]}`,
        );
      } else {
        assert.equal(pred.tierTokens![i], 0, `${e.id} loads from no cache server`);
        assert.equal(pred.tierLoadSeconds![i], 0);
      }
    });

    // the live pick: a wired engine, where the prefix loads instead of being computed; the route says so
    const route = await routeOf(router.url, "/v1/completions", { model: MODEL, prompt, max_tokens: 1 });
    assert.ok(wired.includes(route.engine!), `picked ${route.engine}`);
    assert.equal(Number(route.tier_tokens), 16 * 256);
    assert.ok(Number(route.tier_load_ms) > 0);

    // a prompt past one hashing slice (16k tokens): its chunk hashes are made a slice per turn ahead of
    // the decision, and come out as the server's
    const long = tokenIds(80 * 256 + 1, 31);
    const longHashes = await storeChunks(server, long);
    await waitUntil(() => tier.index.match(longHashes) === 80, 10_000, "the long prefix indexed");
    const longView = {
      model: MODEL,
      seq: 3,
      prompt: long,
      body: { model: MODEL, prompt: long, max_tokens: 1 },
    };
    const ahead = cache.hashAhead(longView, performance.now(), { cancelled: false });
    assert.ok(ahead, "hashed ahead in slices");
    await ahead;
    const longPred = cache.predict(longView, engines);
    engines.forEach((e, i) =>
      assert.equal(longPred.tierTokens![i], wired.includes(e.id) ? 80 * 256 : 0, e.id),
    );

    // tier knowledge is predictive's: kv keeps its GPU-and-credit view, with no tier figures
    cache.setPolicy("kv");
    assert.equal(cache.predict({ ...view, seq: 2 }, engines).tierTokens, undefined);
  } finally {
    await router.close();
    for (const s of sims) await s.close();
    await server.close();
  }
});

test("chunks a sim stores through LMCache reach the router, under the hashes it computes; its own LMCache CPU tier is priced over its host link", async () => {
  const server = await cacheServer();
  const ports = await freePorts(4);
  const env = { LMCACHE_REMOTE_URL: `lm://127.0.0.1:${server.port}` };
  // 300 GPU blocks of 16 tokens: a second long prompt pushes the first out of HBM; LMCache's local CPU
  // tier (2 GiB: 64 chunks of Llama-3.1-8B) keeps both
  const lmcache = [
    "--kv-offloading-backend",
    "lmcache",
    "--kv-offloading-size",
    "2",
    "--num-gpu-blocks-override",
    "300",
    "--max-model-len",
    "4800",
  ];
  const start = (p: number[]) =>
    startTestSim(
      MODEL,
      [
        "--kv-events-config",
        JSON.stringify({
          enable_kv_cache_events: true,
          publisher: "zmq",
          endpoint: `tcp://*:${p[0]}`,
          replay_endpoint: `tcp://*:${p[1]}`,
        }),
        "--time-scale",
        "0.05",
        ...lmcache,
      ],
      { env },
    );
  const sims = [await start(ports.slice(0, 2)), await start(ports.slice(2, 4))];
  const router = await routerFor(
    sims.map((s) => ({ url: s.url, kvEvents: kvEventsOf(s) })),
    {
      policy: "predictive",
      predictive: { gpu: "h100", timeScale: 0.05 },
      routing: {
        cacheServers: [
          { name: "shared", events: server.kvEventsEndpoint!, replay: server.kvEventsReplayEndpoint! },
        ],
      },
    },
  );
  try {
    const cache = router.router.cache;
    await waitUntil(() => sims.every((s) => cache.kvRouted(s.url)), 10_000, "kv mode");
    const prompt = tokenIds(16 * 256 + 1, 41);
    const first = await routeOf(router.url, "/v1/completions", { model: MODEL, prompt, max_tokens: 1 });
    const home = first.engine!;
    // the sim stores its computed chunks on the server, the server announces them, the router indexes
    // them: under the LMCache hashes the router makes of the prompt itself
    const hashes = chunkHashes(prompt, 16, SCHEME);
    const tier = cache.tiers.get("shared")!;
    await waitUntil(() => tier.index.match(hashes) === 16, 10_000, "the sim's chunks indexed");
    const view = { model: MODEL, seq: 9, prompt, body: { model: MODEL, prompt, max_tokens: 1 } };
    await waitUntil(() => cache.kv.blocksOf(home) >= 256, 10_000, "the home engine's blocks indexed");
    const engines = router.router.registry.snapshot();
    // routed by its events, not by the prefix estimate it falls back to while they stall (a busy
    // machine can hold a sim's publisher long enough for the watchdog to notice)
    await waitUntil(() => sims.every((s) => cache.kvRouted(s.url)), 10_000, "kv mode again");
    const pred = cache.predict(view, engines);
    engines.forEach((e, i) => {
      if (e.id === home) {
        // its GPU holds the prefix: nothing to load
        assert.equal(pred.cachedTokens[i], 16 * 256, e.id);
        assert.equal(pred.tierTokens?.[i] ?? 0, 0, e.id);
      } else {
        // the other loads it from the server
        assert.equal(pred.cachedTokens[i], 0, e.id);
        assert.equal(pred.tierTokens![i], 16 * 256, e.id);
      }
    });

    // another prompt on the home engine takes the first one's room in HBM; its LMCache CPU tier keeps it
    const other = tokenIds(4000, 43);
    const r = await fetch(`${home}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: other, max_tokens: 1 }),
    });
    assert.equal(r.status, 200, await r.text());
    await waitUntil(
      () => {
        const p = cache.predict(view, router.router.registry.snapshot());
        const h = p.cachedTokens[engines.findIndex((e) => e.id === home)]!;
        return h < 1024;
      },
      10_000,
      "the first prompt out of the home engine's HBM",
    );
    const after = cache.predict(view, router.router.registry.snapshot());
    const hostLink = resolveGpu("h100").hostLinkBandwidth;
    engines.forEach((e, i) => {
      const gpu = after.cachedTokens[i]!;
      const tier = after.tierTokens![i]!;
      assert.equal(gpu + tier, 16 * 256, e.id);
      // home: from its own CPU tier over its host link; the other: from the server over 100 Gb/s
      const rate = e.id === home ? hostLink : 100e9 / 8;
      const want = ((tier * KV_BYTES_PER_TOKEN) / rate) * 0.05;
      assert.ok(
        Math.abs(after.tierLoadSeconds![i]! - want) < 1e-9,
        `${e.id}: ${after.tierLoadSeconds![i]} vs ${want}`,
      );
    });
  } finally {
    await router.close();
    for (const s of sims) await s.close();
    await server.close();
  }
});

test("predictive prices an engine's own CPU-offload blocks at their load time over its host link", async () => {
  // 64 GPU blocks of 16 tokens: a second prompt pushes the first out of HBM; the CPU tier keeps it
  const { s, router } = await predictiveOverSim([
    "--num-gpu-blocks-override",
    "64",
    "--kv-offloading-size",
    "1",
    "--max-model-len",
    "1024",
  ]);
  try {
    const cache = router.router.cache;
    const a = tokenIds(513, 3);
    const b = tokenIds(1000, 4);
    const viewA = { model: MODEL, seq: 1, prompt: a, body: { model: MODEL, prompt: a, max_tokens: 1 } };
    await routeOf(router.url, "/v1/completions", { model: MODEL, prompt: a, max_tokens: 1 });
    await waitUntil(() => cache.kvRouted(s.url), 10_000, "kv mode");
    await routeOf(router.url, "/v1/completions", { model: MODEL, prompt: b, max_tokens: 1 });
    // A's 32 full blocks: most of them out of HBM (B took their room), all on the CPU tier
    const engines = () => router.router.registry.snapshot();
    await waitUntil(
      () => {
        const p = cache.predict(viewA, engines());
        return p.cachedTokens[0]! + (p.tierTokens?.[0] ?? 0) === 512 && p.cachedTokens[0]! < 256;
      },
      10_000,
      "A priced from the CPU tier",
    );
    const pred = cache.predict(viewA, engines());
    const onGpu = pred.cachedTokens[0]!;
    const onCpu = pred.tierTokens![0]!;
    // H100: one GPU (TP 1) loads all of Llama-3.1-8B's KV heads over its host link
    const seconds = ((onCpu * KV_BYTES_PER_TOKEN) / resolveGpu("h100").hostLinkBandwidth) * 0.05;
    assert.ok(
      Math.abs(pred.tierLoadSeconds![0]! - seconds) < 1e-9,
      `${pred.tierLoadSeconds![0]} vs ${seconds}`,
    );
    // kv (and prefix, hybrid) keep the fixed offload credit in cachedTokens
    cache.setPolicy("kv");
    const kv = cache.predict({ ...viewA, seq: 2 }, engines());
    assert.ok(Math.abs(kv.cachedTokens[0]! - (onGpu + onCpu * 0.8)) < 1e-6, `${kv.cachedTokens[0]}`);
    assert.equal(kv.tierTokens, undefined);
  } finally {
    await router.close();
    await s.close();
  }
});

test("predictive prices the 256-token chunks LMCache's multiprocess server relays as an engine's CPU blocks, hashed as vLLM hashes blocks", async () => {
  const { s, router } = await predictiveOverSim(["--max-model-len", "2048"]);
  try {
    const cache = router.router.cache;
    await routeOf(router.url, "/v1/completions", { model: MODEL, prompt: tokenIds(40, 5), max_tokens: 1 });
    await waitUntil(() => cache.kvRouted(s.url), 10_000, "kv mode");
    // a prompt the engine never saw: the node's LMCache server holds its first three chunks, and vLLM
    // relays them on the engine's own event stream (medium CPU, block_size the chunk's 256 tokens)
    const a = tokenIds(900, 6);
    const chunks = computeBlockHashes(a.slice(0, 768), {
      blockSize: 256,
      hashSeed: process.env.PYTHONHASHSEED ?? "0",
      loraName: null,
      cacheSalt: null,
    }).ids;
    cache.kv.apply(s.url, {
      type: "BlockStored",
      blockHashes: chunks,
      parentBlockHash: null,
      tokenIds: a.slice(0, 768),
      blockSize: 256,
      loraId: null,
      medium: "CPU",
    });
    const view = { model: MODEL, seq: 1, prompt: a, body: { model: MODEL, prompt: a, max_tokens: 1 } };
    const pred = cache.predict(view, router.router.registry.snapshot());
    assert.equal(pred.cachedTokens[0], 0);
    assert.equal(pred.tierTokens?.[0], 768);
    const seconds = ((768 * KV_BYTES_PER_TOKEN) / resolveGpu("h100").hostLinkBandwidth) * 0.05;
    assert.ok(
      Math.abs(pred.tierLoadSeconds![0]! - seconds) < 1e-9,
      `${pred.tierLoadSeconds![0]} vs ${seconds}`,
    );
    // the server evicts one: the chain stops before it
    cache.kv.apply(s.url, { type: "BlockRemoved", blockHashes: [chunks[1]!], medium: "CPU" });
    assert.equal(cache.predict({ ...view, seq: 2 }, router.router.registry.snapshot()).tierTokens?.[0], 256);
  } finally {
    await router.close();
    await s.close();
  }
});

test("cache server config that cannot be right is refused with a message naming it", async () => {
  const server = (extra: Record<string, unknown>) => ({ name: "a", events: "tcp://cache:5600", ...extra });
  assert.throws(
    () => parseConfig({ routing: { cacheServers: [server({ events: "cache:5600" })] } }),
    /routing\.cacheServers\.0\.events: must be a ZMQ endpoint/,
  );
  assert.throws(
    () => parseConfig({ routing: { cacheServers: [server({ bandwidthGbps: 0 })] } }),
    /routing\.cacheServers\.0\.bandwidthGbps/,
  );
  assert.throws(
    () =>
      parseConfig({
        routing: {
          cacheServers: [
            server({ engines: ["http://e1:8000"] }),
            server({ name: "b", events: "tcp://cache2:5600", engines: ["http://e1:8000/"] }),
          ],
        },
      }),
    /engine http:\/\/e1:8000 already loads from cache server 'a'/,
  );
  assert.throws(
    () =>
      parseConfig({
        routing: {
          cacheServers: [
            server({}),
            server({ name: "b", events: "tcp://cache2:5600", engines: ["http://e:1"] }),
          ],
        },
      }),
    /lists no engines \(every engine loads from it\), so no other cache server may be configured/,
  );
  assert.throws(
    () => parseConfig({ routing: { cacheServers: [server({}), server({ events: "tcp://c:1" })] } }),
    /cache server 'a' named twice/,
  );
  assert.throws(
    () => parseConfig({ routing: { cacheServers: [server({ chunkTokens: 0 })] } }),
    /routing\.cacheServers\.0\.chunkTokens/,
  );
  // the defaults: every engine, 100 Gb/s, LMCache's 256-token chunks
  const ok = parseConfig({ routing: { cacheServers: [server({})] } }).routing.cacheServers[0]!;
  assert.equal(ok.bandwidthGbps, 100);
  assert.equal(ok.chunkTokens, 256);
  assert.equal(ok.engines, undefined);
  await assert.rejects(
    routerMain(["--cache-server-bandwidth-gbps", "10"]),
    /--cache-server-bandwidth-gbps needs --cache-server-events/,
  );
});
