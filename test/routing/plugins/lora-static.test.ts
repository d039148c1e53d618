// `lora-static`: each adapter pinned to its engines by rendezvous hashing, the least busy picked.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decide } from "../../../src/routing/policy/decide.js";
import { createStaticLoraPolicy } from "../../../src/routing/plugins/lora-static/policy.js";
import { loraEngine, loraReq, loraView } from "../../helpers/lora-views.js";

test("static placement keeps each adapter on its two engines", () => {
  const policy = createStaticLoraPolicy(2);
  const fleet = { engines: ["e1", "e2", "e3", "e4"].map((id) => loraEngine(id, loraView())), now: 0 };
  for (const name of ["a1", "a2", "a3"]) {
    const seen = new Set<string>();
    for (let seq = 0; seq < 40; seq++) {
      const d = decide(policy, loraReq(name, seq), fleet);
      if (d.kind === "picked") seen.add(d.engine.id);
    }
    assert.equal(seen.size, 2, `${name} on ${[...seen]}`);
  }
});
