// EngineRequest.sharedPrefix is a speed hint only: the same requests with and without it give the same
// tokens, timings, counters and KV events, under prefix hits, evictions, preemption, salts and a CPU tier.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Engine } from "../../src/engine/engine.js";
import { VirtualDriver } from "../../src/engine/drivers.js";
import type { EngineConfig, EngineRequest } from "../../src/engine/types.js";
import { config, Recorder, request, tokens } from "./helpers.js";

const SYSTEMS = [tokens(700, 1), tokens(900, 2), tokens(500, 3)];

/** 60 requests over three shared prefixes, arriving in waves into a KV cache that cannot hold them all */
function run(cfg: EngineConfig, hint: boolean) {
  const rec = new Recorder();
  const engine = new Engine(cfg, rec);
  const driver = new VirtualDriver();
  driver.attach(engine);
  for (let i = 0; i < 60; i++) {
    const g = i % SYSTEMS.length;
    const sys = SYSTEMS[g]!;
    const prompt = sys.concat(tokens(40 + (i % 7) * 13, 100 + i));
    const req: EngineRequest = request(`r${i}`, prompt, {
      maxTokens: 24 + (i % 5) * 8,
      arrivalTime: Math.floor(i / 12) * 0.05,
      cacheSalt: i % 11 === 0 ? "tenant-b" : null,
      sampleToken: (k) => 5000 + ((i * 31 + k) % 997),
      ...(hint ? { sharedPrefix: { key: `sys${g}`, tokens: sys.length } } : {}),
    });
    driver.at(req.arrivalTime, () => {
      engine.add(req);
      driver.wake(engine);
    });
  }
  driver.run();
  const finished = [...rec.finished.entries()].sort(([a], [b]) => a.localeCompare(b));
  return { finished, counters: { ...engine.snapshot().counters }, events: rec.events, order: rec.order };
}

for (const [name, cfg] of [
  ["GPU prefix cache under eviction and preemption", config({ numGpuBlocksOverride: 180, maxNumSeqs: 16 })],
  [
    "with a native CPU tier",
    config({ numGpuBlocksOverride: 180, maxNumSeqs: 16, offload: { backend: "native", bytes: 2 ** 30 } }),
  ],
  ["fast block hash", config({ numGpuBlocksOverride: 220, blockHashAlgo: "fast" })],
] as const) {
  test(`sharedPrefix changes nothing: ${name}`, () => {
    const plain = run(cfg, false);
    const hinted = run(cfg, true);
    assert.equal(plain.finished.length, 60);
    // the scenario does exercise what the hint touches
    assert.ok(plain.counters.prefixCacheHits > 0, "prefix hits");
    assert.ok(
      plain.events.some((e) => e.type === "BlockRemoved"),
      "prefixes are evicted",
    );
    assert.deepEqual(hinted.counters, plain.counters);
    assert.deepEqual(hinted.order, plain.order);
    assert.deepEqual(hinted.finished, plain.finished);
    assert.deepEqual(hinted.events, plain.events);
  });
}
