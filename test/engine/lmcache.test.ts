// The LMCache extension points of the engine model: the in-engine local CPU tier (chunk-granular LRU,
// blocking stores), externally cached prefixes loaded at a given bandwidth, and chunk announcements;
// the probes a router's price reads of the GPU and the CPU tier, apart or in one walk.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../../src/engine/engine.js";
import { VirtualDriver } from "../../src/engine/drivers.js";
import { LMCACHE_LOCAL_CPU_BPS } from "../../src/engine/lmcache.js";
import { config, makeEngine, request, runToIdle, tokens, Recorder } from "./helpers.js";

const MiB = 2 ** 20;

function cycle(offload: "native" | "lmcache" | null) {
  const { engine, driver } = makeEngine({
    numGpuBlocksOverride: 64,
    maxModelLen: 2048,
    offload: offload === null ? null : { backend: offload, bytes: 2 * 2 ** 30, chunkTokens: 256 },
  });
  // 6 distinct 520-token prompts (2 full chunks + a tail) cycled twice through a 64-block GPU cache
  const prompts = Array.from({ length: 6 }, (_, i) => tokens(520, 300 + i));
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < prompts.length; i++) {
      engine.add(request(`r${round}-${i}`, prompts[i]!, { maxTokens: 2, arrivalTime: driver.now }));
      runToIdle(engine, driver);
    }
  }
  return { c: engine.snapshot().counters, end: driver.now, engine, driver };
}

test("lmcache tier: evicted prefixes come back in whole 256-token chunks", () => {
  const base = cycle(null);
  const lm = cycle("lmcache");
  const native = cycle("native");
  // second round: each prompt's two full chunks (512 tokens) come from the LMCache tier
  assert.equal(base.c.offloadHitTokens, 0);
  assert.equal(lm.c.offloadHitTokens, 6 * 512);
  // native is block-granular, but a 520-token prompt has no full block past its last full chunk
  assert.equal(native.c.offloadHitTokens, 6 * 512);
  assert.ok(lm.end < base.end, `${lm.end} vs ${base.end}`);
  assert.ok(lm.c.offloadStoreSeconds > 0, "LMCache stores block the step");
  // native copies every newly computed block to the host; the copy takes the GPU's time at the host
  // link rate (8B: 2 MiB per block, H100 link 50 GB/s)
  const nativeCopy = (native.c.offloadStoredBlocks * 2 * MiB) / 50e9;
  assert.equal(native.c.offloadStoredBlocks, 6 * 32, "32 full blocks per prompt, stored once");
  assert.ok(Math.abs(native.c.offloadStoreSeconds - nativeCopy) < 1e-9, "native stores take step time");
  // 2 chunks × 6 prompts stored once each (the second round finds them present)
  assert.equal(lm.c.offloadStoredBlocks, 6 * 2 * 16);
  assert.equal(lm.engine.debugState().cpuBlocks, 6 * 2 * 16);
});

test("one probe of a prompt reads the GPU hit and the own tier beyond it as the two probes apart do", () => {
  for (const offload of ["native", "lmcache"] as const) {
    const { engine, driver } = cycle(offload);
    // the cycled prompts (the early ones on the CPU tier only, the late ones on the GPU too), one
    // sharing a cycled prompt's first chunk, one unseen
    const prompts = Array.from({ length: 6 }, (_, i) => tokens(520, 300 + i));
    prompts.push(tokens(256, 300).concat(tokens(300, 999)), tokens(600, 77));
    // the first prompt's two chunks remembered as a shared prefix, and a prompt that shares them
    const shared = { key: "p0", tokens: 512 };
    engine.add(request("memo", prompts[0]!, { maxTokens: 1, sharedPrefix: shared, arrivalTime: driver.now }));
    runToIdle(engine, driver);
    const sharing = prompts[0]!.slice(0, 512).concat(tokens(100, 5));
    const cases = prompts.flatMap((p) => [
      { p, opts: {} },
      { p, opts: { sharedPrefix: { key: "none remembered", tokens: 256 } } },
    ]);
    cases.push(
      { p: prompts[0]!, opts: { sharedPrefix: shared } },
      { p: sharing, opts: { sharedPrefix: shared } },
    );
    let tier = 0;
    for (const { p, opts } of cases) {
      const gpu = engine.probeCachedTokens(p, opts);
      const own = engine.probeTierTokens(p, gpu, opts);
      const both = engine.probePrefix(p, opts);
      assert.deepEqual(
        { ...both },
        { gpuTokens: gpu, tierTokens: own.tokens, tierSeconds: own.seconds },
        `${offload}: ${p.length} tokens`,
      );
      tier += own.tokens;
    }
    assert.ok(tier > 0, `${offload}: some prompt is found on the CPU tier`);
  }
});

