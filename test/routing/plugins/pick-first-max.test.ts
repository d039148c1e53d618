// vllm-router's first-max picker: the highest score wins, and a tie goes to the first engine listed
// whatever the request's seq (vllm-router's list order, not round-robin's rotation).
import { test } from "node:test";
import assert from "node:assert/strict";
import { firstMaxPicker } from "../../../src/routing/plugins/pick-first-max/picker.js";
import { eng } from "../../helpers/routing.js";

const engines = [eng("a"), eng("b"), eng("c")];
const fleet = { engines };

test("the first-max picker takes the highest score", () => {
  const picked = firstMaxPicker({ model: "m", seq: 0 }, engines, Float64Array.of(1, 3, 2), fleet);
  assert.equal(picked?.id, "b");
});

test("the first-max picker gives a tie to the first engine listed, whatever the request's seq", () => {
  for (let seq = 0; seq < 6; seq++) {
    const picked = firstMaxPicker({ model: "m", seq }, engines, Float64Array.of(0, 2, 2), fleet);
    assert.equal(picked?.id, "b");
  }
});

test("the first-max picker picks nothing from no engines", () => {
  assert.equal(firstMaxPicker({ model: "m", seq: 0 }, [], new Float64Array(0), { engines: [] }), undefined);
});
