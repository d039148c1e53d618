import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../../src/engine/engine.js";
import { BlockPool } from "../../src/engine/block-pool.js";
import { computeBlockHashes } from "../../src/protocol/block-hashing.js";
import type { BlockRemoved, BlockStored } from "../../src/kvevents/events.js";
import { config, makeEngine, request, runToIdle, tokens, Recorder } from "./helpers.js";

test("a request runs to max_tokens with one token per step after the prefill", () => {
  const { engine, rec, driver } = makeEngine();
  engine.add(request("a", tokens(100), { maxTokens: 5 }));
  runToIdle(engine, driver);
  const f = rec.finished.get("a")!;
  assert.equal(f.reason, "length");
  assert.deepEqual(f.tokens, [1000, 1001, 1002, 1003, 1004]);
  assert.equal(f.timings.outputTokens, 5);
  assert.ok(f.timings.firstTokenTime > 0 && f.timings.finishedTime > f.timings.firstTokenTime);
  assert.equal(engine.snapshot().counters.steps, 5);
  assert.equal(engine.hasWork(), false);
  assert.equal(engine.snapshot().kvCacheUsage, 0);
});

test("stop at stopAfter unless ignore_eos; min_tokens holds the stop back", () => {
  const { engine, rec, driver } = makeEngine();
  engine.add(request("s", tokens(20), { maxTokens: 10, stopAfter: 3 }));
  engine.add(request("i", tokens(20, 1), { maxTokens: 10, stopAfter: 3, ignoreEos: true }));
  engine.add(request("m", tokens(20, 2), { maxTokens: 10, stopAfter: 3, minTokens: 6 }));
  runToIdle(engine, driver);
  assert.equal(rec.finished.get("s")!.reason, "stop");
  assert.equal(rec.finished.get("s")!.tokens.length, 3);
  assert.equal(rec.finished.get("i")!.reason, "length");
  assert.equal(rec.finished.get("i")!.tokens.length, 10);
  assert.equal(rec.finished.get("m")!.reason, "stop");
  assert.equal(rec.finished.get("m")!.tokens.length, 6);
});

test("validateRequest gives vLLM's 400 messages", () => {
  const e = new Engine(config({ maxModelLen: 1000 }), new Recorder());
  assert.equal(e.validateRequest(10, 990), null);
  assert.match(
    e.validateRequest(10, 991)!,
    /maximum context length is 1000 tokens and your request has 10 input tokens \(991 > 1000 - 10\)/,
  );
  assert.match(
    e.validateRequest(1000, 1)!,
    /maximum context length is 1000 tokens\. However, your request has 1000 input tokens/,
  );
  assert.throws(() => e.add(request("x", tokens(995), { maxTokens: 10 })), /maximum context length/);
});

test("prefix hit after a repeat: counters, cached tokens and BlockStored chain", () => {
  const { engine, rec, driver } = makeEngine();
  const prompt = tokens(100);
  engine.add(request("a", prompt, { maxTokens: 2 }));
  runToIdle(engine, driver);
  engine.add(request("b", prompt, { maxTokens: 2, arrivalTime: driver.now }));
  runToIdle(engine, driver);
  const c = engine.snapshot().counters;
  assert.equal(c.prefixCacheQueries, 200);
  assert.equal(c.prefixCacheHits, 96); // 6 full blocks; the hit is capped below the prompt length
  assert.equal(rec.finished.get("b")!.timings.cachedTokens, 96);
  assert.equal(rec.finished.get("a")!.timings.cachedTokens, 0);
  const stored = rec.events.filter((e): e is BlockStored => e.type === "BlockStored");
  const expected = computeBlockHashes(prompt, { blockSize: 16, hashSeed: "0" }).ids;
  assert.deepEqual(stored[0]!.blockHashes, expected);
  assert.equal(stored[0]!.parentBlockHash, null);
  assert.equal(stored[0]!.tokenIds.length, 96);
  assert.equal(stored[0]!.medium, "GPU");
  // prompt 100 = 6 blocks + 4 tokens; a's outputs never fill block 7, so nothing more is stored
  assert.equal(stored.length, 1);
});

test("exact-block-multiple prompt: the last block is recomputed, not hit", () => {
  const { engine, driver } = makeEngine();
  const prompt = tokens(64);
  engine.add(request("a", prompt, { maxTokens: 1 }));
  runToIdle(engine, driver);
  engine.add(request("b", prompt, { maxTokens: 1, arrivalTime: driver.now }));
  runToIdle(engine, driver);
  assert.equal(engine.snapshot().counters.prefixCacheHits, 48);
});

