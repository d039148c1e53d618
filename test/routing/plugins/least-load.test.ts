// The least-load plugin (src/routing/plugins/least-load): the `load` scorer ranks engines by the prompts
// waiting on them first, and `kv-free` scores free KV cache, both in [0, 1].
import { test } from "node:test";
import assert from "node:assert/strict";
import { decide, kvFreeScorer, loadScorer, type EngineView } from "../../../src/routing/index.js";
import { leastLoadPolicy } from "../../../src/routing/plugins/least-load/policy.js";
import { eng } from "../../helpers/routing.js";

const scores = (engines: EngineView[], scorer = loadScorer): number[] => {
  const out = new Float64Array(engines.length);
  scorer.score({ model: "m", seq: 0 }, engines, out, { engines, now: 1000 });
  return [...out];
};

test("the load scorer puts the engine with fewer prompts awaiting a first token above the busier one", () => {
  const [a, b] = scores([
    eng("a", { awaitingFirstToken: 3, inFlight: 3 }),
    eng("b", { awaitingFirstToken: 0, inFlight: 1 }),
  ]);
  assert.ok(b! > a!, `b ${b} above a ${a}`);
  for (const s of [a!, b!]) assert.ok(s >= 0 && s <= 1);
});

test("the kv-free scorer scores an engine by the share of its KV cache that is free", () => {
  const [a, b] = scores([eng("a", { kvUsage: 0.25 }), eng("b", { kvUsage: 1.5 })], kvFreeScorer);
  assert.deepEqual([a, b], [0.75, 0]);
});

test("the least-load policy sends a request to the engine with fewer prompts awaiting a first token", () => {
  const engines = [eng("busy", { inFlight: 3, awaitingFirstToken: 3 }), eng("idle")];
  for (let seq = 0; seq < 4; seq++) {
    const d = decide(leastLoadPolicy("least-load"), { model: "m", seq }, { engines });
    assert.equal(d.kind === "picked" && d.engine.id, "idle");
  }
});