test("lmcache tier: capacity is per TP rank and chunk-bounded, LRU", () => {
  const run = (bytes: number) => {
    const cfg = config({
      numGpuBlocksOverride: 40,
      maxModelLen: 2048,
      tensorParallelSize: 2,
      offload: { backend: "lmcache", bytes },
    });
    const engine = new Engine(cfg, new Recorder());
    const driver = new VirtualDriver();
    const send = (id: string, salt: number) => {
      engine.add(request(id, tokens(600, salt), { maxTokens: 1, arrivalTime: driver.now }));
      runToIdle(engine, driver);
      return engine.snapshot().counters.offloadHitTokens;
    };
    for (let i = 0; i < 3; i++) send(`r${i}`, i);
    const chunks = engine.debugState().cpuBlocks / 16;
    // the newest prompt is still on the GPU: the GPU prefix cache answers before the tier
    const gpuFirst = send("again-2", 2);
    // the oldest prompt left the 40-block GPU cache; is it still in the tier?
    const oldest = send("again-0", 0);
    return { chunks, gpuFirst, oldest };
  };
  // 8B at TP 2: 64 KiB per token per rank, a 256-token chunk is 16 MiB per rank: 3 chunks fit
  const small = run(3 * 16 * MiB);
  assert.deepEqual(small, { chunks: 3, gpuFirst: 0, oldest: 0 }, "LRU evicted the oldest prompt's chunks");
  const big = run(64 * 16 * MiB);
  assert.deepEqual(big, { chunks: 6, gpuFirst: 0, oldest: 512 });
});

test("lmcache config: chunk_size must be a multiple of block_size", () => {
  assert.throws(
    () => config({ offload: { backend: "lmcache", bytes: 2 ** 30, chunkTokens: 100 } }),
    /chunk_size \(100\) must be a multiple of block_size \(16\)/,
  );
  assert.throws(
    () => config({ offload: { backend: "disk" as "native", bytes: 2 ** 30 } }),
    /kv_offloading_backend must be "native" or "lmcache", got disk/,
  );
});

test("external tier: cached prefix loads at the given bandwidth instead of being computed", () => {
  const run = (ext: number) => {
    const { engine, rec, driver } = makeEngine({ maxModelLen: 16384 });
    engine.add(
      request("x", tokens(8000, 9), {
        maxTokens: 1,
        externalCachedTokens: ext,
        externalLoadBandwidth: ext > 0 ? 10e9 : undefined,
      }),
    );
    runToIdle(engine, driver);
    return { c: engine.snapshot().counters, t: rec.finished.get("x")!.timings };
  };
  const cold = run(0);
  const warm = run(7680);
  assert.equal(warm.c.externalHitTokens, 7680);
  assert.equal(warm.t.externalTokens, 7680);
  assert.equal(warm.t.cachedTokens, 7680);
  // 7680 tokens × 128 KiB = 960 MiB at 10 GB/s ≈ 0.1 s
  assert.ok(Math.abs(warm.c.externalTransferSeconds - (7680 * 131072) / 10e9) < 1e-9);
  assert.ok(warm.t.firstTokenTime < cold.t.firstTokenTime, "10 GB/s beats recomputing 7.7k tokens");
  assert.equal(cold.c.externalHitTokens, 0);
  // an external prefix longer than the prompt is capped below the last token
  const capped = run(9000);
  assert.equal(capped.c.externalHitTokens, Math.floor(7999 / 16) * 16);
});

