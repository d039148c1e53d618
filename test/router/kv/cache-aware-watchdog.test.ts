// The silent-miss watchdog's arithmetic on a fake clock: predictions only count once the engine's hit
// counter has a baseline (a fresh router must not cry wolf), agreement within tolerance stays quiet,
// a mismatch beyond it is reported once it has lasted, restarts (counter drops) and the window's end are
// handled.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HitWatchdog } from "../../../src/router/kv/watchdog.js";

test("watchdog: baseline first, then predicted vs reported over the window", () => {
  let now = 1_000_000;
  const w = new HitWatchdog(
    { windowMs: 60_000, buckets: 6, tolerance: 0.2, minTokens: 1000, sustainMs: 0 },
    () => now,
  );
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

test("watchdog: a difference that later traffic dilutes within the sustain time raises nothing; one that lasts does", () => {
  let now = 1_000_000;
  const w = new HitWatchdog(
    { windowMs: 300_000, buckets: 10, tolerance: 0.2, minTokens: 1000, sustainMs: 45_000 },
    () => now,
  );
  w.reported("e", 0); // baseline
  // the first check of a healthy router: prompts sent together with a new prefix hit at the engine
  // though predicted cold (as measured live: predicted 0, reported 7,168)
  w.reported("e", 7_168);
  let v = w.verdict("e");
  assert.equal(v.judged, true);
  assert.ok(v.error > 0.2);
  assert.equal(v.mismatch, false);
  // the next check, 15 s on: the following rounds were predicted as they hit, the error is diluted
  now += 15_000;
  w.predicted("e", 60_000);
  w.reported("e", 7_168 + 60_000);
  v = w.verdict("e");
  assert.ok(v.error < 0.2, `error ${v.error}`);
  assert.equal(v.mismatch, false);
  // the router's hashes never match the engine's: nothing predicted, hits reported at every check
  const mismatch: boolean[] = [];
  let counter = 7_168 + 60_000;
  for (let i = 0; i < 8; i++) {
    now += 15_000;
    counter += 40_000;
    w.reported("e", counter);
    mismatch.push(w.verdict("e").mismatch);
  }
  // beyond tolerance from the first of these checks on; raised once that has lasted 45 s, at the fourth
  assert.deepEqual(mismatch, [false, false, false, true, true, true, true, true]);
  assert.equal(w.verdict("e").mismatch, true); // asking again at the same time changes nothing
  // one check within tolerance clears it
  now += 15_000;
  w.predicted("e", 2_000_000);
  w.reported("e", counter + 2_000_000);
  assert.equal(w.verdict("e").mismatch, false);
});
