// The bench against `switchyard sim` (a separate process, fixed seed): single requests one at a
// time, so every step's duration follows from src/engine's step-time model. TTFT must match the
// modelled prefill step and TPOT the modelled decode steps, both stretched by --time-scale, within
// a stated tolerance; the sim's own /metrics histogram must agree with the client's TTFT too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { StepTimer } from "../../src/engine/index.js";
import { buildEngineConfig } from "../../src/sim/app.js";
import { parseSimArgs } from "../../src/sim/config.js";
import { runBench, type BenchOptions } from "../../src/bench/run.js";
import { percentile } from "../../src/workload/stats.js";
import { freePort, spawnCli, waitForHttp } from "../helpers/cli.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const SCALE = 4;
/**
 * Tolerance: 10% of the modelled time plus 4 ms. The client adds loopback HTTP and the SSE write
 * per token (well under a millisecond), the sim's real-time driver fires steps by timers (about a
 * millisecond late each), and a loaded host adds scheduling delay.
 */
const REL = 0.1;
const ABS_MS = 4;
/** the sim's HTTP parsing and tokenization ahead of the engine, on a loaded 2-core host */
const FRONT_END_MS = 150;

function benchOptions(baseUrl: string, over: Partial<BenchOptions> = {}): BenchOptions {
  return {
    baseUrl,
    model: null,
    endpoint: "auto",
    apiKey: null,
    headers: {},
    extraBody: { temperature: 0, ignore_eos: true },
    workload: "random",
    workloadFlags: { inputLen: 1024, outputLen: 24 },
    qps: [Infinity],
    arrival: "poisson",
    concurrency: 1,
    numRequests: 4,
    durationS: null,
    warmup: 0,
    seed: 42,
    slo: null,
    percentiles: [99],
    scrape: [],
    connections: null,
    timeoutMs: 60_000,
    calibrate: true,
    progress: false,
    ...over,
  };
}

test("TTFT and TPOT against the sim agree with the engine model's step times", async (t) => {
  const port = await freePort();
  const args = [
    MODEL,
    "--port",
    String(port),
    "--host",
    "127.0.0.1",
    "--time-scale",
    String(SCALE),
    "--seed",
    "7",
  ];
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
    const timer = new StepTimer(buildEngineConfig(parseSimArgs(args, {})));
    const ttfts: number[] = [];
    const tpots: number[] = [];
    const modelTtfts: number[] = [];
    const modelTpots: number[] = [];
    for (const r of records) {
      const p = r.promptTokens;
      assert.ok(Math.abs(p - 1024) <= 1024 * 0.05, `prompt of ${p} tokens, wanted about 1024`);
      assert.equal(r.outputTokens, 24);
      // Prefill: one step over the whole prompt (it fits the token budget), which samples token 1.
      const prefill = timer.time({
        prefillTokens: p,
        decodeSeqs: 0,
        attentionContext: (p * (p + 1)) / 2,
        kvReadTokens: 0,
        loadBytesPerGpu: 0,
      }).duration;
      // Decode step i reads the KV of the prompt and the i tokens produced so far.
      let decode = 0;
      for (let i = 1; i < r.outputTokens; i++) {
        const ctx = p + i;
        decode += timer.time({
          prefillTokens: 0,
          decodeSeqs: 1,
          attentionContext: ctx,
          kvReadTokens: ctx - 1,
          loadBytesPerGpu: 0,
        }).duration;
      }
      modelTtfts.push(prefill * SCALE * 1000);
      modelTpots.push((decode / (r.outputTokens - 1)) * SCALE * 1000);
      ttfts.push(r.ttft);
      tpots.push((r.e2el - r.ttft) / (r.outputTokens - 1));
    }
    // Medians over the requests: one request caught by a stall of this shared host does not decide.
    const wantTtft = percentile(modelTtfts, 50);
    const wantTpot = percentile(modelTpots, 50);
    const tpot = percentile(tpots, 50);
    const ttft = percentile(ttfts, 50);
    assert.ok(
      Math.abs(tpot - wantTpot) <= wantTpot * REL + ABS_MS,
      `TPOT ${tpot.toFixed(2)} ms, model ${wantTpot.toFixed(2)} ms`,
    );
    // The engine's own histogram (vllm:time_to_first_token_seconds) starts when the request reaches
    // the engine, after the sim's HTTP parsing and tokenization; it must match the model.
    const server = result.server!;
    t.diagnostic(
      `model TTFT ${wantTtft.toFixed(1)} ms, engine ${server.mean_ttft_ms?.toFixed(1)} ms, client ${ttft.toFixed(1)} ms; ` +
        `model TPOT ${wantTpot.toFixed(2)} ms, client ${tpot.toFixed(2)} ms`,
    );
    assert.ok(server.mean_ttft_ms !== null, "the sim exposes vllm:time_to_first_token_seconds");
    assert.ok(
      Math.abs(server.mean_ttft_ms - wantTtft) <= wantTtft * REL + ABS_MS,
      `engine mean TTFT ${server.mean_ttft_ms.toFixed(2)} ms, model ${wantTtft.toFixed(2)} ms`,
    );
    // The client's TTFT adds that front end (tokenizing 1024 tokens in JS, loopback HTTP): never
    // below the model, and above it by at most FRONT_END_MS.
    assert.ok(
      ttft >= wantTtft * (1 - REL) && ttft <= wantTtft + FRONT_END_MS,
      `client TTFT ${ttft.toFixed(2)} ms, model ${wantTtft.toFixed(2)} ms`,
    );
  } finally {
    await sim.stop();
  }
});
