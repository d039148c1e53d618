// The healthy filter keeps engines that are healthy and carry weight.
import { test } from "node:test";
import assert from "node:assert/strict";
import { healthyOnly } from "../../../src/routing/plugins/filter-healthy/filter.js";
import { eng } from "../../helpers/routing.js";

test("the healthy filter drops an unhealthy engine and one of weight 0", () => {
  const engines = [eng("a"), eng("sick", { healthy: false }), eng("drained", { weight: 0 }), eng("b")];
  const kept = healthyOnly({ model: "m", seq: 0 }, engines, { engines });
  assert.deepEqual(
    kept.map((e) => e.id),
    ["a", "b"],
  );
});
