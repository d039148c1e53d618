// The not-excluded filter drops the engines a request was tried on already.
import { test } from "node:test";
import assert from "node:assert/strict";
import { notExcluded } from "../../../src/routing/plugins/filter-not-excluded/filter.js";
import { eng } from "../../helpers/routing.js";

test("the not-excluded filter drops the engines in the request's exclude set", () => {
  const engines = [eng("a"), eng("b"), eng("c")];
  const kept = notExcluded({ model: "m", seq: 0, exclude: new Set(["b"]) }, engines, { engines });
  assert.deepEqual(
    kept.map((e) => e.id),
    ["a", "c"],
  );
});

test("the not-excluded filter hands back its input for a request that excludes nothing", () => {
  const engines = [eng("a")];
  assert.equal(notExcluded({ model: "m", seq: 0 }, engines, { engines }), engines);
  assert.equal(notExcluded({ model: "m", seq: 0, exclude: new Set() }, engines, { engines }), engines);
});
