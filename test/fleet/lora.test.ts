// The LoRA fleet in virtual time: every request answered at a light load, the router's books never over
// max_cpu_loras, and ours concentrating adapters so that fewer steps pass a request over than round-robin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { createPolicy } from "../../src/routing/policies.js";
import { createLoraPolicy } from "../../src/routing/lora.js";
import type { LoraWorkload } from "../../src/fleet/lora.js";
import { simulateLoraFleet } from "../../src/fleet/lora-run.js";

const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
  lora: { maxLoras: 4, maxCpuLoras: 8, maxLoraRank: 16 },
});
const workload: LoraWorkload = {
  adapters: 60,
  zipf: 1,
  rank: 16,
  systemPrompts: 2,
  systemPromptTokens: 256,
  userTokens: 64,
  outputTokens: 32,
};

test("a LoRA fleet answers every request, loads cold adapters on demand and never holds more than max_cpu_loras", () => {
  const r = simulateLoraFleet({
    engines: 2,
    engine,
    workload,
    policy: createLoraPolicy(),
    rate: 8,
    durationS: 20,
    warmupS: 2,
    seed: 3,
  });
  assert.ok(r.ttfts.length > 100);
  assert.ok(r.ttfts.every((t) => Number.isFinite(t)));
  assert.ok(r.loads > 0 && r.unloads > 0);
  assert.ok(r.maxLoaded <= 8, `at most 8 loaded, saw ${r.maxLoaded}`);
});

test("ours leaves fewer requests passed over for a slot than round-robin's loading everywhere", () => {
  const run = (policy: ReturnType<typeof createPolicy>) =>
    simulateLoraFleet({ engines: 2, engine, workload, policy, rate: 14, durationS: 20, warmupS: 2, seed: 4 });
  const ours = run(createLoraPolicy());
  const rr = run(createPolicy("round-robin"));
  assert.ok(ours.batchSkips < rr.batchSkips, `ours ${ours.batchSkips} vs round-robin ${rr.batchSkips}`);
  assert.ok(ours.loads < rr.loads, `ours ${ours.loads} loads vs round-robin ${rr.loads}`);
});
