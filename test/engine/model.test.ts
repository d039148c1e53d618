// The shape of the model on the virtual clock: anchors against published figures, batch and prompt-length
// trends, prefix and offload effects, and the real-time driver.
import { mock, test } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../../src/engine/engine.js";
import { VirtualDriver } from "../../src/engine/drivers.js";
import { RealTimeDriver } from "../../src/sim/runtime/real-time-driver.js";
import type { BlockStored } from "../../src/kvevents/events.js";
import { config, makeEngine, request, runToIdle, tokens, Recorder } from "./helpers.js";

function meanItl(rec: Recorder): number {
  let sum = 0;
  let n = 0;
  for (const { times } of rec.tokens.values()) {
    for (let i = 1; i < times.length; i++) {
      sum += times[i]! - times[i - 1]!;
      n++;
    }
  }
  return sum / n;
}

test("anchor: Llama-3.1-8B on one H100 decodes one stream in 6-12 ms per token", () => {
  const { engine, rec, driver } = makeEngine();
  engine.add(request("a", tokens(1000), { maxTokens: 64 }));
  runToIdle(engine, driver);
  const itl = meanItl(rec);
  console.log(`anchor: single-stream ITL ${(itl * 1000).toFixed(2)} ms`);
  assert.ok(itl > 0.006 && itl < 0.012, `ITL ${itl}`);
});

test("anchor: Llama-3.1-8B on one H100 prefills 10k-30k tokens/s", () => {
  for (const len of [2048, 8192, 16384]) {
    const { engine, rec, driver } = makeEngine();
    engine.add(request("a", tokens(len), { maxTokens: 1 }));
    runToIdle(engine, driver);
    const ttft = rec.finished.get("a")!.timings.firstTokenTime;
    const rate = len / ttft;
    console.log(
      `anchor: prefill ${len} tokens in ${(ttft * 1000).toFixed(1)} ms = ${Math.round(rate)} tok/s`,
    );
    assert.ok(rate > 10_000 && rate < 30_000, `rate ${rate}`);
  }
});

test("shape: ITL grows with batch size", () => {
  const itls: number[] = [];
  for (const batch of [1, 32, 256, 1024]) {
    const { engine, rec, driver } = makeEngine();
    for (let i = 0; i < batch; i++) engine.add(request(`r${i}`, tokens(200, i), { maxTokens: 40 }));
    runToIdle(engine, driver);
    itls.push(meanItl(rec));
  }
  console.log(`shape: ITL by batch 1/32/256/1024: ${itls.map((x) => (x * 1000).toFixed(2)).join(" / ")} ms`);
  for (let i = 1; i < itls.length; i++) assert.ok(itls[i]! > itls[i - 1]!, `ITL ${itls}`);
});

test("shape: TTFT grows with prompt length; a prefix hit cuts it", () => {
  const ttfts: number[] = [];
  for (const len of [256, 2048, 16384]) {
    const { engine, rec, driver } = makeEngine();
    engine.add(request("a", tokens(len), { maxTokens: 1 }));
    runToIdle(engine, driver);
    ttfts.push(rec.finished.get("a")!.timings.firstTokenTime);
  }
  assert.ok(ttfts[0]! < ttfts[1]! && ttfts[1]! < ttfts[2]!, `TTFT ${ttfts}`);
  const { engine, rec, driver } = makeEngine();
  const prompt = tokens(8000);
  engine.add(request("cold", prompt, { maxTokens: 1 }));
  runToIdle(engine, driver);
  const t0 = driver.now;
  engine.add(request("warm", prompt, { maxTokens: 1, arrivalTime: t0 }));
  runToIdle(engine, driver);
  const cold = rec.finished.get("cold")!.timings.firstTokenTime;
  const warm = rec.finished.get("warm")!.timings.firstTokenTime - t0;
  console.log(
    `shape: TTFT 8000-token prompt cold ${(cold * 1000).toFixed(1)} ms, warm ${(warm * 1000).toFixed(1)} ms`,
  );
  assert.ok(warm < cold / 5, `warm ${warm} cold ${cold}`);
});

test("shape: tensor parallel shortens a 70B step, with communication cost", () => {
  const step = (tp: number) => {
    const e = new Engine(
      config({ tensorParallelSize: tp, maxModelLen: 8192 }, "meta-llama/Llama-3.1-70B", "h100"),
      new Recorder(),
    );
    e.add(request("a", tokens(2048), { maxTokens: 1 }));
    return e.beginStep(0)!.duration;
  };
  const t2 = step(2);
  const t4 = step(4);
  const t8 = step(8);
  assert.ok(t4 < t2 && t8 < t4);
  assert.ok(t8 > t2 / 4, "communication keeps TP scaling below linear");
});

