// The standard chain: serves the model → healthy → not excluded → under its cap; which stage empties
// the set is the decision's answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decide } from "../../../src/routing/policy/decide.js";
import { standardFilters } from "../../../src/routing/plugins/standard-filters/filters.js";
import { roundRobinPicker } from "../../../src/routing/plugins/round-robin/picker.js";
import { eng } from "../../helpers/routing.js";

const policy = { name: "chain", filters: standardFilters, scorers: [], picker: roundRobinPicker };

test("the standard chain answers unknown-model, unavailable or saturated by the stage that emptied it", () => {
  const req = { model: "m", seq: 0 };
  assert.equal(decide(policy, { model: "nope", seq: 0 }, { engines: [eng("a")] }).kind, "unknown-model");
  assert.equal(decide(policy, req, { engines: [eng("a", { healthy: false })] }).kind, "unavailable");
  const tried = { model: "m", seq: 0, exclude: new Set(["a"]) };
  assert.equal(decide(policy, tried, { engines: [eng("a")] }).kind, "unavailable");
  const full = eng("a", { maxInFlight: 1, inFlight: 1 });
  assert.equal(decide(policy, req, { engines: [full] }).kind, "saturated");
  assert.equal(decide(policy, req, { engines: [eng("a")] }).kind, "picked");
});
