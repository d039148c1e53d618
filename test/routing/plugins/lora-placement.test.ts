// `lora` (ours) prices each candidate in seconds: the queue (requests on the engine, its own counted by
// when it sent them; prompts queued for prefill), the adapter's cold load, the wait for a slot, the slot a replica or a new adapter takes, the eviction a load
// would cause, less the prefill a cached prefix saves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decide } from "../../../src/routing/policy/decide.js";
import { createLoraPolicy } from "../../../src/routing/plugins/lora-placement/policy.js";
import type { CacheOracle } from "../../../src/routing/policy/cache-oracle.js";
import { loraEngine, loraReq, loraView } from "../../helpers/lora-views.js";

test("a request for a registry adapter may go to any engine serving its base model; an unknown name is unknown-model", () => {
  const fleet = { engines: [loraEngine("e1", loraView())], now: 0 };
  const d = decide(createLoraPolicy(), loraReq("a1"), fleet);
  assert.equal(d.kind, "picked");
  assert.equal(decide(createLoraPolicy(), { model: "nope", seq: 0 }, fleet).kind, "unknown-model");
});

test("ours sends a request where its adapter is loaded rather than cold-loading it elsewhere", () => {
  const fleet = {
    engines: [loraEngine("cold", loraView()), loraEngine("warm", loraView({ loaded: ["a1"] }))],
    now: 0,
  };
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(createLoraPolicy(), loraReq("a1", seq), fleet);
    assert.equal(d.kind === "picked" && d.engine.id, "warm");
  }
});

test("ours avoids an engine whose slots all serve other adapters when another has a free slot", () => {
  const full = loraView({ loaded: ["x", "y", "a1"], running: new Set(["x", "y"]) });
  const free = loraView({ loaded: [] });
  const fleet = { engines: [loraEngine("full", full), loraEngine("free", free)], now: 0 };
  const d = decide(createLoraPolicy({ serviceSeconds: 5 }), loraReq("a1"), fleet);
  assert.equal(d.kind === "picked" && d.engine.id, "free");
});

test("ours replicates a hot adapter when the engine holding it is far busier than one without it", () => {
  const fleet = {
    engines: [
      loraEngine("hot", loraView({ loaded: ["a1"], running: new Set(["a1"]) }), {
        inFlight: 200,
        awaitingFirstToken: 150,
      }),
      loraEngine("idle", loraView()),
    ],
    now: 0,
  };
  const d = decide(createLoraPolicy(), loraReq("a1"), fleet);
  assert.equal(d.kind === "picked" && d.engine.id, "idle");
});

test("ours keeps a hot adapter on the engine running it rather than take a slot on an engine whose slots are nearly all taken", () => {
  const others = new Set(["x1", "x2", "x3", "x4", "x5", "x6", "x7"]);
  const fleet = {
    engines: [
      loraEngine("home", loraView({ maxLoras: 8, loaded: ["a1"], running: new Set(["a1"]) }), {
        inFlight: 40,
      }),
      loraEngine("full", loraView({ maxLoras: 8, loaded: ["a1"], running: others })),
    ],
    now: 0,
  };
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(createLoraPolicy(), loraReq("a1", seq), fleet);
    assert.equal(d.kind === "picked" && d.engine.id, "home");
  }
});

test("ours sends a prompt away from an engine with prompts queued for prefill", () => {
  const fleet = {
    engines: [
      loraEngine("queued", loraView({ loaded: ["a1"] }), { inFlight: 10, awaitingFirstToken: 10 }),
      loraEngine("clear", loraView({ loaded: ["a1"] }), { inFlight: 10, awaitingFirstToken: 0 }),
    ],
    now: 0,
  };
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(createLoraPolicy(), loraReq("a1", seq), fleet);
    assert.equal(d.kind === "picked" && d.engine.id, "clear");
  }
});

test("ours counts its own requests by when it sent them: an engine whose requests just finished does not look the least loaded", () => {
  const engines = ["a", "b"].map((id) =>
    loraEngine(id, loraView({ loaded: ["a1"], running: new Set(["a1"]) })),
  );
  const fleet = { engines, now: 0 };
  const policy = createLoraPolicy();
  for (let seq = 0; seq < 8; seq++) {
    const d = decide(policy, loraReq("a1", seq), fleet);
    assert.equal(d.kind, "picked");
    if (d.kind !== "picked") return;
    policy.onPicked?.(loraReq("a1", seq), d.engine);
    d.engine.inFlight++;
  }
  assert.deepEqual(
    engines.map((e) => e.inFlight),
    [4, 4],
  );
  // two of a's requests end at the end of its step
  for (let k = 0; k < 2; k++) policy.onDone?.(loraReq("a1"), engines[0]!, 2000);
  engines[0]!.inFlight -= 2;
  const picks = new Set<string>();
  for (let seq = 8; seq < 12; seq++) {
    const d = decide(policy, loraReq("a1", seq), fleet);
    if (d.kind === "picked") picks.add(d.engine.id);
  }
  assert.deepEqual([...picks].sort(), ["a", "b"]);
});

test("given a cache oracle, ours sends an adapter's prompt where its prefix is cached and tells the oracle it was a kv-hit", () => {
  const picked: { engine: string; cached: number; reason: string }[] = [];
  const oracle: CacheOracle = {
    predict: (_r, engines) => ({
      promptTokens: 400,
      cachedTokens: Float64Array.from(engines, (e) => (e.id === "cached" ? 384 : 0)),
      source: engines.map(() => "kv" as const),
    }),
    onPicked: (_r, e, cached, _source, reason) => picked.push({ engine: e.id, cached, reason }),
  };
  const fleet = {
    engines: [
      loraEngine("other", loraView({ loaded: ["a1"] })),
      loraEngine("cached", loraView({ loaded: ["a1"] })),
    ],
    now: 0,
  };
  const policy = createLoraPolicy({ cache: oracle });
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(policy, loraReq("a1", seq), fleet);
    assert.equal(d.kind === "picked" && d.engine.id, "cached");
  }
  assert.deepEqual(picked[0], { engine: "cached", cached: 384, reason: "kv-hit" });
  // without one, a tie rotates: no prefix is priced
  const ids = new Set<string>();
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(createLoraPolicy(), loraReq("a1", seq), fleet);
    if (d.kind === "picked") ids.add(d.engine.id);
  }
  assert.equal(ids.size, 2);
});

test("ours sends a cold adapter where slots stay open: of two engines alike but for the slots taken, the emptier", () => {
  // both hold the same loaded set (so the eviction and the cold load cost the same); only the running
  // adapters differ, 7 of 8 slots against 2
  const loaded = ["x1", "x2", "x3", "x4", "x5", "x6", "x7"];
  const fleet = {
    engines: [
      loraEngine("nearly-full", loraView({ maxLoras: 8, maxCpuLoras: 32, loaded, running: new Set(loaded) })),
      loraEngine("open", loraView({ maxLoras: 8, maxCpuLoras: 32, loaded, running: new Set(["x1", "x2"]) })),
    ],
    now: 0,
  };
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(createLoraPolicy(), loraReq("a1", seq), fleet);
    assert.equal(d.kind === "picked" && d.engine.id, "open");
  }
});
