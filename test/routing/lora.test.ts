// LoRA placement as pure policies: ours prices cold loads, slot waits and evictions; GIE's LoRA
// affinity filter and a static placement are the baselines; the books callers keep (evictions).
import { test } from "node:test";
import assert from "node:assert/strict";
import { LruMap } from "../../src/collections/lru-map.js";
import { decide } from "../../src/routing/policy/decide.js";
import {
  coldLoadSeconds,
  createGieLoraAffinityPolicy,
  createLoraPolicy,
  createStaticLoraPolicy,
  evictionFor,
  evictionVictim,
  noteAdapterUse,
  adapterUseAt,
  ADAPTER_USE_HALF_LIFE_MS,
} from "../../src/routing/lora.js";
import type { CacheOracle } from "../../src/routing/policy/cache-oracle.js";
import {
  idleEngineView,
  type AdapterUse,
  type EngineLoraView,
  type EngineView,
  type RequestView,
} from "../../src/routing/policy/views.js";

const BASE = "base-model";

function loraView(o: Partial<Omit<EngineLoraView, "loaded">> & { loaded?: string[] } = {}): EngineLoraView {
  const loaded = new LruMap<string, true>();
  for (const n of o.loaded ?? []) loaded.set(n, true);
  return {
    maxLoras: 2,
    maxCpuLoras: 4,
    running: new Set(),
    waiting: new Set(),
    loading: new Set(),
    inFlight: new Map(),
    diskBps: 1e9,
    linkBps: 25e9,
    loadOverheadS: 0.05,
    ...o,
    loaded,
  };
}

function engine(id: string, lora: EngineLoraView, over: Partial<EngineView> = {}): EngineView {
  const models = new Set([BASE, ...[...lora.loaded.oldestFirst()].map((e) => e.key)]);
  return idleEngineView(id, models, { lora, ...over });
}

function req(name: string, seq = 0): RequestView {
  return { model: name, seq, lora: { name, path: `/a/${name}`, base: BASE, bytes: 50e6 } };
}

test("a request for a registry adapter may go to any engine serving its base model; an unknown name is unknown-model", () => {
  const fleet = { engines: [engine("e1", loraView())], now: 0 };
  const d = decide(createLoraPolicy(), req("a1"), fleet);
  assert.equal(d.kind, "picked");
  assert.equal(decide(createLoraPolicy(), { model: "nope", seq: 0 }, fleet).kind, "unknown-model");
});

test("ours sends a request where its adapter is loaded rather than cold-loading it elsewhere", () => {
  const fleet = {
    engines: [engine("cold", loraView()), engine("warm", loraView({ loaded: ["a1"] }))],
    now: 0,
  };
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(createLoraPolicy(), req("a1", seq), fleet);
    assert.equal(d.kind === "picked" && d.engine.id, "warm");
  }
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
    engines: [engine("other", loraView({ loaded: ["a1"] })), engine("cached", loraView({ loaded: ["a1"] }))],
    now: 0,
  };
  const policy = createLoraPolicy({ cache: oracle });
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(policy, req("a1", seq), fleet);
    assert.equal(d.kind === "picked" && d.engine.id, "cached");
  }
  assert.deepEqual(picked[0], { engine: "cached", cached: 384, reason: "kv-hit" });
  // without one, a tie rotates: no prefix is priced
  const ids = new Set<string>();
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(createLoraPolicy(), req("a1", seq), fleet);
    if (d.kind === "picked") ids.add(d.engine.id);
  }
  assert.equal(ids.size, 2);
});

test("ours avoids an engine whose slots all serve other adapters when another has a free slot", () => {
  const full = loraView({ loaded: ["x", "y", "a1"], running: new Set(["x", "y"]) });
  const free = loraView({ loaded: [] });
  const fleet = { engines: [engine("full", full), engine("free", free)], now: 0 };
  const d = decide(createLoraPolicy({ serviceSeconds: 5 }), req("a1"), fleet);
  assert.equal(d.kind === "picked" && d.engine.id, "free");
});

test("ours replicates a hot adapter when the engine holding it is far busier than one without it", () => {
  const fleet = {
    engines: [
      engine("hot", loraView({ loaded: ["a1"], running: new Set(["a1"]) }), {
        inFlight: 200,
        awaitingFirstToken: 150,
      }),
      engine("idle", loraView()),
    ],
    now: 0,
  };
  const d = decide(createLoraPolicy(), req("a1"), fleet);
  assert.equal(d.kind === "picked" && d.engine.id, "idle");
});