test("external tier: only what the GPU prefix cache lacks is loaded", () => {
  const { engine, driver } = makeEngine({ maxModelLen: 16384 });
  const p = tokens(4096, 5);
  engine.add(request("a", p, { maxTokens: 1 }));
  runToIdle(engine, driver);
  engine.add(
    request("b", p, {
      maxTokens: 1,
      arrivalTime: driver.now,
      externalCachedTokens: 4096,
      externalLoadBandwidth: 1e9,
    }),
  );
  runToIdle(engine, driver);
  assert.equal(engine.snapshot().counters.externalHitTokens, 0);
});

test("external tier: a cached prefix without a bandwidth is refused", () => {
  const { engine } = makeEngine();
  assert.throws(
    () => engine.add(request("x", tokens(100), { externalCachedTokens: 64 })),
    /externalCachedTokens needs externalLoadBandwidth/,
  );
});

test("onChunksComputed: each full prompt chunk is announced once, across prefill chunks", () => {
  const calls: [string, number, number, number][] = [];
  const rec = new Recorder();
  const observer = {
    onTokens: rec.onTokens.bind(rec),
    onFinished: rec.onFinished.bind(rec),
    onChunksComputed(id: string, from: number, to: number, ids: readonly number[]) {
      calls.push([id, from, to, ids.length]);
    },
  };
  // a 1000-token budget splits the 2600-token prompt over 3 steps: chunks end at 256·k
  const engine = new Engine(
    config({ maxNumBatchedTokens: 1000, maxNumSeqs: 8, maxModelLen: 4096 }),
    observer,
  );
  const driver = new VirtualDriver();
  const p = tokens(2600, 1);
  engine.add(request("a", p, { maxTokens: 300 }));
  runToIdle(engine, driver);
  assert.deepEqual(
    calls.map((c) => [c[0], c[1], c[2]]),
    [
      ["a", 0, 3],
      ["a", 3, 7],
      ["a", 7, 10],
    ],
  );
  // the same prompt again: its chunks come from the prefix cache, so only the tail chunk is new
  calls.length = 0;
  engine.add(request("b", p, { maxTokens: 1, arrivalTime: driver.now }));
  runToIdle(engine, driver);
  assert.deepEqual(calls, []);
  // output tokens are never announced (prompt KV only)
  assert.ok(calls.every((c) => c[2] * 256 <= 2600));
});

test("LMCache local CPU bandwidth constant is LMCache's logged low end", () => {
  assert.equal(LMCACHE_LOCAL_CPU_BPS, 41 * 2 ** 30);
});

test("fast block hash: the same caching decisions as sha256_cbor; a listener still gets KV events", () => {
  const run = (algo: "sha256_cbor" | "fast") => {
    const { engine, driver } = makeEngine({
      numGpuBlocksOverride: 80,
      maxModelLen: 2048,
      blockHashAlgo: algo,
    });
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < 5; i++) {
        engine.add(
          request(`r${round}-${i}`, tokens(300 + i * 40, i % 3), { maxTokens: 6, arrivalTime: driver.now }),
        );
        if (i % 2 === 1) runToIdle(engine, driver);
      }
    runToIdle(engine, driver);
    return { c: { ...engine.snapshot().counters }, end: driver.now };
  };
  const exact = run("sha256_cbor");
  const fast = run("fast");
  assert.ok(exact.c.prefixCacheHits > 0);
  assert.deepEqual(fast, exact);
  const rec = new Recorder();
  const e = new Engine(config({ blockHashAlgo: "fast" }), rec);
  const d = new VirtualDriver();
  e.add(request("a", tokens(64), { maxTokens: 1 }));
  runToIdle(e, d);
  assert.ok(rec.events.some((ev) => ev.type === "BlockStored"));
});
