// Collector mode (`routing.kvEvents.bind`, `--kv-events-bind`): the router binds one SUB socket, sims
// connect their publishers to it (vLLM's rule for an endpoint without a wildcard) with llm-d's topic
// kv@<host:port>@<model>, and each prompt goes to the engine whose events announced it, every time.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { parseConfig } from "../../../src/router/config/config.js";
import { freePorts } from "../../../bench/support/cli.js";
import type { RunningRouter } from "../../../src/router/index.js";
import { post, routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
type Sim = RunningSim;

/** A sim on `port` whose KV events go to the router's collector at `collector`, named kv@127.0.0.1:port@model. */
function sim(port: number, collector: string): Promise<Sim> {
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: collector,
    topic: `kv@127.0.0.1:${port}@${MODEL}`,
  });
  return startTestSim(MODEL, ["--kv-events-config", kv, "--time-scale", "0.05"], { port });
}

const LONG = "Answer every question about the rivers and mountains of Europe in careful detail. ".repeat(24);
/** a raw prompt, no chat template: its first block is its own (a template's preamble is shared by all) */
const completion = (topic: string) => ({ model: MODEL, prompt: `${topic}: ${LONG}`, max_tokens: 2 });
const chat = (topic: string) => ({
  model: MODEL,
  messages: [
    { role: "system", content: `${topic}: ${LONG}` },
    { role: "user", content: "Which is longest?" },
  ],
  max_tokens: 2,
});

/**
 * A publisher that connects out reaches the collector only once its connection is up (ZMQ retries every
 * 100 ms), and what it sends before is lost, as with any PUB socket: warm each engine up with throwaway
 * prompts until the collector has delivered one of its batches.
 */
async function warmUp(router: RunningRouter, s: Sim): Promise<void> {
  const c = router.router.cache.subs;
  await waitUntil(() => c.states.get(s.url)?.collecting === true, 5000, "attached");
  for (let i = 0; !(c.collector!.streamStats(s.url)!.delivered > 0); i++) {
    assert.ok(i < 100, `no KV events from ${s.url} reached the collector`);
    await post(`${s.url}/v1/completions`, {
      model: MODEL,
      prompt: `warm-up ${i} `.repeat(20),
      max_tokens: 1,
    });
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function metric(url: string, re: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

test("collector mode: sims that connect out are told apart by topic; each prompt goes to the engine that announced it", async () => {
  const [pa, pb, pc, pk] = (await freePorts(4)) as [number, number, number, number];
  const collector = `tcp://127.0.0.1:${pk}`;
  const sims = [await sim(pa, collector), await sim(pb, collector)];
  const late = await sim(pc, collector);
  const backends = sims.map((s) => ({ url: s.url }));
  const router = await routerFor(backends, { policy: "kv", routing: { kvEvents: { bind: collector } } });
  const cache = router.router.cache;
  try {
    await waitUntil(
      () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
      5000,
      "sims",
    );
    for (const s of sims) await warmUp(router, s);
    // each sim computes its own prompt, so its events (through the collector) announce it
    for (const [i, s] of sims.entries())
      assert.equal((await post(`${s.url}/v1/chat/completions`, chat(`topic ${i}`))).status, 200);
    for (const s of sims)
      await waitUntil(
        () => cache.kv.blocksOf(s.url) > 10 && cache.kvRouted(s.url),
        10_000,
        `${s.url} indexed`,
      );
    for (let round = 0; round < 5; round++) {
      for (const [i, s] of sims.entries()) {
        const r = await routeOf(router.url, "/v1/chat/completions", chat(`topic ${i}`));
        assert.equal(r.engine, s.url, `round ${round}: prompt ${i}`);
        assert.equal(r.reason, "kv-hit");
        assert.equal(r.source, "kv");
        assert.ok(Number(r.predicted_cached_tokens) >= 160, r.predicted_cached_tokens);
      }
    }

    // a sim the router does not know publishes too: counted and dropped (its connection may take a
    // retry to come up, so it publishes until one message got through)
    const unknown = /switchyard_routing_kv_collector_messages_total\{outcome="unknown-engine"\} (\d+)/;
    for (let i = 0; (await metric(router.url, unknown)) === 0; i++) {
      assert.ok(i < 100, "the unknown engine's messages were never counted");
      assert.equal((await post(`${late.url}/v1/completions`, completion(`late ${i}`))).status, 200);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(cache.kv.blocksOf(late.url), 0);

    // ...until it is discovered: then its events are picked up and its prompts routed to it (what it
    // stored while unknown stays unknown: without a replay endpoint there is no way to ask)
    router.router.reconfigure(
      parseConfig({
        ...router.router.config,
        backends: [...backends, { url: late.url }],
      }),
    );
    await waitUntil(() => router.router.registry.snapshot().length === 3, 5000, "the late engine added");
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "healthy");
    await warmUp(router, late);
    assert.equal((await post(`${late.url}/v1/completions`, completion("late, again"))).status, 200);
    await waitUntil(
      () => cache.kv.blocksOf(late.url) > 10 && cache.kvRouted(late.url),
      10_000,
      "late engine indexed",
    );
    for (let round = 0; round < 3; round++) {
      const r = await routeOf(router.url, "/v1/completions", completion("late, again"));
      assert.equal(r.engine, late.url, JSON.stringify(r));
      assert.equal(r.reason, "kv-hit");
    }
  } finally {
    await router.close();
    for (const s of [...sims, late]) await s.close();
  }
});