test("decode fills blocks and stores them with their parent; cache_salt and LoRA change the hashes", () => {
  const { engine, rec, driver } = makeEngine();
  const prompt = tokens(16);
  engine.add(request("a", prompt, { maxTokens: 20, cacheSalt: "t1", loraName: "sql" }));
  runToIdle(engine, driver);
  const stored = rec.events.filter((e): e is BlockStored => e.type === "BlockStored");
  assert.equal(stored.length, 2);
  const all = [...prompt, ...rec.finished.get("a")!.tokens];
  const ids = computeBlockHashes(all, { blockSize: 16, hashSeed: "0", cacheSalt: "t1", loraName: "sql" }).ids;
  assert.deepEqual(stored[0]!.blockHashes, [ids[0]]);
  assert.deepEqual(stored[1]!.blockHashes, [ids[1]]);
  assert.equal(stored[1]!.parentBlockHash, ids[0]);
  assert.deepEqual(stored[1]!.tokenIds, all.slice(16, 32));
  assert.equal(stored[1]!.loraName, "sql");
});

test("block pool: LRU free order, chain tails evicted first, BlockRemoved on reuse", () => {
  const pool = new BlockPool(6);
  assert.deepEqual(pool.freeQueue(), [0, 1, 2, 3, 4, 5]);
  const a: number[] = [];
  const b: number[] = [];
  assert.ok(pool.allocate(3, a));
  assert.ok(pool.allocate(2, b));
  assert.deepEqual(a, [0, 1, 2]);
  a.forEach((blk, i) => pool.cacheBlock(blk, BigInt(10 + i), Buffer.alloc(32)));
  b.forEach((blk, i) => pool.cacheBlock(blk, BigInt(20 + i), Buffer.alloc(32)));
  pool.free(a); // freed together: tail first
  pool.free(b);
  assert.deepEqual(pool.freeQueue(), [5, 2, 1, 0, 4, 3]);
  // a hit takes a block out of the free queue
  pool.touch(pool.lookup(11n));
  assert.deepEqual(pool.freeQueue(), [5, 2, 0, 4, 3]);
  const c: number[] = [];
  assert.ok(pool.allocate(3, c));
  assert.deepEqual(c, [5, 2, 0]);
  assert.deepEqual(
    pool.events.map((e) => (e as BlockRemoved).blockHashes[0]),
    [12n, 10n],
  );
  assert.ok(pool.events.every((e) => e.type === "BlockRemoved" && e.medium === "GPU"));
  assert.equal(pool.lookup(12n), -1);
  assert.equal(pool.lookup(11n), 1);
  assert.equal(pool.allocate(3, []), false);
  assert.equal(pool.reset(), false);
});

test("engine evicts the least recently used prefix first and reports it", () => {
  // 12 blocks: three 4-block prompts fill it; a fourth must evict the oldest prompt's blocks
  const { engine, rec, driver } = makeEngine({ numGpuBlocksOverride: 12, maxModelLen: 128 });
  const prompts = [0, 1, 2, 3].map((s) => tokens(63, s + 10));
  for (let i = 0; i < 3; i++) {
    engine.add(request(`p${i}`, prompts[i]!, { maxTokens: 1, arrivalTime: driver.now }));
    runToIdle(engine, driver);
  }
  // touch p0 again so p1 becomes the LRU prefix
  engine.add(request("p0again", prompts[0]!, { maxTokens: 1, arrivalTime: driver.now }));
  runToIdle(engine, driver);
  rec.events.length = 0;
  engine.add(request("p3", prompts[3]!, { maxTokens: 1, arrivalTime: driver.now }));
  runToIdle(engine, driver);
  const removed = rec.events
    .filter((e): e is BlockRemoved => e.type === "BlockRemoved")
    .flatMap((e) => e.blockHashes);
  const p1 = computeBlockHashes(prompts[1]!, { blockSize: 16, hashSeed: "0" }).ids;
  // p1's three full blocks go, tail first
  assert.deepEqual(removed.slice(0, 3), [p1[2], p1[1], p1[0]]);
  assert.equal(rec.events[0]!.type, "BlockRemoved");
});

test("preemption under memory pressure: every request completes and recomputation is counted", () => {
  const { engine, rec, driver } = makeEngine({ numGpuBlocksOverride: 40, maxModelLen: 640 });
  // 12 requests × (200 prompt + 200 output) tokens need 12 × 25 = 300 blocks; only 40 exist
  for (let i = 0; i < 12; i++) engine.add(request(`r${i}`, tokens(200, i), { maxTokens: 200 }));
  runToIdle(engine, driver);
  assert.equal(rec.finished.size, 12);
  for (const f of rec.finished.values()) {
    assert.equal(f.reason, "length");
    assert.equal(f.tokens.length, 200);
    // outputs are the same whatever the preemptions
    assert.deepEqual(f.tokens.slice(0, 3), [1000, 1001, 1002]);
  }
  const c = engine.snapshot().counters;
  assert.ok(c.numPreemptions > 0, "preempted");
  assert.ok(c.recomputedTokens > 0, "recomputed");
  assert.equal(
    [...rec.finished.values()].reduce((s, f) => s + f.timings.preemptions, 0),
    c.numPreemptions,
  );
  assert.equal(engine.snapshot().kvCacheUsage, 0);
  console.log(`preemption: ${c.numPreemptions} preemptions, ${c.recomputedTokens} tokens recomputed`);
});

