// The decode-batch plugin (src/routing/plugins/decode-batch): the least busy engine scores 1, the busiest
// 0, and the weight is the one the config gives it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createScorer, decodeBatchScorer } from "../../../src/routing/index.js";
import { eng } from "../../helpers/routing.js";

test("decode-batch scores the engine with the fewest requests on it 1 and the busiest 0", () => {
  const engines = [eng("a", { inFlight: 4 }), eng("b", { inFlight: 0 }), eng("c", { inFlight: 2 })];
  const out = new Float64Array(engines.length);
  decodeBatchScorer(1).score({ model: "m", seq: 0 }, engines, out, { engines, now: 0 });
  assert.deepEqual([...out], [0, 1, 0.5]);
});

test("decode-batch comes from the registry by name at the weight asked for", () => {
  const scorer = createScorer("decode-batch", 0.3);
  assert.equal(scorer.name, "decode-batch");
  assert.equal(scorer.weight, 0.3);
});