function offloadRun(withOffload: boolean) {
  const { engine, rec, driver } = makeEngine({
    numGpuBlocksOverride: 64,
    maxModelLen: 1024,
    offload: withOffload ? { backend: "native", bytes: 2 * 2 ** 30 } : null,
  });
  // 8 distinct 320-token prompts (20 blocks each) cycle twice through a 64-block GPU cache
  const prompts = Array.from({ length: 8 }, (_, i) => tokens(320, 100 + i));
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < prompts.length; i++) {
      engine.add(request(`r${round}-${i}`, prompts[i]!, { maxTokens: 4, arrivalTime: driver.now }));
      runToIdle(engine, driver);
    }
  }
  const c = engine.snapshot().counters;
  const computed = c.promptTokens - c.prefixCacheHits - c.offloadHitTokens;
  return { c, computed, rec, end: driver.now };
}

test("offload tier: evicted prefixes load from CPU instead of being recomputed", () => {
  const base = offloadRun(false);
  const off = offloadRun(true);
  console.log(
    `offload: prompt tokens computed ${base.computed} without, ${off.computed} with the CPU tier ` +
      `(${off.c.offloadHitTokens} tokens loaded, ${off.c.offloadLoadedBlocks} blocks, ` +
      `${(off.c.offloadTransferSeconds * 1000).toFixed(2)} ms of transfer); run ${base.end.toFixed(3)} s vs ${off.end.toFixed(3)} s`,
  );
  assert.ok(off.computed < base.computed * 0.6, `${off.computed} vs ${base.computed}`);
  assert.ok(off.c.offloadStoredBlocks > 0 && off.c.offloadBytesToCpu > 0 && off.c.offloadBytesToGpu > 0);
  assert.ok(off.end < base.end, "loading at the host-link rate beats recomputing");
  const cpuStored = off.rec.events.filter(
    (e): e is BlockStored => e.type === "BlockStored" && e.medium === "CPU",
  );
  assert.ok(cpuStored.length > 0);
});

test("offload tier reduces recomputation after preemption", () => {
  const run = (withOffload: boolean) => {
    const { engine, rec, driver } = makeEngine({
      numGpuBlocksOverride: 40,
      maxModelLen: 640,
      offload: withOffload ? { backend: "native", bytes: 2 * 2 ** 30 } : null,
    });
    for (let i = 0; i < 12; i++) engine.add(request(`r${i}`, tokens(200, i), { maxTokens: 200 }));
    runToIdle(engine, driver);
    assert.equal(rec.finished.size, 12);
    return engine.snapshot().counters;
  };
  const base = run(false);
  const off = run(true);
  console.log(
    `offload+preemption: recomputed ${base.recomputedTokens} tokens without, ${off.recomputedTokens} with (${off.offloadHitTokens} loaded)`,
  );
  assert.ok(off.recomputedTokens < base.recomputedTokens);
});

test("CPU tier is bounded and evicts LRU with CPU BlockRemoved events", () => {
  const { engine, rec, driver } = makeEngine({
    numGpuBlocksOverride: 64,
    maxModelLen: 1024,
    offload: { backend: "native", bytes: 10 * 2 * 2 ** 20 }, // 10 blocks of 2 MiB
  });
  for (let i = 0; i < 3; i++) {
    engine.add(request(`r${i}`, tokens(160, i), { maxTokens: 1, arrivalTime: driver.now }));
    runToIdle(engine, driver);
  }
  assert.equal(engine.snapshot().numCpuBlocks, 10);
  assert.equal(engine.debugState().cpuBlocks, 10);
  assert.ok(rec.events.some((e) => e.type === "BlockRemoved" && e.medium === "CPU"));
});

test("virtual driver: many engines share one clock and idle time is skipped", () => {
  const driver = new VirtualDriver();
  const recs = [new Recorder(), new Recorder()];
  const engines = recs.map((r) => new Engine(config(), r));
  driver.at(100, () => {
    engines[1]!.add(request("late", tokens(100), { maxTokens: 3, arrivalTime: driver.now }));
    driver.wake(engines[1]!);
  });
  engines[0]!.add(request("early", tokens(100), { maxTokens: 3 }));
  driver.wake(engines[0]!);
  driver.run();
  assert.ok(recs[0]!.finished.get("early")!.timings.finishedTime < 1);
  const late = recs[1]!.finished.get("late")!.timings;
  assert.ok(late.firstScheduledTime === 100 && late.finishedTime > 100 && late.finishedTime < 101);
});

