// Cache-aware routing against live sims publishing KV events over real ZMQ: the router's hashes equal
// the sim's (chat and completions), repeats go where the prefix is, cache resets and restarts leave no
// stale entries, an engine that has computed nothing counts as empty, and a hash-seed mismatch trips the
// silent-miss watchdog.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { KvEventSubscriber } from "../../../src/kvevents/subscriber.js";
import { connectableEndpoint } from "../../../src/kvevents/endpoint.js";
import { computeBlockHashes } from "../../../src/protocol/block-hashing.js";
import { requestTokenizerFor } from "../../../src/router/kv/tokenizers.js";
import { freePorts } from "../../../bench/support/cli.js";
import { post, routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { kvEventsOf, startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
type Sim = RunningSim;

async function sim(port = 0, kvPort = 0, replayPort = 0, seed = "0"): Promise<Sim> {
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    // vLLM binds only wildcard endpoints (or port 0); otherwise it connects to a collector
    endpoint: kvPort ? `tcp://*:${kvPort}` : "tcp://127.0.0.1:0",
    replay_endpoint: replayPort ? `tcp://*:${replayPort}` : "tcp://127.0.0.1:0",
  });
  return startTestSim(MODEL, ["--kv-events-config", kv, "--hash-seed", seed, "--time-scale", "0.05"], {
    port,
  });
}

const LONG =
  "You are a careful assistant. " + "Answer every question about the rivers of Europe in detail. ".repeat(30);

test("the router's block hashes equal the ones the sim publishes, for chat and completions", async () => {
  const s = await sim();
  const stored: bigint[] = [];
  // from seq 0 through the replay socket, as the router joins: a batch published before the SUB
  // socket's subscription reached the sim (ZMQ's slow joiner; slower on a busy machine) is not lost
  const sub = await KvEventSubscriber.create({
    endpoint: connectableEndpoint(s.kvEventsEndpoint!),
    replayEndpoint: connectableEndpoint(s.kvReplayEndpoint!),
    initialSeq: 0,
    onBatch: (_q, b) => {
      for (const e of b.events) if (e.type === "BlockStored") stored.push(...e.blockHashes);
    },
  });
  try {
    const tk = requestTokenizerFor(MODEL, undefined, {})!;
    assert.equal(tk.source, "sim:llama3");
    const chat = {
      model: MODEL,
      messages: [
        { role: "system", content: LONG },
        { role: "user", content: "Which is longest?" },
      ],
      max_tokens: 2,
    };
    const completion = { model: MODEL, prompt: LONG + " The Danube", max_tokens: 2 };
    for (const [path, body, view] of [
      ["/v1/chat/completions", chat, { model: MODEL, seq: 0, messages: chat.messages, body: chat }],
      ["/v1/completions", completion, { model: MODEL, seq: 1, prompt: completion.prompt, body: completion }],
    ] as const) {
      stored.length = 0;
      const res = await post(`${s.url}${path}`, body);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      const ids = tk.tokens(view as never)!;
      const ours = computeBlockHashes(ids, { blockSize: 16, hashSeed: "0" }).ids;
      assert.ok(ours.length > 10);
      await waitUntil(() => stored.length >= ours.length, 5000, `${path} events`);
      assert.deepEqual(stored.slice(0, ours.length), ours, path);
    }
  } finally {
    await sub.close();
    await s.close();
  }
});

