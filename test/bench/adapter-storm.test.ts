// The adapter-storm benchmark run briefly: it starts, prints its three runs, and its counts hold —
// bob's refusals are 429s with Retry-After and the router starts no more loads for him than his budget
// allows. Alice's share of her streams is a timing, left to the benchmark's own full run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const BENCH = fileURLToPath(new URL("../../bench/tenancy/adapter-storm.js", import.meta.url));

test("tenancy/adapter-storm, briefly: bob's loads stay within his budget and his refusals carry Retry-After", async () => {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(
      process.execPath,
      [BENCH, "--duration", "2", "--time-scale", "0.5"],
      {
        // a hang guard, not a timing
        timeout: 180_000,
        env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" },
      },
    ));
  } catch (err) {
    // exit 1 is a missed target; only the timing one may be missed here
    stdout = (err as { stdout?: string }).stdout ?? "";
    if (!/^MISS alice/m.test(stdout)) throw err;
  }
  for (const run of ["alone", "beside storm", "unmetered"])
    assert.match(stdout, new RegExp(`^${run} +alice streams`, "m"));
  assert.match(stdout, /^PASS bob's refusals carry Retry-After/m);
  assert.match(stdout, /^PASS loads for bob: \d+ \(target <= 8\)/m);
  // without a budget the same storm loads far more
  const unmetered = /^unmetered .*loads for bob (\d+)/m.exec(stdout);
  assert.ok(unmetered && Number(unmetered[1]) > 8, stdout);
});
