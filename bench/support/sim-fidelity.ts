// What the sim-fidelity benchmark (bench/sim/fidelity.ts) and test/bench/sim.test.ts share. The run is
// against `switchyard sim` (a separate process, fixed seed), single requests one at a time, so every
// step's duration follows from src/engine's step-time model: the client's TTFT and TPOT and the sim's
// own TTFT histogram beside the modelled prefill and decode steps (stretched by --time-scale), held to
// a tolerance: 10% of the modelled time plus 4 ms (loopback HTTP, the SSE write per token, timers about
// a millisecond late), the client's TTFT at most 150 ms above the model (the sim's HTTP parsing and
// tokenization ahead of the engine). Wall-clock agreement is what a busy machine breaks, so the
// benchmark measures it and npm test does not assert it: the test holds the same run to lower bounds
// (nothing faster than the model) with `modelledTimes` below.
import { StepTimer } from "../../src/engine/index.js";
import { buildEngineConfig } from "../../src/sim/app.js";
import { parseSimArgs } from "../../src/sim/config/config.js";
import type { BenchOptions } from "../../src/bench/run.js";
import type { RequestRecord } from "../../src/workload/record.js";
import { percentile } from "../../src/workload/stats.js";
import { decodeStepSeconds, prefillStepSeconds } from "./model.js";

export const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
export const SCALE = 4;
export const REL = 0.1;
export const ABS_MS = 4;
export const FRONT_END_MS = 150;

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