test("kv policy: repeats go to the engine holding the prefix; reset and restart leave no stale entries", async () => {
  // six distinct ports at once: separate freePort() calls may hand out the same one twice
  const all = await freePorts(6);
  const ports = all.slice(0, 2);
  const kvPorts = all.slice(2);
  const sims = [await sim(ports[0], kvPorts[0], kvPorts[1]), await sim(ports[1], kvPorts[2], kvPorts[3])];
  const router = await routerFor(
    sims.map((s) => ({ url: s.url, kvEvents: kvEventsOf(s) })),
    { policy: "kv" },
  );
  const cache = router.router.cache;
  try {
    await waitUntil(
      () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
      5000,
      "sims",
    );
    const body = (i: number) => ({
      model: MODEL,
      messages: [
        { role: "system", content: `${i} ${LONG}` },
        { role: "user", content: "Which is longest?" },
      ],
      max_tokens: 2,
    });
    // first contact: engines have published nothing yet, so the prefix index routes
    const first = await routeOf(router.url, "/v1/chat/completions", body(1));
    const home = first.engine!;
    const homeSim = sims.find((s) => s.url === home)!;
    await waitUntil(() => cache.kv.blocksOf(home) > 10, 5000, "events indexed");
    await waitUntil(() => cache.kvRouted(home), 5000, "kv mode");
    const again = await routeOf(router.url, "/v1/chat/completions", body(1));
    assert.equal(again.engine, home);
    assert.equal(again.source, "kv");
    assert.equal(again.reason, "kv-hit");
    // and the engine as the policy saw it, read beside the prediction
    assert.ok(Number(again.kv_usage) >= 0 && Number(again.kv_usage) <= 1, again.kv_usage);
    assert.ok(Number.isInteger(Number(again.in_flight)), again.in_flight);
    assert.ok(Number(again.predicted_cached_tokens) >= 16 * 10, again.predicted_cached_tokens);
    assert.ok(Number(again.predicted_cached_tokens) < Number(again.prompt_tokens));
    // what the engine's cache holds in all, counted from its events, is what the engine holds
    const held = () => homeSim.ctx.runtime.engine.heldTokens();
    await waitUntil(() => cache.kv.gpuBlocksOf(home) * 16 === held() && held() > 0, 5000, "held counted");

    // reset the prefix cache: AllBlocksCleared empties the engine's entries
    const r = await fetch(`${home}/reset_prefix_cache`, { method: "POST" });
    assert.equal(r.status, 200);
    assert.equal(homeSim.ctx.runtime.engine.debugState().cachedBlocks, 0, "sim reset");
    await waitUntil(() => cache.kv.blocksOf(home) === 0, 5000, "entries cleared after reset");
    assert.equal(cache.kv.gpuBlocksOf(home), 0);
    const afterReset = await routeOf(router.url, "/v1/chat/completions", body(1));
    assert.equal(Number(afterReset.predicted_cached_tokens), 0);
    await waitUntil(() => cache.kv.blocksOf(afterReset.engine!) > 10, 5000, "re-indexed");

    // kill and restart the engine holding it: nothing of the old process stays indexed
    const victim = afterReset.engine!;
    const i = sims.findIndex((s) => s.url === victim);
    await sims[i]!.close();
    await waitUntil(() => cache.kv.blocksOf(victim) === 0, 5000, "entries dropped on ejection");
    assert.equal(cache.prefix.index.enginesHeld().has(victim), false);
    sims[i] = await sim(ports[i], kvPorts[2 * i], kvPorts[2 * i + 1]);
    await waitUntil(
      () => router.router.registry.snapshot().every((v) => v.healthy),
      5000,
      "restarted sim back",
    );
    await new Promise((res) => setTimeout(res, 600));
    assert.equal(cache.kv.blocksOf(victim), 0);
    const fresh = await routeOf(router.url, "/v1/chat/completions", body(2));
    assert.equal(Number(fresh.predicted_cached_tokens), 0);
    void homeSim;
  } finally {
    await router.close();
    for (const s of sims) await s.close();
  }
});

