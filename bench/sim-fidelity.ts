// The bench against `switchyard sim` (a separate process, fixed seed), single requests one at a time, so
// every step's duration follows from src/engine's step-time model: the client's TTFT and TPOT and the
// sim's own TTFT histogram are printed beside the modelled prefill and decode steps (stretched by
// --time-scale), and held to a tolerance: 10% of the modelled time plus 4 ms (loopback HTTP, the SSE
// write per token, timers about a millisecond late), the client's TTFT at most 150 ms above the model
// (the sim's HTTP parsing and tokenization ahead of the engine). Wall-clock agreement is what a busy
// machine breaks, so it is measured here, not asserted in npm test: test/bench/sim.test.ts holds the
// same run to lower bounds (nothing faster than the model) and shares `modelledTimes` below.
// Exits 1 outside the tolerance.
//   node dist/bench/sim-fidelity.js [--rounds 3]
import { pathToFileURL } from "node:url";
import { StepTimer } from "../src/engine/index.js";
import { buildEngineConfig } from "../src/sim/app.js";
import { parseSimArgs } from "../src/sim/config/config.js";
import { runBench, type BenchOptions } from "../src/bench/run.js";
import type { RequestRecord } from "../src/workload/record.js";
import { percentile } from "../src/workload/stats.js";
import { freePort, spawnCli, waitForHttp } from "./harness/cli.js";
import { decodeStepSeconds, prefillStepSeconds } from "./harness/model.js";

export const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
export const SCALE = 4;
const REL = 0.1;
const ABS_MS = 4;
const FRONT_END_MS = 150;

/** `switchyard sim` arguments for the run (after the subcommand). */
export function simArgs(port: number): string[] {
  return [MODEL, "--port", String(port), "--host", "127.0.0.1", "--time-scale", String(SCALE), "--seed", "7"];
}

export function benchOptions(baseUrl: string, over: Partial<BenchOptions> = {}): BenchOptions {
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

/**
 * Each request's measured TTFT and TPOT (ms) beside the model's for its prompt and output lengths: one
 * prefill step over the whole prompt (it fits the token budget), which samples token 1, then decode
 * step i reading the KV of the prompt and the i tokens produced so far. Medians over the requests.
 */
export function modelledTimes(args: string[], records: readonly RequestRecord[]) {
  const timer = new StepTimer(buildEngineConfig(parseSimArgs(args, {})));
  const ttfts: number[] = [];
  const tpots: number[] = [];
  const modelTtfts: number[] = [];
  const modelTpots: number[] = [];
  for (const r of records) {
    const p = r.promptTokens;
    const prefill = prefillStepSeconds(timer, p);
    let decode = 0;
    for (let i = 1; i < r.outputTokens; i++) decode += decodeStepSeconds(timer, p + i);
    modelTtfts.push(prefill * SCALE * 1000);
    modelTpots.push((decode / (r.outputTokens - 1)) * SCALE * 1000);
    ttfts.push(r.ttft);
    tpots.push((r.e2el - r.ttft) / (r.outputTokens - 1));
  }
  // medians: one request caught by a stall of a shared host does not decide
  return {
    ttft: percentile(ttfts, 50),
    tpot: percentile(tpots, 50),
    wantTtft: percentile(modelTtfts, 50),
    wantTpot: percentile(modelTpots, 50),
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const rounds = Number(argv.includes("--rounds") ? argv[argv.indexOf("--rounds") + 1] : 3);
  let failed = false;
  console.log("round | TTFT model / engine / client (ms) | TPOT model / client (ms) | within tolerance");
  for (let round = 1; round <= rounds; round++) {
    const port = await freePort();
    const args = simArgs(port);
    const sim = spawnCli(["sim", ...args]);
    try {
      await waitForHttp(`http://127.0.0.1:${port}/health`, 60_000, 200, sim);
      const [run] = await runBench(benchOptions(`http://127.0.0.1:${port}`, { numRequests: 6, warmup: 2 }), {
        warn: () => {},
      });
      const m = modelledTimes(args, run!.records);
      const engineTtft = run!.result.server?.mean_ttft_ms ?? NaN;
      const ok =
        Math.abs(m.tpot - m.wantTpot) <= m.wantTpot * REL + ABS_MS &&
        Math.abs(engineTtft - m.wantTtft) <= m.wantTtft * REL + ABS_MS &&
        m.ttft >= m.wantTtft * (1 - REL) &&
        m.ttft <= m.wantTtft + FRONT_END_MS;
      if (!ok) failed = true;
      console.log(
        `${round} | ${m.wantTtft.toFixed(1)} / ${engineTtft.toFixed(1)} / ${m.ttft.toFixed(1)} | ` +
          `${m.wantTpot.toFixed(2)} / ${m.tpot.toFixed(2)} | ${ok ? "yes" : "NO"}`,
      );
    } finally {
      await sim.stop();
    }
  }
  process.exit(failed ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