test("abort frees blocks at once, mid-step included", () => {
  const { engine, rec, driver } = makeEngine();
  engine.add(request("a", tokens(500), { maxTokens: 100 }));
  engine.add(request("b", tokens(500, 1), { maxTokens: 100 }));
  const plan = engine.beginStep(0);
  assert.ok(plan);
  assert.ok(engine.snapshot().kvCacheUsage > 0);
  assert.equal(engine.abort("a"), true);
  assert.equal(engine.abort("a"), false);
  assert.equal(engine.abort("nope"), false);
  engine.completeStep(plan.duration);
  assert.equal(rec.finished.get("a")!.reason, "abort");
  assert.equal(rec.tokens.get("a"), undefined, "no token after the abort");
  assert.equal(engine.abort("b"), true);
  assert.equal(engine.snapshot().kvCacheUsage, 0);
  assert.equal(engine.hasWork(), false);
  assert.equal(engine.resetPrefixCache(), true);
  assert.equal(rec.events.at(-1)!.type, "AllBlocksCleared");
  void driver;
});

test("a request that arrives while a step runs is taken in when that step ends, as vLLM's engine core reads its input between steps; on an idle engine at once", () => {
  const { engine, rec } = makeEngine();
  engine.add(request("a", tokens(500), { maxTokens: 2, arrivalTime: 0 }));
  const first = engine.beginStep(0)!;
  // b arrives mid-step
  engine.add(request("b", tokens(500, 1), { maxTokens: 2, arrivalTime: first.duration / 2 }));
  engine.completeStep(first.duration);
  let now = first.duration;
  while (engine.hasWork()) {
    const p = engine.beginStep(now)!;
    now += p.duration;
    engine.completeStep(now);
  }
  assert.equal(rec.finished.get("a")!.timings.queuedTime, 0);
  const b = rec.finished.get("b")!.timings;
  assert.equal(b.arrivalTime, first.duration / 2);
  assert.equal(b.queuedTime, first.duration);
});

test("resetPrefixCache is refused while blocks are in use", () => {
  const { engine } = makeEngine();
  engine.add(request("a", tokens(50), { maxTokens: 10 }));
  const plan = engine.beginStep(0)!;
  engine.completeStep(plan.duration);
  assert.equal(engine.resetPrefixCache(), false);
});

test("priority policy serves (priority, arrival) order; FCFS serves the order requests were added", () => {
  for (const policy of ["priority", "fcfs"] as const) {
    const { engine, rec, driver } = makeEngine({
      schedulingPolicy: policy,
      maxNumSeqs: 1,
      maxNumBatchedTokens: 2048,
    });
    engine.add(request("early-low", tokens(30, 3), { maxTokens: 2, priority: 3, arrivalTime: 0 }));
    engine.add(request("early-normal", tokens(30, 2), { maxTokens: 2, priority: 0, arrivalTime: 0.5 }));
    engine.add(request("late-urgent", tokens(30, 1), { maxTokens: 2, priority: -5, arrivalTime: 1 }));
    runToIdle(engine, driver);
    assert.deepEqual(
      rec.order,
      policy === "priority"
        ? ["late-urgent", "early-normal", "early-low"]
        : ["early-low", "early-normal", "late-urgent"],
    );
  }
});

test("priority preemption evicts the least urgent running request", () => {
  const { engine, rec, driver } = makeEngine({
    schedulingPolicy: "priority",
    numGpuBlocksOverride: 20,
    maxModelLen: 320,
  });
  engine.add(request("low", tokens(100, 1), { maxTokens: 150, priority: 5 }));
  engine.add(request("high", tokens(100, 2), { maxTokens: 150, priority: 0 }));
  runToIdle(engine, driver);
  assert.equal(rec.finished.get("high")!.timings.preemptions, 0);
  assert.ok(rec.finished.get("low")!.timings.preemptions > 0);
  assert.equal(rec.order[0], "high");
});

test("chunked prefill: a long prompt is split across steps by the token budget", () => {
  const { engine, rec, driver } = makeEngine({ maxNumBatchedTokens: 1024, maxNumSeqs: 64 });
  engine.add(request("long", tokens(5000), { maxTokens: 2 }));
  const plans: number[] = [];
  let now = 0;
  for (;;) {
    const p = engine.beginStep(now);
    if (!p) break;
    plans.push(p.prefillTokens + p.decodeSeqs);
    now += p.duration;
    engine.completeStep(now);
  }
  assert.deepEqual(plans, [1024, 1024, 1024, 1024, 904, 1]);
  assert.equal(rec.finished.get("long")!.tokens.length, 2);
  void driver;
});

test("determinism: the same inputs give the same timings and events", () => {
  const run = () => {
    const { engine, rec, driver } = makeEngine({ numGpuBlocksOverride: 60, maxModelLen: 960 });
    for (let i = 0; i < 20; i++) {
      engine.add(
        request(`r${i}`, tokens(100 + ((i * 37) % 200), i % 4), { maxTokens: 30 + i, arrivalTime: 0 }),
      );
    }
    runToIdle(engine, driver);
    return JSON.stringify(
      { t: [...rec.finished.entries()], e: rec.events, c: engine.snapshot().counters },
      (_k, v) => (typeof v === "bigint" ? v.toString() : v),
    );
  };
  assert.equal(run(), run());
});
