// `gie-lora-affinity`: the Gateway API Inference Extension's first scheduler, LoRA soft affinity
// between its low-queue, least-queueing and least-KV stages.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decide } from "../../../src/routing/policy/decide.js";
import { createGieLoraAffinityPolicy } from "../../../src/routing/plugins/gie-lora-affinity/policy.js";
import { loraEngine, loraReq, loraView } from "../../helpers/lora-views.js";

test("GIE's LoRA affinity keeps engines running or queueing the adapter, else those with room under max_lora", () => {
  const policy = createGieLoraAffinityPolicy();
  const fleet = {
    engines: [
      loraEngine("has", loraView({ running: new Set(["a1"]) }), { waiting: 3 }),
      loraEngine("room", loraView()),
      loraEngine("full", loraView({ running: new Set(["x", "y"]) })),
    ],
    now: 0,
  };
  const picks = new Map<string, number>();
  for (let seq = 0; seq < 200; seq++) {
    const d = decide(policy, loraReq("a1", seq), fleet);
    assert.equal(d.kind, "picked");
    if (d.kind === "picked") picks.set(d.engine.id, (picks.get(d.engine.id) ?? 0) + 1);
  }
  assert.equal(picks.get("full"), undefined);
  assert.ok((picks.get("has") ?? 0) >= 199, `affinity wins with probability 0.999: ${[...picks]}`);
  // a new adapter goes where running + waiting adapters are under max_lora
  for (let seq = 0; seq < 50; seq++) {
    const d = decide(policy, loraReq("b2", seq), fleet);
    assert.ok(d.kind === "picked" && d.engine.id !== "full");
  }
});

test("GIE's tree runs least queueing first when every queue is over its threshold", () => {
  const policy = createGieLoraAffinityPolicy();
  const fleet = {
    engines: [
      loraEngine("has", loraView({ running: new Set(["a1"]) }), { waiting: 400 }),
      loraEngine("short", loraView(), { waiting: 130 }),
    ],
    now: 0,
  };
  const d = decide(policy, loraReq("a1"), fleet);
  assert.equal(d.kind === "picked" && d.engine.id, "short");
});
