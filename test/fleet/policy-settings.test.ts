// The fleet simulator routes as a router configured with nothing but the scenario's settings would:
// both build the policy's options with one function (src/routing/config.ts policyOptions), and the
// settings the fleet starts from are those a router's config holds when it says nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig, policySettingsOf } from "../../src/router/config/config.js";
import { defaultPolicySettings, policyOptions } from "../../src/routing/index.js";

test("the fleet's default policy settings are those of a router whose config sets none", () => {
  assert.deepEqual(defaultPolicySettings(), policySettingsOf(parseConfig({})));
});

test("policy options carry every configured factor: session spill, cost constants, miss weight, SLOs, late binding, scorers", () => {
  const cfg = parseConfig({
    session: { loadFactor: 2 },
    routing: { cost: { runWeight: 0.3 } },
    predictive: { missWeight: 0.5, queuedPrompts: 3 },
    slo: { ttftMs: 900 },
    scorers: [{ name: "kv-free", weight: 2 }],
  });
  const timing = () => undefined;
  const o = policyOptions(policySettingsOf(cfg), { timing });
  assert.equal(o.sessionLoadFactor, 2);
  assert.equal(o.cacheAware?.runWeight, 0.3);
  assert.equal(o.predictive?.missWeight, 0.5);
  assert.equal(o.predictive?.slo?.defaultTtftMs, 900);
  assert.equal(o.predictive?.lateBinding?.queuedPrompts, 3);
  assert.equal(o.predictive?.timing, timing);
  assert.deepEqual(o.scorers, [{ name: "kv-free", weight: 2 }]);
});
