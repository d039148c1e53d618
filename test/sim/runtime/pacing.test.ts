// The sim hands a step's outputs to the HTTP handlers as vLLM's API server emits them: one delivery per
// engine step, when it completes; steps the driver completes back to back (sub-millisecond steps,
// catch-up after a stall) are merged into the next delivery instead of being written microseconds
// apart, where the client would read them as one and record zero inter-token latencies. The bound is
// a lower one, so a busy machine can only widen the gaps, never break it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimRuntime, type RequestSink } from "../../../src/sim/runtime/runtime.js";
import type { FinishReason } from "../../../src/engine/types.js";
import { config, request, tokens } from "../../engine/helpers.js";

interface Seen {
  deliveries: { at: number; n: number }[];
  finished: Promise<FinishReason>;
}

function sinkFor(): { sink: RequestSink; seen: Seen } {
  let done!: (r: FinishReason) => void;
  const seen: Seen = { deliveries: [], finished: new Promise((r) => (done = r)) };
  let tokensSoFar = 0;
  const sink: RequestSink = {
    onTokens: (ids) => {
      tokensSoFar += ids.length;
      seen.deliveries.push({ at: performance.now(), n: ids.length });
    },
    onFinished: (reason) => {
      assert.ok(tokensSoFar > 0, "the finish comes after the tokens");
      done(reason);
    },
  };
  return { sink, seen };
}

test("steps far shorter than a timer tick reach a request at most once a millisecond, every token kept", async () => {
  // a small model 50x faster than an H100: each decode step is a few microseconds of wall time
  const rt = new SimRuntime(config({}, "Qwen/Qwen2.5-0.5B-Instruct"), 0.02);
  try {
    const runs = [0, 1, 2].map((i) => {
      const { sink, seen } = sinkFor();
      rt.submit(
        request(`r${i}`, tokens(64, i), { maxTokens: 200, arrivalTime: performance.now() / 1000 }),
        sink,
        200,
      );
      return seen;
    });
    for (const seen of runs) {
      assert.equal(await seen.finished, "length");
      const total = seen.deliveries.reduce((a, d) => a + d.n, 0);
      assert.equal(total, 200, "no token lost or repeated");
      assert.ok(seen.deliveries.length < 200, `${seen.deliveries.length} deliveries: steps were merged`);
      for (let i = 1; i < seen.deliveries.length; i++) {
        const gap = seen.deliveries[i]!.at - seen.deliveries[i - 1]!.at;
        assert.ok(gap >= 0.99, `deliveries ${i - 1} and ${i} were ${gap.toFixed(3)} ms apart`);
      }
    }
  } finally {
    rt.stop();
  }
});