test("a load into a full host cache evicts its oldest adapter with nothing in flight, never one in use", () => {
  const v = loraView({ loaded: ["old", "busy", "mid", "new"], inFlight: new Map([["old", 1]]) });
  assert.equal(evictionFor(v, "a1"), "busy");
  assert.equal(evictionFor(v, "mid"), null, "a loaded adapter evicts nothing");
  assert.equal(evictionFor(loraView({ loaded: ["x"] }), "a1"), null, "room left");
  assert.equal(coldLoadSeconds(v, req("mid").lora!), 0);
  assert.ok(Math.abs(coldLoadSeconds(v, req("a1").lora!) - (0.05 + 50e6 / 1e9 + 50e6 / 25e9)) < 1e-12);
});

test("a full host cache evicts its least used idle adapter, not its oldest: a run of rare ones keeps the popular", () => {
  const uses = new Map<string, AdapterUse>();
  // "popular" was loaded first and used often; "rare1" and "rare2" once each, later
  for (let i = 0; i < 5; i++) noteAdapterUse(uses, "popular", i * 1000);
  noteAdapterUse(uses, "rare1", 6000);
  noteAdapterUse(uses, "rare2", 7000);
  noteAdapterUse(uses, "busy", 7000);
  const v = loraView({
    loaded: ["popular", "rare1", "rare2", "busy"],
    uses,
    inFlight: new Map([["busy", 1]]),
  });
  assert.equal(evictionFor(v, "new", 8000), "rare1", "least used; the older of two equals");
  assert.ok(adapterUseAt(v, "popular", 8000) > adapterUseAt(v, "rare2", 8000));
  // a use decays by half each half-life: an adapter unused for a long while goes before a fresh one
  assert.equal(ADAPTER_USE_HALF_LIFE_MS, 60_000);
  const old = new Map<string, AdapterUse>([
    ["popular", { n: 5, at: 0 }],
    ["rare1", { n: 1, at: 4 * 60_000 }],
  ]);
  const w = loraView({ loaded: ["popular", "rare1", "x", "y"], uses: old });
  assert.equal(
    evictionVictim(w, 4 * 60_000, (n) => n === "x" || n === "y"),
    "popular",
  );
  // no use counts kept: the oldest idle one, as before
  assert.equal(evictionFor(loraView({ loaded: ["a", "b", "c", "d"] }), "new", 0), "a");
});

test("GIE's LoRA affinity keeps engines running or queueing the adapter, else those with room under max_lora", () => {
  const policy = createGieLoraAffinityPolicy();
  const fleet = {
    engines: [
      engine("has", loraView({ running: new Set(["a1"]) }), { waiting: 3 }),
      engine("room", loraView()),
      engine("full", loraView({ running: new Set(["x", "y"]) })),
    ],
    now: 0,
  };
  const picks = new Map<string, number>();
  for (let seq = 0; seq < 200; seq++) {
    const d = decide(policy, req("a1", seq), fleet);
    assert.equal(d.kind, "picked");
    if (d.kind === "picked") picks.set(d.engine.id, (picks.get(d.engine.id) ?? 0) + 1);
  }
  assert.equal(picks.get("full"), undefined);
  assert.ok((picks.get("has") ?? 0) >= 199, `affinity wins with probability 0.999: ${[...picks]}`);
  // a new adapter goes where running + waiting adapters are under max_lora
  for (let seq = 0; seq < 50; seq++) {
    const d = decide(policy, req("b2", seq), fleet);
    assert.ok(d.kind === "picked" && d.engine.id !== "full");
  }
});

test("GIE's tree runs least queueing first when every queue is over its threshold", () => {
  const policy = createGieLoraAffinityPolicy();
  const fleet = {
    engines: [
      engine("has", loraView({ running: new Set(["a1"]) }), { waiting: 400 }),
      engine("short", loraView(), { waiting: 130 }),
    ],
    now: 0,
  };
  const d = decide(policy, req("a1"), fleet);
  assert.equal(d.kind === "picked" && d.engine.id, "short");
});

test("static placement keeps each adapter on its two engines", () => {
  const policy = createStaticLoraPolicy(2);
  const fleet = { engines: ["e1", "e2", "e3", "e4"].map((id) => engine(id, loraView())), now: 0 };
  for (const name of ["a1", "a2", "a3"]) {
    const seen = new Set<string>();
    for (let seq = 0; seq < 40; seq++) {
      const d = decide(policy, req(name, seq), fleet);
      if (d.kind === "picked") seen.add(d.engine.id);
    }
    assert.equal(seen.size, 2, `${name} on ${[...seen]}`);
  }
});
