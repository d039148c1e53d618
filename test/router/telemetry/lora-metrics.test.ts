// The routing share of LoRA adapters and each engine's residency: switchyard_lora_adapter_requests names
// at most TOP_ADAPTERS adapters and sums the rest as "other", GET /engines carries each engine's adapters,
// and `switchyard status` shows both (its report built from a live router over loopback).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePeftAdapter } from "../../../bench/support/peft.js";
import { OTHER_ADAPTERS, TOP_ADAPTERS, topAdapters } from "../../../src/router/telemetry/lora-metrics.js";
import { adapterShares } from "../../../src/ops/lora-status.js";
import { buildReport, sampleRouter } from "../../../src/ops/fleet-status.js";
import { renderStatus } from "../../../src/ops/status-text.js";
import { parseSamples } from "../../../src/protocol/prometheus-text.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";
import type { Json } from "../../helpers/json.js";
import { loraSim } from "../../helpers/lora-sim.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

test("the adapter family names the top adapters by requests and sums every other as one series", () => {
  const requests = new Map<string, number>();
  for (let i = 0; i < 500; i++) requests.set(`lora-${i}`, i % 97);
  const top = topAdapters(requests);
  assert.equal(top.length, TOP_ADAPTERS + 1, "bounded: the top ones and other");
  assert.equal(top.at(-1)!.adapter, OTHER_ADAPTERS);
  const named = top.slice(0, -1);
  for (let i = 1; i < named.length; i++) assert.ok(named[i - 1]!.requests >= named[i]!.requests);
  const floor = Math.min(...named.map((x) => x.requests));
  for (const [name, n] of requests)
    if (!named.some((x) => x.adapter === name))
      assert.ok(n <= floor, `${name} (${n}) left out above ${floor}`);
  const total = [...requests.values()].reduce((a, v) => a + v, 0);
  assert.equal(
    top.reduce((a, x) => a + x.requests, 0),
    total,
    "the series sum to every adapter request",
  );
  // few adapters: each by name, no other
  assert.deepEqual(
    topAdapters(
      new Map([
        ["b", 2],
        ["a", 2],
        ["c", 5],
      ]),
    ).map((x) => x.adapter),
    ["c", "a", "b"],
  );
  assert.deepEqual(topAdapters(new Map([["a", 3]]), 0), [{ adapter: OTHER_ADAPTERS, requests: 3 }]);
});

test("status shares adapters over the window when the named set held, else since the router started", () => {
  const page = (xs: Record<string, number>) =>
    parseSamples(
      Object.entries(xs)
        .map(([k, v]) => `switchyard_lora_adapter_requests{adapter="${k}"} ${v}`)
        .join("\n") + "\n",
    );
  const win = adapterShares(page({ a: 10, b: 4, other: 6 }), page({ a: 4, b: 4, other: 2 }))!;
  assert.equal(win.span, "window");
  assert.equal(win.requests, 10);
  assert.deepEqual(
    win.adapters.map((x) => [x.adapter, x.requests]),
    [
      ["a", 6],
      ["b", 0],
      ["other", 4],
    ],
  );
  // an adapter entered the named set: a window delta would count its whole history, so totals
  const moved = adapterShares(page({ a: 10, c: 7, other: 6 }), page({ a: 4, b: 4, other: 2 }))!;
  assert.equal(moved.span, "total");
  assert.equal(moved.requests, 23);
  assert.equal(adapterShares(page({}), null), null);
});

test("GET /engines shows each engine's adapters and status shows residency and the routing share", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-lora-metrics-"));
  for (const n of ["a1", "a2", "a3"])
    writePeftAdapter(join(dir, n), { rank: 8, hidden: 64, layers: 2, baseModel: MODEL });
  const sim = await loraSim();

  const router = await routerFor([sim.url], { lora: { dir, adapters: [], maxCpuLoras: 2 } });
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "the sim");
    const before = await sampleRouter(router.url, {}, 5000);
    for (const model of ["a1", "a1", "a2", "a1"]) {
      const r = await post(`${router.url}/v1/completions`, { model, prompt: "hi", max_tokens: 2 });
      assert.equal(r.status, 200, await r.text());
    }
    const metrics = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(metrics, /switchyard_lora_adapter_requests\{adapter="a1"\} 3/);
    assert.match(metrics, /switchyard_lora_adapter_requests\{adapter="a2"\} 1/);
    assert.doesNotMatch(metrics, /adapter="a3"/, "an adapter nobody asked for has no series");
    assert.match(metrics, /switchyard_lora_adapters_loaded\{engine="http:\/\/127\.0\.0\.1:\d+"\} 2/);

    const rows = ((await (await fetch(`${router.url}/engines`)).json()) as Json).engines as Json[];
    const lora = rows[0]!.lora as Json;
    assert.equal(lora.maxCpuLoras, 2);
    assert.deepEqual([...(lora.loaded as string[])].sort(), ["a1", "a2"]);

    const after = await sampleRouter(router.url, {}, 5000);
    const report = buildReport(router.url, after, before);
    assert.deepEqual(report.engines[0]!.models, [MODEL], "adapters are not listed as served models");
    assert.deepEqual([...report.engines[0]!.lora!.loaded!].sort(), ["a1", "a2"]);
    assert.equal(report.adapters?.requests, 4);
    assert.deepEqual(
      report.adapters?.adapters.map((x) => [x.adapter, x.share]),
      [
        ["a1", 0.75],
        ["a2", 0.25],
      ],
    );
    const text = renderStatus(report);
    assert.match(text, /LoRA adapters per engine:/);
    assert.match(text, /adapter routing share \(4 requests over the window\)/);
    assert.match(text, /a1\s+3\s+75\.0%/);
  } finally {
    await router.close();
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
