// The highest-score picker: the highest summed score wins; exact ties go round-robin's way.
import { test } from "node:test";
import assert from "node:assert/strict";
import { maxScorePicker } from "../../../src/routing/plugins/pick-max-score/picker.js";
import { eng } from "../../helpers/routing.js";

const engines = [eng("a"), eng("b"), eng("c")];
const fleet = { engines };

test("the highest-score picker takes the highest score whatever the request's seq", () => {
  for (let seq = 0; seq < 3; seq++)
    assert.equal(maxScorePicker({ model: "m", seq }, engines, Float64Array.of(1, 3, 2), fleet)?.id, "b");
});

test("the highest-score picker gives a tie to the engine round-robin would pick, or the next tied one", () => {
  const tied = Float64Array.of(2, 1, 2);
  const picks = [0, 1, 2].map((seq) => maxScorePicker({ model: "m", seq }, engines, tied, fleet)?.id);
  assert.deepEqual(picks, ["a", "c", "c"]);
});

test("the highest-score picker picks nothing from no engines", () => {
  assert.equal(maxScorePicker({ model: "m", seq: 0 }, [], new Float64Array(0), { engines: [] }), undefined);
});
