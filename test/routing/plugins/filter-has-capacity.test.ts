// The has-capacity filter keeps engines under their in-flight cap (plus the request's headroom), and is
// the stage that waits for room.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hasCapacity } from "../../../src/routing/plugins/filter-has-capacity/filter.js";
import { eng } from "../../helpers/routing.js";

const ids = (engines: readonly { id: string }[]) => engines.map((e) => e.id);

test("the has-capacity filter drops an engine at its in-flight cap; a cap of 0 is no cap", () => {
  const engines = [
    eng("full", { maxInFlight: 4, inFlight: 4 }),
    eng("room", { maxInFlight: 4, inFlight: 3 }),
    eng("uncapped", { maxInFlight: 0, inFlight: 100 }),
  ];
  assert.deepEqual(ids(hasCapacity({ model: "m", seq: 0 }, engines, { engines })), ["room", "uncapped"]);
});

test("the has-capacity filter lets a request with headroom past the cap by that much", () => {
  const engines = [eng("full", { maxInFlight: 4, inFlight: 4 })];
  assert.deepEqual(ids(hasCapacity({ model: "m", seq: 0, headroom: 1 }, engines, { engines })), ["full"]);
});

test("the has-capacity filter is the stage that waits for room", () => {
  assert.equal(hasCapacity.waitsForRoom, true);
});
