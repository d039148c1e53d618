// Metric definitions checked against a hand-computed fixture, and the SSE parser against every
// way a stream can be cut into network chunks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { summarize, parseSlo, meetsSlo } from "../../src/workload/metrics.js";
import type { RequestRecord } from "../../src/workload/record.js";
import { SseParser } from "../../src/protocol/sse.js";
import { percentile, std } from "../../src/workload/stats.js";

function rec(p: Partial<RequestRecord>): RequestRecord {
  return {
    index: 0,
    sessionId: "s",
    round: 0,
    start: 0,
    ok: true,
    ttft: NaN,
    itl: [],
    e2el: NaN,
    promptTokens: 10,
    outputTokens: 0,
    usageReported: true,
    httpStatus: 200,
    errorKind: null,
    error: "",
    ...p,
  };
}

// Chunk arrival times (ms after send):
//   A: 100, 110, 130, 160 (4 tokens)   → TTFT 100, ITL 10 20 30, E2EL 160, TPOT (160−100)/3 = 20
//   B: 200, 250 (2 tokens)             → TTFT 200, ITL 50, E2EL 250, TPOT 50
//   C: 50 (1 token)                    → TTFT 50, no ITL, E2EL 50, no TPOT (counts as 0 for goodput)
//   D: failed (HTTP 500)
const fixture: RequestRecord[] = [
  rec({ index: 0, ttft: 100, itl: [10, 20, 30], e2el: 160, outputTokens: 4 }),
  rec({ index: 1, ttft: 200, itl: [50], e2el: 250, outputTokens: 2 }),
  rec({ index: 2, ttft: 50, itl: [], e2el: 50, outputTokens: 1 }),
  rec({ index: 3, ok: false, errorKind: "http_5xx", error: "HTTP 500", outputTokens: 0 }),
];

const close = (a: unknown, b: number, what: string) =>
  assert.ok(typeof a === "number" && Math.abs(a - b) < 1e-9, `${what}: got ${String(a)}, want ${b}`);

test("vllm bench definitions on a hand-computed fixture", () => {
  const f = summarize(fixture, 2, parseSlo("ttft:150,tpot:30"), [90, 99]);
  assert.equal(f.completed, 3);
  assert.equal(f.failed, 1);
  assert.deepEqual(f.errors_by_kind, { http_5xx: 1 });
  assert.equal(f.total_input_tokens, 30);
  assert.equal(f.total_output_tokens, 7);
  close(f.request_throughput, 1.5, "request_throughput");
  close(f.output_throughput, 3.5, "output_throughput");
  close(f.total_token_throughput, 18.5, "total_token_throughput");
  // A (TTFT 100, TPOT 20) and C (TTFT 50, TPOT 0) meet ttft ≤ 150 and tpot ≤ 30; B's TTFT is 200.
  close(f.request_goodput, 1.0, "request_goodput");
  close(f.mean_ttft_ms, 350 / 3, "mean_ttft_ms");
  close(f.median_ttft_ms, 100, "median_ttft_ms");
  close(
    f.std_ttft_ms,
    Math.sqrt(((100 - 350 / 3) ** 2 + (200 - 350 / 3) ** 2 + (50 - 350 / 3) ** 2) / 3),
    "std",
  );
  close(f.p99_ttft_ms, 198, "p99_ttft_ms"); // rank 0.99·2 = 1.98 between 100 and 200
  close(f.mean_tpot_ms, 35, "mean_tpot_ms");
  close(f.p90_tpot_ms, 47, "p90_tpot_ms"); // 20 + 0.9·30
  close(f.mean_itl_ms, 27.5, "mean_itl_ms"); // pooled 10 20 30 50
  close(f.median_itl_ms, 25, "median_itl_ms");
  close(f.p99_itl_ms, 49.4, "p99_itl_ms"); // rank 2.97: 30 + 0.97·20
  close(f.mean_e2el_ms, 460 / 3, "mean_e2el_ms");
  close(f.duration, 2, "duration");
});

test("goodput without an SLO is null and an empty run reports zeros, as vllm does", () => {
  const f = summarize([], 1, null);
  assert.equal(f.request_goodput, null);
  assert.equal(f.mean_ttft_ms, 0);
  assert.equal(f.completed, 0);
});

test("SLO parsing and per-request checks", () => {
  assert.deepEqual(parseSlo("ttft:500 tpot:50,e2el:3000"), { ttft: 500, tpot: 50, e2el: 3000 });
  assert.throws(() => parseSlo("ttft=5"), /cannot read/);
  assert.equal(meetsSlo(fixture[0]!, { e2el: 159 }), false);
  assert.equal(meetsSlo(fixture[0]!, { e2el: 160 }), true);
  assert.equal(meetsSlo(fixture[3]!, {}), false);
});

test("stats follow numpy: population std, linear percentiles", () => {
  assert.equal(percentile([1, 2, 3, 4], 50), 2.5);
  assert.equal(percentile([5], 99), 5);
  assert.ok(Math.abs(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) - 9.55) < 1e-12);
  assert.equal(std([2, 4, 4, 4, 5, 5, 7, 9]), 2);
});

test("SSE parser yields the same events however the stream is split", () => {
  const stream = Buffer.from(
    'data: {"a":1}\n\n: comment\n\ndata: {"b":"é ü"}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n',
    "utf8",
  );
  const want = ['{"a":1}', '{"b":"é ü"}', "line1\nline2", "[DONE]"];
  for (let cut = 0; cut <= stream.length; cut++) {
    for (const step of [1, 3, 7]) {
      const got: string[] = [];
      const p = new SseParser();
      p.push(stream.subarray(0, cut), (d) => got.push(d));
      for (let i = cut; i < stream.length; i += step)
        p.push(stream.subarray(i, i + step), (d) => got.push(d));
      p.end((d) => got.push(d));
      assert.deepEqual(got, want, `cut at ${cut}, step ${step}`);
    }
  }
});

test("SSE parser flushes a last event that lacks its blank line", () => {
  const got: string[] = [];
  const p = new SseParser();
  p.push(Buffer.from("data: x\n\ndata: y"), (d) => got.push(d));
  p.end((d) => got.push(d));
  assert.deepEqual(got, ["x", "y"]);
});
