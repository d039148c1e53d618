// The routing library's cache-aware policies in virtual time: `prefix` on the rendered prompt text
// (the router's own PrefixOracle), `kv`/`hybrid` on what each engine's GPU cache holds (the KV-event
// index's view). With more tenants than one engine's cache holds they keep prefixes where they are
// cached; round-robin spreads every tenant over every engine and thrashes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runScenario } from "../../src/fleet/run.js";
import { resolveScenario } from "../../src/fleet/scenario.js";
import { Engine } from "../../src/engine/engine.js";
import { config, request, tokens } from "../engine/helpers.js";
import { VirtualDriver } from "../../src/engine/drivers.js";

function scen(policy: string) {
  return resolveScenario({
    workload: {
      prompt_tokens: 2300,
      output_tokens: 16,
      concurrency: 12,
      shared_prefix_tokens: 2048,
      prefix_reuse: "multi-tenant",
      tenants: 8,
    },
    // 4 engines of 420 blocks (6,720 tokens): three 2k prefixes each, eight tenants in all
    fleet: {
      model: "meta-llama/Llama-3.1-8B-Instruct",
      gpu: "h100",
      engines: 4,
      max_model_len: 4096,
      num_gpu_blocks_override: 420,
    },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: { requests: 160, seed: 2, policy },
  });
}

test("cache-aware policies keep tenants on the engines that cache them", () => {
  const hit = (p: string) => runScenario(scen(p), "none").hit_rates.gpu;
  const rr = hit("round-robin");
  const prefix = hit("prefix");
  const kv = hit("kv");
  const hybrid = hit("hybrid");
  assert.ok(prefix > rr + 0.1, `prefix ${prefix} vs round-robin ${rr}`);
  assert.ok(kv > rr + 0.1, `kv ${kv} vs round-robin ${rr}`);
  assert.equal(hybrid, kv, "hybrid = kv when every engine's events flow");
});

test("probeCachedTokens predicts the hit admission then finds", () => {
  const sys = tokens(300, 1);
  const mk = () => new Engine(config({ numGpuBlocksOverride: 64 }), { onTokens() {}, onFinished() {} });
  const e = mk();
  const d = new VirtualDriver();
  d.attach(e);
  e.add(request("a", sys.concat(tokens(40, 2)), { maxTokens: 2 }));
  d.wake(e);
  d.run();
  const next = sys.concat(tokens(40, 3));
  const hint = { sharedPrefix: { key: "s", tokens: sys.length } };
  const probed = e.probeCachedTokens(next);
  assert.equal(probed, Math.floor(300 / 16) * 16);
  assert.equal(e.probeCachedTokens(next, hint), probed);
  // admission happens in wake(): count the hits it adds
  const before = e.snapshot().counters.prefixCacheHits;
  e.add(request("b", next, { maxTokens: 1 }));
  d.wake(e);
  d.run();
  const cached = e.snapshot().counters.prefixCacheHits - before;
  assert.equal(cached, probed);
  assert.equal(e.probeCachedTokens(tokens(340, 9)), 0);
});
