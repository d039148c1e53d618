// The round-robin picker: the request's seq round the candidates; with unequal weights, each engine's
// share of the requests is its share of the weight.
import { test } from "node:test";
import assert from "node:assert/strict";
import { roundRobinPicker } from "../../../src/routing/plugins/round-robin/picker.js";
import { roundRobinPolicy } from "../../../src/routing/plugins/round-robin/policy.js";
import { createPolicy } from "../../../src/routing/policies.js";
import { eng } from "../../helpers/routing.js";

const none = new Float64Array(0);

test("the round-robin picker takes the candidates in turn by the request's seq", () => {
  const engines = [eng("a"), eng("b"), eng("c")];
  const picks = [0, 1, 2, 3].map(
    (seq) => roundRobinPicker({ model: "m", seq }, engines, none, { engines })?.id,
  );
  assert.deepEqual(picks, ["a", "b", "c", "a"]);
});

test("the round-robin picker gives an engine of weight 3 three times the requests of one of weight 1", () => {
  const engines = [eng("heavy", { weight: 3 }), eng("light", { weight: 1 })];
  let heavy = 0;
  for (let seq = 0; seq < 400; seq++)
    if (roundRobinPicker({ model: "m", seq }, engines, none, { engines })?.id === "heavy") heavy++;
  assert.ok(Math.abs(heavy - 300) <= 2, `heavy got ${heavy} of 400`);
});

test("the round-robin policy has no scorers, so none can be added to it", () => {
  const policy = roundRobinPolicy("round-robin");
  assert.equal(policy.picker, roundRobinPicker);
  assert.deepEqual(policy.scorers, []);
  assert.throws(
    () => createPolicy("round-robin", { scorers: [{ name: "load", weight: 1 }] }),
    /does not pick by score/,
  );
});
