// The whole answer's logprob JSON is spliced into the body at placeholders (job.ts): what is spliced
// must be exactly the body with each placeholder replaced, and a placeholder the body does not hold
// must leave the body whole rather than cut and repeat it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spliceRaw } from "../../../src/sim/openai/raw-json.js";

const join = (g: Iterable<string>) => [...g].join("");

test("each placeholder in the body is replaced by its JSON pieces, in body order", () => {
  const a = JSON.stringify("\u0000t:0\u0000");
  const b = JSON.stringify("\u0000t:1\u0000");
  const body = JSON.stringify({ x: "\u0000t:1\u0000", y: 1, z: "\u0000t:0\u0000" });
  const raw = new Map<string, Iterable<string>>([
    [a, ['{"content":', "[]}"]],
    [b, ["null"]],
  ]);
  assert.equal(join(spliceRaw(body, raw)), '{"x":null,"y":1,"z":{"content":[]}}');
});

test("a placeholder the body does not hold is skipped, and the body comes out whole", () => {
  const body = JSON.stringify({ choices: [{ logprobs: null }], usage: { total_tokens: 3 } });
  const raw = new Map<string, Iterable<string>>([[JSON.stringify("\u0000t:0\u0000"), ["[1,2,3]"]]]);
  const out = join(spliceRaw(body, raw));
  assert.equal(out, body);
  assert.deepEqual(JSON.parse(out), JSON.parse(body));
});
