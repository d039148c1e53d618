// The live routing benchmark and the fleet simulator read one table of shapes; these tests pin how a
// shape becomes `switchyard bench` flags, so a new shape's lengths reach the client and the older
// shapes keep the prompts their recorded figures were measured with.
import { test } from "node:test";
import assert from "node:assert/strict";
import { benchArgs, shapeOf } from "../../bench/support/routing-vs-peers-shapes.js";

const flag = (args: string[], name: string) => args[args.indexOf(name) + 1];

test("the multi-tenant shape sends llm-d's prompt lengths: 18 tenants x 12 prompts of 4,500 + 1,500 tokens", () => {
  const args = benchArgs(shapeOf("multi-tenant"));
  assert.equal(flag(args, "--num-groups"), "18");
  assert.equal(flag(args, "--prompts-per-group"), "12");
  assert.equal(flag(args, "--system-prompt-len"), "4500");
  assert.equal(flag(args, "--question-len"), "1500");
  assert.equal(flag(args, "--qps"), "3");
});

test("the KV-pressure shapes keep 6 prompts of a 3,000-token prefix and a 600-token question", () => {
  for (const name of ["kv-pressure", "kv-pressure-light", "kv-half"]) {
    const args = benchArgs(shapeOf(name));
    assert.equal(flag(args, "--prompts-per-group"), "6", name);
    assert.equal(flag(args, "--system-prompt-len"), "3000", name);
    assert.equal(flag(args, "--question-len"), "600", name);
    assert.equal(flag(args, "--output-len"), "64", name);
  }
});
