// The engine model's LoRA: slots and host cache (LRU each), load time from the adapter's size, the
// max_loras-per-batch rule of vLLM's scheduler and the addon's step cost, all in virtual time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../../src/engine/engine.js";
import {
  kvCapacity,
  loraAdapterBytes,
  LORA_DISK_BPS,
  LORA_LOAD_OVERHEAD_S,
  StepTimer,
} from "../../src/engine/index.js";
import type { EngineLora, LoraConfig } from "../../src/engine/types.js";
import { resolveModel } from "../../src/models/profiles.js";
import { config, makeEngine, request, runToIdle, tokens, Recorder } from "./helpers.js";

const LORA: LoraConfig = { maxLoras: 2, maxCpuLoras: 3, maxLoraRank: 16 };
const MB = 1e6;

function adapter(name: string, bytes = 10 * MB): EngineLora {
  return { name, path: `/adapters/${name}`, bytes };
}

function loraRequest(id: string, a: EngineLora | null, salt: number, maxTokens = 4) {
  return request(id, tokens(64, salt), { maxTokens, loraName: a?.name ?? null, lora: a });
}

test("an adapter's size is rank × layers × the projections' in + out dimensions × dtype", () => {
  const llama = resolveModel("meta-llama/Llama-3.1-8B-Instruct");
  // q_proj 4096 → 4096 and v_proj 4096 → 1024 (8 KV heads of 128), rank 8, 32 layers, bf16
  assert.equal(loraAdapterBytes(llama, 8, ["q_proj", "v_proj"]), 8 * 32 * (4096 + 4096 + 4096 + 1024) * 2);
  assert.equal(loraAdapterBytes(llama, 16, ["q_proj"]), 2 * loraAdapterBytes(llama, 8, ["q_proj"]));
});

test("the engine never runs more than max_loras distinct adapters in one batch, and the others wait", () => {
  const { engine } = makeEngine({ lora: LORA });
  const [a, b, c] = [adapter("a"), adapter("b"), adapter("c")];
  engine.add(loraRequest("ra", a, 1, 20));
  engine.add(loraRequest("rb", b, 2, 20));
  engine.add(loraRequest("rc", c, 3, 20));
  // a base-model request behind the one passed over is still admitted: vLLM skips, it does not stop
  engine.add(loraRequest("base", null, 4, 20));
  const plan = engine.beginStep(0)!;
  assert.equal(plan.prefillTokens, 3 * 64);
  const st = engine.loraState()!;
  assert.deepEqual(st.running.sort(), ["a", "b"]);
  assert.deepEqual(st.waiting, ["c"]);
  assert.deepEqual(st.gpu.sort(), ["a", "b"]);
  assert.equal(engine.snapshot().counters.loraBatchSkips, 1);
  engine.completeStep(plan.duration);
  let maxDistinct = 0;
  // step the rest by hand, checking every batch
  for (let now = plan.duration; engine.hasWork();) {
    const p = engine.beginStep(now);
    if (!p) break;
    maxDistinct = Math.max(maxDistinct, engine.loraState()!.running.length);
    now += p.duration;
    engine.completeStep(now);
  }
  assert.ok(maxDistinct <= 2, `at most 2 adapters ran at once, saw ${maxDistinct}`);
  assert.equal(engine.loraState()!.waiting.length, 0);
});

test("a request on an adapter in the batch is admitted past the limit; one on a new adapter waits", () => {
  const { engine } = makeEngine({ lora: LORA });
  const [a, b, c] = [adapter("a"), adapter("b"), adapter("c")];
  engine.add(loraRequest("ra", a, 1));
  engine.add(loraRequest("rb", b, 2));
  engine.add(loraRequest("rc", c, 3));
  engine.add(loraRequest("ra2", a, 4));
  engine.beginStep(0);
  const st = engine.loraState()!;
  assert.deepEqual(st.waiting, ["c"]);
  assert.equal(engine.snapshot().numRunning, 3);
});

test("a cold adapter's first step carries its read from disk and its copy to a slot; a warm one none", () => {
  const cfg = config({ lora: LORA });
  const a = adapter("a", 20 * MB);
  const link = cfg.gpu.hostLinkBandwidth;
  const cold = new Engine(cfg, new Recorder());
  cold.add(loraRequest("r1", a, 1));
  const d1 = cold.beginStep(0)!.duration;
  cold.completeStep(d1);
  const expected = LORA_LOAD_OVERHEAD_S + a.bytes / LORA_DISK_BPS + a.bytes / link;
  // same prompt length, different tokens, adapter now resident: no load
  const warm = new Engine(cfg, new Recorder());
  warm.loadLora(a, 0);
  warm.add(loraRequest("r1", a, 1));
  const start = 10; // long after the load API's load has finished
  const d2 = warm.beginStep(start)!.duration;
  assert.ok(Math.abs(d1 - d2 - expected) < 1e-9, `cold ${d1} warm ${d2} expected ${expected}`);
  const c = cold.snapshot().counters;
  assert.equal(c.loraDiskLoads, 1);
  assert.equal(c.loraGpuLoads, 1);
  assert.ok(Math.abs(c.loraLoadSeconds - expected) < 1e-12);
});

