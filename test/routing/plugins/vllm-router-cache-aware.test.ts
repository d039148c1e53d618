// vllm-router's cache_aware, kept as a baseline (src/routing/plugins/vllm-router-cache-aware/), decides
// as its source describes: by match rate, in-flight counts and its balance thresholds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPolicy, decide, PrefixOracle, type Decision } from "../../../src/routing/index.js";
import { eng } from "../../helpers/routing.js";

const pickedId = (d: Decision) => (d.kind === "picked" ? d.engine.id : d.kind);
const text = (group: number, question: number) =>
  `group ${group}: ${"shared words of a long system prompt ".repeat(40)} question ${question} ${"q".repeat(100)}`;

test("vllm-router-cache-aware sends a prompt to the engine that was sent its prefix, however busier within the balance thresholds", () => {
  const policy = createPolicy("vllm-router-cache-aware", { cache: new PrefixOracle() });
  let seq = 0;
  const first = decide(
    policy,
    { model: "m", seq: seq++, prompt: text(1, 0) },
    { engines: [eng("a"), eng("b")] },
  );
  assert.equal(pickedId(first), "a"); // no match: the least loaded, the first of equals
  // a is 60 requests busier than b: within balance_abs_threshold (64), so the prefix keeps it
  const engines = [eng("a", { inFlight: 61 }), eng("b", { inFlight: 1 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: seq++, prompt: text(1, 1) }, { engines })), "a");
  // another group matches nowhere: the least loaded
  assert.equal(pickedId(decide(policy, { model: "m", seq: seq++, prompt: text(2, 0) }, { engines })), "b");
});

test("vllm-router-cache-aware goes to the least loaded engine once the fleet is imbalanced, whatever it holds", () => {
  const policy = createPolicy("vllm-router-cache-aware", { cache: new PrefixOracle() });
  decide(policy, { model: "m", seq: 0, prompt: text(1, 0) }, { engines: [eng("a"), eng("b")] });
  // 70 apart (> 64) and 71 > 1.5 × 1: imbalanced
  const engines = [eng("a", { inFlight: 71 }), eng("b", { inFlight: 1 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 1, prompt: text(1, 1) }, { engines })), "b");
  // far apart in count but not in ratio (200 vs 150): balanced, the prefix wins
  const close = [eng("a", { inFlight: 200 }), eng("b", { inFlight: 150 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 2, prompt: text(1, 2) }, { engines: close })), "a");
});

test("vllm-router-cache-aware treats a match at or below the cache threshold as no match", () => {
  const policy = createPolicy("vllm-router-cache-aware", {
    cache: new PrefixOracle(),
    vllmRouterCacheAware: { cacheThreshold: 0.9 },
  });
  decide(policy, { model: "m", seq: 0, prompt: text(1, 0) }, { engines: [eng("a"), eng("b")] });
  // same system prompt, but the long question keeps the match rate under 0.9: least loaded
  const engines = [eng("a", { inFlight: 3 }), eng("b", { inFlight: 2 })];
  const prompt = `${text(1, 1)} ${"another long question ".repeat(60)}`;
  assert.equal(pickedId(decide(policy, { model: "m", seq: 1, prompt }, { engines })), "b");
});