test("real-time driver: runs a request on the wall clock with a time scale", async () => {
  const rec = new Recorder();
  const engine = new Engine(config(), rec);
  const driver = new RealTimeDriver(engine, { timeScale: 0.5 });
  const start = performance.now() / 1000;
  engine.add(request("a", tokens(100), { maxTokens: 20, arrivalTime: start }));
  driver.wake();
  driver.wake(); // idempotent while running
  const done = await new Promise<boolean>((resolve) => {
    const poll = setInterval(() => {
      if (rec.finished.has("a")) {
        clearInterval(poll);
        clearTimeout(guard);
        resolve(true);
      }
    }, 5);
    const guard = setTimeout(() => {
      clearInterval(poll);
      resolve(false);
    }, 30_000); // timing-ok: a hang guard (the run takes ~0.1 s idle)
  });
  driver.stop();
  assert.ok(done);
  const t = rec.finished.get("a")!.timings;
  const modelled = engine.snapshot().counters.busySeconds;
  const wall = t.finishedTime - t.firstScheduledTime;
  // the wall time is at least the scaled model time (timers never fire early)
  assert.ok(wall >= modelled * 0.5 * 0.9, `wall ${wall} modelled ${modelled}`);
  assert.equal(rec.tokens.get("a")!.ids.length, 20);
});

test("real-time driver compensates timer lateness over many steps", () => {
  // On mocked timers and a mocked clock, so that no real load can add to the lateness simulated here.
  mock.timers.enable({ apis: ["setTimeout", "setImmediate"] });
  try {
    const rec = new Recorder();
    const engine = new Engine(config(), rec);
    let ms = 0; // mocked time, advanced by tick()
    let late = 0;
    // a clock that runs 0.3 ms late on every read, like a busy event loop
    const clock = () => (ms + (late += 0.3)) / 1000;
    const driver = new RealTimeDriver(engine, { timeScale: 0.2, clock });
    engine.add(request("a", tokens(100), { maxTokens: 150, arrivalTime: clock() }));
    const begin = clock();
    driver.wake();
    for (let i = 0; i < 1_000_000 && !rec.finished.has("a"); i++) {
      mock.timers.tick(0.05);
      ms += 0.05;
    }
    driver.stop();
    assert.ok(rec.finished.has("a"), "the request finished");
    const elapsed = rec.finished.get("a")!.timings.finishedTime - begin;
    const ideal = engine.snapshot().counters.busySeconds * 0.2;
    // the reads alone ran the clock ahead by `late` ms: waits that ignored it would add most of that
    console.log(
      `real-time: ${(elapsed * 1000).toFixed(1)} ms for ${(ideal * 1000).toFixed(1)} ms ideal; ` +
        `the clock's reads ran ${late.toFixed(0)} ms late in all`,
    );
    assert.ok(elapsed < ideal * 1.25 + 0.02, `elapsed ${elapsed} ideal ${ideal}`);
  } finally {
    mock.timers.reset();
  }
});

test("a profile's per-sequence cost lengthens each step by its cost for every sequence in it", () => {
  // 8 streams decoding together, with and without a millisecond a sequence: 8 ms more a step
  const itlWith = (seqOverheadS?: number) => {
    const base = config();
    const gpu = seqOverheadS === undefined ? base.gpu : { ...base.gpu, seqOverheadS };
    const rec = new Recorder();
    const e = new Engine({ ...base, gpu }, rec);
    const driver = new VirtualDriver();
    driver.attach(e);
    for (let i = 0; i < 8; i++) e.add(request(`r${i}`, tokens(64, i * 1000), { maxTokens: 32 }));
    runToIdle(e, driver);
    return meanItl(rec);
  };
  const plain = itlWith();
  const costed = itlWith(0.001);
  assert.ok(Math.abs(costed - plain - 0.008) < 1e-6, `ITL ${plain} s without, ${costed} s with`);
});

test("a profile's prefill shape (attention cost factor, cost a prefilling sequence) lengthens prefill steps only", () => {
  const run = (gpuExtra: object) => {
    const base = config();
    const rec = new Recorder();
    const e = new Engine({ ...base, gpu: { ...base.gpu, ...gpuExtra } }, rec);
    const driver = new VirtualDriver();
    driver.attach(e);
    e.add(request("long", tokens(4000), { maxTokens: 16 }));
    runToIdle(e, driver);
    const t = rec.tokens.get("long")!.times;
    return { ttft: t[0]!, itl: meanItl(rec) };
  };
  const plain = run({});
  const overhead = run({ prefillSeqOverheadS: 0.005 });
  // one prefilling sequence a step: 5 ms more a prefill step, decode steps as they were
  const prefillSteps = Math.ceil(4000 / config().maxNumBatchedTokens);
  assert.ok(
    Math.abs(overhead.ttft - plain.ttft - 0.005 * prefillSteps) < 1e-9,
    `${plain.ttft} → ${overhead.ttft}`,
  );
  assert.ok(Math.abs(overhead.itl - plain.itl) < 1e-12);
  // prompt tokens' attention at 16x: a longer prefill, the same decode steps
  const attention = run({ prefillAttentionCostFactor: 16 });
  assert.ok(attention.ttft > plain.ttft, `${plain.ttft} → ${attention.ttft}`);
  assert.ok(Math.abs(attention.itl - plain.itl) < 1e-12);
});
