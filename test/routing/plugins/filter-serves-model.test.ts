// The serves-model filter keeps the engines serving the request's model; a registry adapter's request
// may also go to an engine serving its base model.
import { test } from "node:test";
import assert from "node:assert/strict";
import { servesModel } from "../../../src/routing/plugins/filter-serves-model/filter.js";
import { eng } from "../../helpers/routing.js";

const ids = (engines: readonly { id: string }[]) => engines.map((e) => e.id);

test("the serves-model filter keeps only the engines serving the request's model", () => {
  const engines = [eng("a"), eng("b", { models: new Set(["other"]) }), eng("c")];
  assert.deepEqual(ids(servesModel({ model: "m", seq: 0 }, engines, { engines })), ["a", "c"]);
});

test("the serves-model filter lets a registry adapter's request through to engines serving its base model", () => {
  const engines = [eng("a"), eng("b", { models: new Set(["other"]) })];
  const req = { model: "adapter", seq: 0, lora: { name: "adapter", path: "/a", base: "m", bytes: 1 } };
  assert.deepEqual(ids(servesModel(req, engines, { engines })), ["a"]);
});

test("the serves-model filter hands back its input when every engine passes", () => {
  const engines = [eng("a"), eng("b")];
  assert.equal(servesModel({ model: "m", seq: 0 }, engines, { engines }), engines);
});
