// The router loads LoRA adapters where it places them: a registry folder (--lora-dir), loads through
// the engines' own API, one load per adapter and engine at a time, never more than max_cpu_loras per
// engine, an unknown name an OpenAI 404, a failed load a clear error rather than a hang.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePeftAdapter } from "../../../bench/support/peft.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";
import { AdapterCatalog, learnLoadRate } from "../../../src/router/engines/adapters.js";
import { coldLoadSeconds, emptyLoraBooks } from "../../../src/routing/lora.js";
import type { Json } from "../../helpers/json.js";
import { loraSim } from "../../helpers/lora-sim.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

async function adaptersOn(url: string): Promise<string[]> {
  const doc = (await (await fetch(`${url}/v1/models`)).json()) as Json;
  return doc.data.filter((m: Json) => m.parent !== null).map((m: Json) => m.id as string);
}

test("the router loads an adapter no engine holds, once per engine under a burst, within max_cpu_loras; unknown names 404; a failed load is an error", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-router-lora-"));
  for (const n of ["a1", "a2", "a3", "a4", "a5"])
    writePeftAdapter(join(dir, n), { rank: 8, hidden: 64, layers: 2, baseModel: MODEL });
  const sims = [await loraSim(), await loraSim()];
  const router = await routerFor(
    sims.map((s) => s.url),
    { lora: { dir, adapters: [{ name: "broken", path: join(dir, "missing") }], maxCpuLoras: 2 } },
  );
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both sims");
    // an adapter no engine has loaded is answered: the router loads it first
    const first = await post(`${router.url}/v1/completions`, { model: "a1", prompt: "hello", max_tokens: 4 });
    assert.equal(first.status, 200, await first.clone().text());
    assert.equal(((await first.json()) as Json).model, "a1");
    const holding = (await Promise.all(sims.map((s) => adaptersOn(s.url)))).filter((l) => l.includes("a1"));
    assert.equal(holding.length, 1, "loaded on the engine it was sent to");

    // a burst over four adapters: every request answered, no engine over max_cpu_loras (2)
    const burst = [];
    for (let i = 0; i < 24; i++)
      burst.push(
        post(`${router.url}/v1/completions`, { model: `a${1 + (i % 4)}`, prompt: `q ${i}`, max_tokens: 3 }),
      );
    for (const r of await Promise.all(burst)) assert.equal(r.status, 200, await r.text());
    // then one at a time over five: more than the two engines' host caches hold (2 + 2)
    for (let i = 0; i < 10; i++) {
      const r = await post(`${router.url}/v1/completions`, {
        model: `a${1 + (i % 5)}`,
        prompt: "x",
        max_tokens: 2,
      });
      assert.equal(r.status, 200);
    }
    for (const s of sims) assert.ok((await adaptersOn(s.url)).length <= 2, `${await adaptersOn(s.url)}`);
    assert.ok(
      router.router.registry.adapters!.stats.unloads > 0,
      `room was made by unloading: ${JSON.stringify(router.router.registry.adapters!.stats)} ${await adaptersOn(sims[0]!.url)} / ${await adaptersOn(sims[1]!.url)}`,
    );
    const stats = router.router.registry.adapters!.stats;
    // one load per adapter and engine at a time: at most one load per request that found it unloaded
    assert.ok(stats.loads >= 4 && stats.loads <= 25, `loads ${stats.loads}`);
    const metrics = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(metrics, /switchyard_lora_loads_total\{tenant=""\} \d+/);

    // a name in no registry and served by no engine: OpenAI's 404
    const unknown = await post(`${router.url}/v1/completions`, { model: "a9", prompt: "hi", max_tokens: 1 });
    assert.equal(unknown.status, 404);
    const err = ((await unknown.json()) as Json).error;
    assert.equal(err.type, "NotFoundError");
    assert.equal(err.message, "The model `a9` does not exist.");

    // a registry entry whose folder the engine cannot read: a clear error, not a hang
    const broken = await post(`${router.url}/v1/completions`, {
      model: "broken",
      prompt: "hi",
      max_tokens: 1,
    });
    assert.equal(broken.status, 502);
    const b = ((await broken.json()) as Json).error;
    // which adapter and an id to quote; the engine's answer (with the folder) is the operator's
    assert.match(b.message, /^The LoRA adapter `broken` could not be loaded \(error id lora-[0-9a-f]+\)/);
    assert.doesNotMatch(b.message, /127\.0\.0\.1|missing/);
    const engines = (await (await fetch(`${router.url}/engines`)).json()) as Json;
    const failures = engines.engines.flatMap((e: Json) => e.lora?.failures ?? []);
    assert.match(failures[0].error, /No adapter found/);
    assert.ok(stats.loadFailures >= 1);
  } finally {
    await router.close();
    for (const s of sims) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("loads at once beyond an engine's host cache wait for one to settle: the engine never holds more adapters than max_cpu_loras", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-router-lora-"));
  for (const n of ["b1", "b2", "b3", "b4"])
    writePeftAdapter(join(dir, n), { rank: 8, hidden: 64, layers: 2, baseModel: MODEL });
  const sim = await loraSim();
  const router = await routerFor([sim.url], { lora: { dir, maxCpuLoras: 2 } });
  try {
    // four adapters asked for at once on one engine with nothing loaded: nothing can be unloaded to
    // make room while the first loads are in flight, so the others wait rather than push the engine
    // over its host cache (where it would read adapters from disk again in every batch)
    const burst = ["b1", "b2", "b3", "b4", "b1", "b3"].map((model, i) =>
      post(`${router.url}/v1/completions`, { model, prompt: `q ${i}`, max_tokens: 2 }),
    );
    for (const r of await Promise.all(burst)) assert.equal(r.status, 200, await r.text());
    const held = await adaptersOn(sim.url);
    assert.ok(held.length <= 2, `the engine holds ${held.join(", ")}`);
    assert.ok(router.router.registry.adapters!.stats.unloads >= 2);
  } finally {
    await router.close();
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("lora.policy names the placement: round-robin loads an adapter on every engine in turn, ours keeps it where it is loaded", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-router-lora-policy-"));
  writePeftAdapter(join(dir, "a1"), { rank: 8, hidden: 64, layers: 2, baseModel: MODEL });
  const holders: Record<string, number> = {};
  try {
    for (const policy of ["round-robin", "lora"] as const) {
      const sims = [await loraSim(), await loraSim()];
      const router = await routerFor(
        sims.map((s) => s.url),
        { lora: { dir, adapters: [], policy } },
      );
      try {
        await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both sims");
        for (let i = 0; i < 4; i++) {
          const r = await post(`${router.url}/v1/completions`, { model: "a1", prompt: "x", max_tokens: 1 });
          assert.equal(r.status, 200, await r.text());
        }
        holders[policy] = (await Promise.all(sims.map((s) => adaptersOn(s.url)))).filter((l) =>
          l.includes("a1"),
        ).length;
      } finally {
        await router.close();
        for (const s of sims) await s.close();
      }
    }
    assert.deepEqual(holders, { "round-robin": 2, lora: 1 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a Hub adapter is registered by its repository id, the path the engines download and hash it by", () => {
  const reg = new AdapterCatalog(undefined, [
    { name: "sql", hub: "acme/sql-lora-r16", base: MODEL },
    { name: "chat", hub: "acme/chat-lora", bytes: 27_262_976 },
  ]);
  assert.deepEqual(reg.get("sql"), { name: "sql", path: "acme/sql-lora-r16", base: MODEL, bytes: 50e6 });
  assert.deepEqual(reg.get("chat"), { name: "chat", path: "acme/chat-lora", base: null, bytes: 27_262_976 });
});

test("cold loads are priced at the engine's measured load time, not the assumed rates, once one is measured", () => {
  const view = emptyLoraBooks({
    maxLoras: 8,
    maxCpuLoras: 32,
    diskBps: 1e9,
    linkBps: 25e9,
    loadOverheadS: 0.05,
  });
  const adapter = { name: "a", path: "/a", base: MODEL, bytes: 20e6 };
  assert.ok(Math.abs(coldLoadSeconds(view, adapter) - (0.05 + 0.02 + 0.0008)) < 1e-12);
  // a scaled sim (8 wall seconds per modelled one) answers a 40 MB load in 0.8 s
  learnLoadRate(view, 40e6, 0.8);
  assert.ok(Math.abs(coldLoadSeconds(view, adapter) - 0.4) < 1e-12);
  // later loads move the price by a tenth of their difference in seconds per byte
  learnLoadRate(view, 20e6, 0.2);
  assert.ok(Math.abs(coldLoadSeconds(view, adapter) - (0.9 * 0.4 + 0.1 * 0.2)) < 1e-12);
});
