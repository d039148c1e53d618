// autoscale/trace on a short window, in virtual time: ours holds the SLO in every minute of a quarter
// hour of the Azure conversation trace with no request lost, and keeps no engine it does not bill.
import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { burstGptDay, burstTrace, runPolicy, SETUP_DEFAULTS } from "../../bench/support/autoscale-trace.js";

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

// rows in the column layout BurstGPT's README documents (Timestamp in seconds from the trace's start,
// Model, Request tokens, Response tokens, Total tokens, Log Type); the values are made up
const BURSTGPT_ROWS = [
  "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type",
  "5,ChatGPT,472,18,490,Conversation log",
  "86399,ChatGPT,100,10,110,Conversation log",
  "86400,ChatGPT,1087,230,1317,Conversation log",
  "86460,GPT-4,417,0,417,Conversation log",
  "86520,GPT-4,300,20,320,API log",
  "90000,ChatGPT,800,120,920,Conversation log",
  "172800,ChatGPT,50,5,55,Conversation log",
].join("\n");

test("a BurstGPT day keeps that day's answered rows of the asked log type, at their own instants", async () => {
  const dir = mkdtempSync(join(tmpdir(), "burstgpt-"));
  const path = join(dir, "BurstGPT_1.csv");
  writeFileSync(path, BURSTGPT_ROWS + "\n");
  const base = { day: 1, hours: 24, startHour: 0, peakRatePerS: 100, seed: 1 };
  const day = await burstGptDay(path, { ...base, logType: "Conversation log" });
  // the failed row (no response tokens) and the API row are left out; day 0's and day 2's rows too
  assert.deepEqual(
    day.map((e) => [e.timestampMs, e.inputLength, e.outputLength]),
    [
      [0, 1087, 230],
      [3_600_000, 800, 120],
    ],
  );
  const all = await burstGptDay(path, { ...base, logType: "all" });
  assert.equal(all.length, 3);
  // thinned so the busiest ten minutes ask for the peak rate: two rows there, half that rate asked
  const thin = await burstGptDay(path, { ...base, logType: "all", peakRatePerS: 1 / 600 });
  assert.ok(thin.length < all.length);
  writeFileSync(path, "TIMESTAMP,ContextTokens,GeneratedTokens\n");
  await assert.rejects(burstGptDay(path, { ...base, logType: "all" }), /not a BurstGPT CSV/);
});
