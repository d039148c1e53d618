// The project's one percentile: numpy's linear interpolation, checked against figures numpy prints,
// with its one answer for no values, and the bench's vllm-compatible 0 where no request succeeded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { median, percentile, percentileSorted } from "../../src/workload/stats.js";
import { summarize } from "../../src/workload/metrics.js";

test("a percentile interpolates between the closest ranks as numpy.percentile does", () => {
  // np.percentile([15, 20, 35, 40, 50], [0, 10, 40, 90, 100]) -> [15, 17, 29, 46, 50]
  const xs = [40, 15, 50, 35, 20];
  assert.deepEqual(
    [0, 10, 40, 90, 100].map((p) => Number(percentile(xs, p).toFixed(9))),
    [15, 17, 29, 46, 50],
  );
  // np.percentile(range(1, 11), 99) -> 9.91
  assert.ok(Math.abs(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99) - 9.91) < 1e-12);
  assert.equal(percentileSorted(Float64Array.of(1, 2, 3, 4), 50), 2.5);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([3, 1, 2]), 2);
});

test("a percentile of no values is NaN, and leaves its input in the order it was given", () => {
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.ok(Number.isNaN(percentileSorted([], 99)));
  assert.ok(Number.isNaN(median([])));
  const xs = [3, 1, 2];
  percentile(xs, 50);
  assert.deepEqual(xs, [3, 1, 2]);
});

test("the bench's latency fields are 0, as vllm bench serve writes them, when no request succeeded", () => {
  const f = summarize([], 1, null, [99]);
  assert.equal(f.median_ttft_ms, 0);
  assert.equal(f.p99_ttft_ms, 0);
});
