// The silent-miss watchdog's arithmetic on a fake clock: predictions only count once the engine's hit
// counter has a baseline (a fresh router must not cry wolf), agreement within tolerance stays quiet,
// a mismatch beyond it is reported, restarts (counter drops) and the window's end are handled.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HitWatchdog } from "../../src/router/kv/watchdog.js";

test("watchdog: baseline first, then predicted vs reported over the window", () => {
  let now = 1_000_000;
  const w = new HitWatchdog({ windowMs: 60_000, buckets: 6, tolerance: 0.2, minTokens: 1000 }, () => now);
  // routed before the first scrape: the engine's counter cannot be compared yet
  w.predicted("e", 50_000);
  w.reported("e", 123_456); // baseline
  assert.equal(w.verdict("e").mismatch, false);
  assert.equal(w.verdict("e").predicted, 0);

  // agreement within 20%
  w.predicted("e", 10_000);
  now += 5_000;
  w.reported("e", 123_456 + 9_000);
  let v = w.verdict("e");
  assert.equal(v.judged, true);
  assert.equal(v.mismatch, false);
  assert.ok(Math.abs(v.error - 0.1) < 1e-9);

  // the engine reports no hits for what the router predicted: silent miss
  w.predicted("e", 30_000);
  now += 5_000;
  w.reported("e", 123_456 + 9_000);
  v = w.verdict("e");
  assert.equal(v.mismatch, true, `error ${v.error}`);

  // an engine restart resets its counter: the new value is the delta, not a negative one
  w.reported("e", 500);
  assert.equal(w.verdict("e").reported, 9_500);

  // after a whole window without traffic nothing is left to judge
  now += 61_000;
  v = w.verdict("e");
  assert.equal(v.predicted, 0);
  assert.equal(v.judged, false);
  assert.equal(v.mismatch, false);
});