test("slots and host cache are each LRU: a host-cached adapter skips the disk, an evicted one reads it again", () => {
  const cfg = config({ lora: { maxLoras: 1, maxCpuLoras: 2, maxLoraRank: 16 } });
  const e = new Engine(cfg, new Recorder());
  const [a, b, c] = [adapter("a"), adapter("b"), adapter("c")];
  const disk = LORA_LOAD_OVERHEAD_S + a.bytes / LORA_DISK_BPS;
  const slot = a.bytes / cfg.gpu.hostLinkBandwidth;
  assert.ok(Math.abs(e.loraColdSeconds(a) - (disk + slot)) < 1e-12);
  e.loadLora(a, 0);
  e.loadLora(b, 0); // a leaves the slot, stays in host memory
  assert.equal(e.loraColdSeconds(b), 0);
  assert.ok(Math.abs(e.loraColdSeconds(a) - slot) < 1e-12);
  e.loadLora(c, 0); // the host cache holds 2: a, the oldest, is dropped
  const st = e.loraState()!;
  assert.deepEqual(st.gpu, ["c"]);
  assert.deepEqual(st.cpu, ["b", "c"]);
  const k = e.snapshot().counters;
  assert.equal(k.loraDiskLoads, 3);
  assert.equal(k.loraCpuEvictions, 1);
  assert.equal(k.loraGpuEvictions, 2);
  assert.ok(Math.abs(e.loraColdSeconds(a) - (disk + slot)) < 1e-12);
  assert.equal(e.unloadLora("c"), true);
  assert.deepEqual(e.loraState()!.cpu, ["b"]);
});

test("a step that begins while the load API's load runs waits for it", () => {
  const cfg = config({ lora: LORA });
  const e = new Engine(cfg, new Recorder());
  const a = adapter("a");
  const s = e.loadLora(a, 0);
  e.add(loraRequest("base", null, 1));
  const busy = e.beginStep(0)!.duration;
  e.completeStep(busy);
  const idle = new Engine(cfg, new Recorder());
  idle.add(loraRequest("base", null, 1));
  const d = idle.beginStep(0)!.duration;
  assert.ok(Math.abs(busy - d - s) < 1e-12);
});

test("on a scaled clock the load API's load holds steps for its modelled seconds times the scale", () => {
  // the sim at --time-scale 4 passes wall seconds: a load of s modelled seconds spans 4s of them
  const cfg = config({ lora: LORA });
  const e = new Engine(cfg, new Recorder(), { clockScale: 4 });
  const s = e.loadLora(adapter("a"), 0);
  e.add(loraRequest("base", null, 1));
  // half the load's wall window has passed: the step waits the other half, in modelled seconds
  const busy = e.beginStep(2 * s)!.duration;
  const idle = new Engine(cfg, new Recorder(), { clockScale: 4 });
  idle.add(loraRequest("base", null, 1));
  const d = idle.beginStep(0)!.duration;
  assert.ok(Math.abs(busy - d - s / 2) < 1e-12, `busy ${busy} idle ${d} load ${s}`);
});

test("each distinct adapter in a batch adds its addon segment and weight reads to the step", () => {
  const cfg = config({ lora: LORA });
  const t = new StepTimer(cfg);
  const base = {
    prefillTokens: 0,
    decodeSeqs: 8,
    attentionContext: 8000,
    kvReadTokens: 8000,
    loadBytesPerGpu: 0,
  };
  const none = t.time(base).duration;
  const one = t.time({ ...base, loraAdapters: 1, loraWeightBytes: 10 * MB }).duration;
  const two = t.time({ ...base, loraAdapters: 2, loraWeightBytes: 20 * MB }).duration;
  assert.ok(one > none && two > one);
  assert.ok(two - one < one - none, "the per-layer launch cost is paid once, the segment per adapter");
});

test("LoRA slots take their buffers from the KV cache, and max_cpu_loras below max_loras is refused", () => {
  const plain = kvCapacity(config()).numGpuBlocks;
  const withLora = kvCapacity(
    config({ lora: { maxLoras: 8, maxCpuLoras: 8, maxLoraRank: 64 } }),
  ).numGpuBlocks;
  assert.ok(withLora < plain);
  assert.throws(() => config({ lora: { maxLoras: 4, maxCpuLoras: 2, maxLoraRank: 8 } }), /max_cpu_loras/);
});

test("an engine with LoRA runs every request to completion under adapter churn", () => {
  const { engine, rec, driver } = makeEngine({ lora: { maxLoras: 2, maxCpuLoras: 4, maxLoraRank: 16 } });
  for (let i = 0; i < 40; i++) engine.add(loraRequest(`r${i}`, adapter(`a${i % 7}`), i, 6));
  runToIdle(engine, driver);
  assert.equal(rec.finished.size, 40);
  for (const f of rec.finished.values()) assert.equal(f.reason, "length");
  const k = engine.snapshot().counters;
  assert.ok(k.loraGpuLoads >= 7 && k.loraDiskLoads >= 7);
});
