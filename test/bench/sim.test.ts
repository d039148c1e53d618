// The bench against `switchyard sim` (a separate process, fixed seed): single requests one at a
// time, so every step's duration follows from src/engine's step-time model. A busy machine can only
// make the sim and the client slower, never faster, so TTFT and TPOT are held to LOWER bounds from the
// modelled prefill and decode steps (stretched by --time-scale), for the client and for the sim's own
// /metrics histogram. Their agreement with the model within a tolerance is a wall-clock claim, measured
// by `npm run bench -- sim/fidelity` (bench/support/sim-fidelity.ts, which this test shares its run and model with).
import { test } from "node:test";
import assert from "node:assert/strict";
import { runBench } from "../../src/bench/run.js";
import { freePort, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { benchOptions, modelledTimes, simArgs } from "../../bench/support/sim-fidelity.js";

/** what the model allows below it: timers that fire up to ~1 ms early, per-request rounding */
const REL = 0.1;

test("TTFT and TPOT against the sim are never below the engine model's step times", async (t) => {
  const port = await freePort();
  const args = simArgs(port);
  const sim = spawnCli(["sim", ...args]);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/health`, 30_000);
    // Two warmup requests (other prompts, so no prefix hits) take the sim's first-request JIT cost.
    const [run] = await runBench(benchOptions(`http://127.0.0.1:${port}`, { numRequests: 6, warmup: 2 }), {
      warn: () => {},
    });
    const { records, result } = run!;
    assert.equal(result.completed, 6, JSON.stringify(result.errors));
    assert.equal(
      result.config.calibration && (result.config.calibration as { source: string }).source,
      "tokenize",
    );
    for (const r of records) {
      const p = r.promptTokens;
      assert.ok(Math.abs(p - 1024) <= 1024 * 0.05, `prompt of ${p} tokens, wanted about 1024`);
      assert.equal(r.outputTokens, 24);
    }
    const { ttft, tpot, wantTtft, wantTpot } = modelledTimes(args, records);
    // The engine's own histogram (vllm:time_to_first_token_seconds) starts when the request reaches
    // the engine, after the sim's HTTP parsing and tokenization; the client's TTFT adds that front end.
    const server = result.server!;
    t.diagnostic(
      `model TTFT ${wantTtft.toFixed(1)} ms, engine ${server.mean_ttft_ms?.toFixed(1)} ms, client ${ttft.toFixed(1)} ms; ` +
        `model TPOT ${wantTpot.toFixed(2)} ms, client ${tpot.toFixed(2)} ms`,
    );
    assert.ok(server.mean_ttft_ms !== null, "the sim exposes vllm:time_to_first_token_seconds");
    assert.ok(
      server.mean_ttft_ms >= wantTtft * (1 - REL),
      `engine mean TTFT ${server.mean_ttft_ms.toFixed(2)} ms, model ${wantTtft.toFixed(2)} ms`,
    );
    assert.ok(
      ttft >= wantTtft * (1 - REL),
      `client TTFT ${ttft.toFixed(2)} ms, model ${wantTtft.toFixed(2)} ms`,
    );
    assert.ok(tpot >= wantTpot * (1 - REL), `TPOT ${tpot.toFixed(2)} ms, model ${wantTpot.toFixed(2)} ms`);
  } finally {
    await sim.stop();
  }
});