test("kv policy: an engine that has computed nothing is known empty until it computes a prompt whose events do not come", async () => {
  const [deadPort] = await freePorts(1);
  const sims = [await sim(), await sim()];
  // the second engine's events are looked for where nothing publishes: it never says a word
  const router = await routerFor(
    [
      { url: sims[0]!.url, kvEvents: kvEventsOf(sims[0]!) },
      { url: sims[1]!.url, kvEvents: { endpoint: `tcp://127.0.0.1:${deadPort}` } },
    ],
    { policy: "kv" },
  );
  const cache = router.router.cache;
  const registry = router.router.registry;
  const [a, b] = sims.map((s) => s.url) as [string, string];
  const view = (i: number) => ({
    model: MODEL,
    seq: i,
    messages: [
      { role: "system", content: `${i} ${LONG}` },
      { role: "user", content: "Which is longest?" },
    ],
    body: { model: MODEL },
    exclude: new Set<string>(),
  });
  const predict = (i: number) => {
    const engines = registry.snapshot();
    const p = cache.predict(view(i) as never, engines);
    const at = (url: string) => engines.findIndex((e) => e.id === url);
    return { p, a: at(a), b: at(b) };
  };
  const queries = (url: string) => registry.engines.get(url)?.load.prefixCacheQueries;
  try {
    await waitUntil(
      () =>
        registry.snapshot().every((v) => v.healthy && v.blockSize === 16) &&
        queries(a) === 0 &&
        queries(b) === 0,
      5000,
      "sims scraped",
    );
    // neither has computed a prompt, so neither has published: both known empty, not unknown (once
    // the router has read their versions and subscribed)
    await waitUntil(
      () => {
        const { p, a: ia, b: ib } = predict(1);
        return p.heldTokens![ia] === 0 && p.heldTokens![ib] === 0;
      },
      5000,
      "known empty",
    );
    const before = predict(1);
    assert.equal(before.p.heldTokens![before.a], 0);
    assert.equal(before.p.heldTokens![before.b], 0);
    assert.equal(before.p.source[before.b], "kv");
    assert.equal(before.p.cachedTokens[before.b], 0);
    assert.ok(before.p.promptTokens > 100, String(before.p.promptTokens));

    // each computes a prompt (sent to the engine itself): the first one's events flow and count what
    // it holds; the second's never come, so once its counters show the prompt it is unknown again
    for (const s of sims) {
      const res = await post(`${s.url}/v1/chat/completions`, {
        model: MODEL,
        messages: view(2).messages,
        max_tokens: 2,
      });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    await waitUntil(() => cache.kvRouted(a) && (queries(b) ?? 0) > 0, 5000, "events from a, counters from b");
    const after = predict(3);
    assert.ok(after.p.heldTokens![after.a]! > 0);
    assert.ok(Number.isNaN(after.p.heldTokens![after.b]!));
    assert.equal(after.p.source[after.b], "prefix");
    assert.equal(cache.kvRouted(b), false);
  } finally {
    await router.close();
    for (const s of sims) await s.close();
  }
});

test("kv policy: a prompt longer than one hashing slice is hashed a slice per turn before its decision, with the engine's hashes", async () => {
  const [port, kvPort, replayPort] = await freePorts(3);
  const s = await sim(port, kvPort, replayPort);
  const router = await routerFor([{ url: s.url, kvEvents: kvEventsOf(s) }], { policy: "kv" });
  const cache = router.router.cache;
  const original = cache.hashAhead.bind(cache);
  let sliced = 0;
  cache.hashAhead = (view, since, request) => {
    const p = original(view, since, request);
    if (p !== undefined) sliced++;
    return p;
  };
  try {
    await waitUntil(
      () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
      5000,
      "sim",
    );
    // ≈ 20,000 tokens: more than one slice of 1,024 blocks of 16
    const body = {
      model: MODEL,
      messages: [
        { role: "system", content: LONG.repeat(60) },
        { role: "user", content: "Which is longest?" },
      ],
      max_tokens: 2,
    };
    await routeOf(router.url, "/v1/chat/completions", body);
    await waitUntil(() => cache.kvRouted(s.url) && cache.kv.blocksOf(s.url) > 1200, 5000, "events indexed");
    const again = await routeOf(router.url, "/v1/chat/completions", body);
    assert.equal(again.source, "kv");
    assert.equal(again.reason, "kv-hit");
    // every block past the first slice matched too: the slices chain as one piece does
    assert.ok(Number(again.predicted_cached_tokens) > 16 * 1200, again.predicted_cached_tokens);
    assert.ok(sliced >= 1, "hashed ahead in slices");
  } finally {
    await router.close();
    await s.close();
  }
});

test("watchdog: a hash-seed mismatch with the engines is reported loudly", async () => {
  const s = await sim(0, 0, 0, "0");
  const router = await routerFor([{ url: s.url, kvEvents: kvEventsOf(s) }], {
    policy: "kv",
    routing: { hashSeed: "1", watchdog: { window: 60_000, interval: 200, minTokens: 64, sustain: 600 } },
  });
  try {
    const body = {
      model: MODEL,
      messages: [
        { role: "system", content: LONG },
        { role: "user", content: "Hi" },
      ],
      max_tokens: 2,
    };
    const first = await routeOf(router.url, "/v1/chat/completions", body);
    assert.equal(first.engine, s.url);
    await waitUntil(() => router.router.cache.kv.blocksOf(s.url) > 0, 5000, "events");
    await new Promise((r) => setTimeout(r, 600));
    for (let i = 0; i < 3; i++) {
      const r = await routeOf(router.url, "/v1/chat/completions", body);
      assert.equal(r.source, "kv");
      assert.equal(Number(r.predicted_cached_tokens), 0); // the router's hashes never match the engine's
    }
    const mismatch = async () => {
      const text = await (await fetch(`${router.url}/metrics`)).text();
      return /switchyard_routing_hit_mismatch\{engine="[^"]+"\} 1/.test(text);
    };
    // The watchdog compares against the engine's hit counter from its own baseline onwards, and that
    // scrape runs on a timer: keep traffic flowing until the comparison window holds some of it.
    const deadline = Date.now() + 60_000; // timing-ok: a hang guard, polled
    while (!(await mismatch())) {
      if (Date.now() > deadline) throw new Error("no mismatch reported");
      await routeOf(router.url, "/v1/chat/completions", body);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await router.close();
    await s.close();
  }
});
