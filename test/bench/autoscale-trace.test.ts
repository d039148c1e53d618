// autoscale/trace on a short window, in virtual time: ours holds the SLO in every minute of a quarter
// hour of the Azure conversation trace with no request lost, and keeps no engine it does not bill.
import assert from "node:assert/strict";
import { test } from "node:test";
import { burstTrace, runPolicy, SETUP_DEFAULTS } from "../../bench/support/autoscale-trace.js";

test("a short window of the burst trace: ours answers every request and reports the bench's fields", () => {
  const setup = { ...SETUP_DEFAULTS, timeScale: 80 };
  const entries = burstTrace(15, 0.05, 1);
  assert.ok(entries.length > 20);
  const r = runPolicy("burst", entries, { kind: "slo" }, setup, 2);
  assert.equal(r.lost, 0);
  assert.equal(r.sent_to_leaving, 0);
  assert.equal(r.policy, "slo");
  assert.equal(r.baseline, false);
  assert.ok(r.gpu_hours > 0 && r.windows > 0);
  assert.ok(r.attainment >= 0.8, `attainment ${r.attainment}`);
  const keda = runPolicy("burst", entries, { kind: "keda-waiting", threshold: 8 }, setup, 2);
  assert.equal(keda.policy, "keda-waiting");
  assert.equal(keda.baseline, true);
  assert.equal(keda.lost, 0);
});
