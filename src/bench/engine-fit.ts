// Fitting the engine model's timing to a measured engine: the requests of one or more bench runs
// (prompt and output lengths, send times) are replayed on one engine of the engine model in virtual
// time, and the two figures the roofline step time rests on (src/engine/timing.ts) are scaled until the
// replay's mean TTFT and mean TPOT match the measured ones:
// - the GPU's effective dense FLOP/s: the prefill per-token term (compute-bound prompt steps);
// - its effective memory bandwidth: the decode per-step term (a decode step reads the weights and the
//   batch's KV) and the per-token KV reads.
// - the fixed cost of a step (scheduling, input prep, sampling: STEP_OVERHEAD_S unless the profile has
//   its own), the per-step term no figure of the GPU explains.
// The all-reduce terms stay the model's. The fit minimises the squared log errors of every run's mean
// TTFT and mean TPOT (the engine's own histogram means where the run scraped them, else the client's):
// one common factor for both figures first (2^-16..2^8), a grid over the two around it, then a
// pattern search over the two and the step overhead. The result is a GPU profile (`gpus:` of a
// profiles YAML) that `switchyard sim`, `simulate` and `plan` take with `--profiles`.
import { defaultEngineConfig, Engine, STEP_OVERHEAD_S, VirtualDriver } from "../engine/index.js";
import type { GpuProfile, ModelProfile } from "../models/index.js";

/** what one run offers the fit: its requests and its measured means */
export interface FitRun {
  /** prompt tokens, output tokens and send time (s from the run's start) per request */
  inputLens: number[];
  outputLens: number[];
  startTimes: number[];
  /** measured means, ms */
  ttftMs: number;
  tpotMs: number;
  /** where the means come from: "engine" (its /metrics histograms) or "client" */
  source: "engine" | "client";
}

export interface FitResult {
  gpu: GpuProfile;
  /** the fitted figures over the base profile's */
  flopsFactor: number;
  bandwidthFactor: number;
  /** the fitted fixed cost of a step, seconds */
  stepOverheadS: number;
  /** per run: measured and predicted means, and the relative errors */
  runs: {
    ttftMs: number;
    tpotMs: number;
    predTtftMs: number;
    predTpotMs: number;
    ttftErr: number;
    tpotErr: number;
  }[];
  /** the largest relative error of any mean */
  maxError: number;
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** mean TPOT of a request: (E2E − TTFT) / (output − 1), as vllm bench computes it */
function meanTpot(ttfts: number[], e2els: number[], outs: number[]): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < ttfts.length; i++) {
    if (!(outs[i]! > 1)) continue;
    s += (e2els[i]! - ttfts[i]!) / (outs[i]! - 1);
    n++;
  }
  return n ? (s / n) * 1000 : NaN;
}

/**
 * The runs of a saved `switchyard bench` result (one run, or `{sweep: [...]}`): its per-request arrays,
 * and its engine-side means where the run scraped the engine's metrics. `timeScale`: a sim's
 * --time-scale, undone (its modelled durations ran that many times faster).
 */
export function runsFromBench(body: unknown, timeScale = 1): FitRun[] {
  const list = Array.isArray((body as { sweep?: unknown })?.sweep)
    ? ((body as { sweep: unknown[] }).sweep as Record<string, unknown>[])
    : Array.isArray(body)
      ? (body as Record<string, unknown>[])
      : [body as Record<string, unknown>];
  const out: FitRun[] = [];
  for (const r of list) {
    const arr = (k: string) => (Array.isArray(r?.[k]) ? (r[k] as number[]) : []);
    const ins = arr("input_lens");
    const outs = arr("output_lens");
    const starts = arr("start_times");
    const ttfts = arr("ttfts");
    const e2els = arr("e2els");
    if (ins.length === 0 || ins.length !== outs.length || ins.length !== starts.length)
      throw new Error("a bench result needs input_lens, output_lens and start_times of one length");
    const server = (r.server ?? null) as Record<string, unknown> | null;
    const engTtft = num(server?.mean_ttft_ms);
    const engItl = num(server?.mean_itl_ms);
    const t0 = Math.min(...starts);
    const ok = ttfts.map((t, i) => t > 0 && outs[i]! > 0);
    const sel = <T>(a: T[]) => a.filter((_, i) => ok[i]);
    const clientTtft = (sel(ttfts).reduce((a, b) => a + b, 0) / Math.max(1, sel(ttfts).length)) * 1000;
    const clientTpot = meanTpot(sel(ttfts), sel(e2els), sel(outs));
    const engine = engTtft !== null && engItl !== null;
    out.push({
      inputLens: sel(ins),
      outputLens: sel(outs),
      startTimes: sel(starts).map((s) => (s - t0) / timeScale),
      ttftMs: (engine ? engTtft : clientTtft) / timeScale,
      tpotMs: (engine ? engItl : clientTpot) / timeScale,
      source: engine ? "engine" : "client",
    });
  }
  return out;
}

/** the run replayed on one engine of `gpu`: its mean TTFT and mean TPOT, ms */
export function replay(
  run: FitRun,
  model: ModelProfile,
  gpu: GpuProfile,
  tp: number,
): { ttftMs: number; tpotMs: number } {
  const cfg = defaultEngineConfig(model, gpu, { tensorParallelSize: tp, blockHashAlgo: "fast" });
  const driver = new VirtualDriver();
  const first = new Map<string, number>();
  let ttft = 0;
  let tpot = 0;
  let n = 0;
  let nt = 0;
  const engine: Engine = new Engine(cfg, {
    onTokens: (id, _ids, time) => {
      if (!first.has(id)) first.set(id, time);
    },
    onFinished: (id, _reason, t) => {
      ttft += t.firstTokenTime - t.arrivalTime;
      n++;
      if (t.outputTokens > 1) {
        tpot += (t.finishedTime - t.firstTokenTime) / (t.outputTokens - 1);
        nt++;
      }
      first.delete(id);
    },
  });
  driver.attach(engine);
  for (let i = 0; i < run.inputLens.length; i++) {
    const len = Math.max(1, Math.min(run.inputLens[i]!, cfg.maxModelLen - 2));
    const outN = Math.max(1, Math.min(run.outputLens[i]!, cfg.maxModelLen - len));
    driver.at(run.startTimes[i]!, () => {
      engine.add({
        requestId: `c${i}`,
        // distinct ids per request: no prefix is shared unless the run shared one (none is assumed)
        promptTokenIds: Array.from({ length: len }, (_, k) => 1000 + ((i * 7919 + k) % 50000)),
        maxTokens: outN,
        stopAfter: outN,
        ignoreEos: true,
        minTokens: 0,
        priority: 0,
        cacheSalt: null,
        loraName: null,
        arrivalTime: driver.now,
        sampleToken: (k) => 1000 + k,
      });
      driver.wake(engine);
    });
  }
  driver.run();
  return { ttftMs: (ttft / Math.max(1, n)) * 1000, tpotMs: (tpot / Math.max(1, nt)) * 1000 };
}

const scaled = (g: GpuProfile, f: number, b: number, overhead?: number): GpuProfile => ({
  ...g,
  bf16Flops: g.bf16Flops * f,
  hbmBandwidth: g.hbmBandwidth * b,
  ...(overhead !== undefined ? { stepOverheadS: overhead } : {}),
});

/** fits the base GPU's FLOP/s and bandwidth to the runs (module comment) */
export function fitEngine(
  runs: readonly FitRun[],
  model: ModelProfile,
  base: GpuProfile,
  o: { tp?: number; id?: string } = {},
): FitResult {
  if (runs.length === 0) throw new Error("nothing to fit: no runs");
  const tp = o.tp ?? 1;
  const o0 = Math.log(base.stepOverheadS ?? STEP_OVERHEAD_S);
  const cost = (lf: number, lb: number, lo: number): number => {
    let s = 0;
    for (const r of runs) {
      const p = replay(r, model, scaled(base, Math.exp(lf), Math.exp(lb), Math.exp(lo)), tp);
      s += Math.log(p.ttftMs / r.ttftMs) ** 2 + Math.log(p.tpotMs / r.tpotMs) ** 2;
    }
    return s;
  };
  // one factor for both over 2^-16..2^8 (a CPU engine is a thousand times slower than a GPU profile),
  // a grid of 1/16..16 of each figure around it, then a pattern search from its best point over the
  // two figures and the step overhead
  let common = { l: 0, c: Infinity };
  for (let k = -16; k <= 8; k++) {
    const c = cost(k * Math.LN2, k * Math.LN2, o0);
    if (c < common.c) common = { l: k * Math.LN2, c };
  }
  let best = { lf: common.l, lb: common.l, lo: o0, c: common.c };
  for (let i = -4; i <= 4; i++)
    for (let j = -4; j <= 4; j++) {
      const lf = common.l + i * Math.LN2;
      const lb = common.l + j * Math.LN2;
      const c = cost(lf, lb, o0);
      if (c < best.c) best = { lf, lb, lo: o0, c };
    }
  let step = Math.LN2 / 2;
  while (step > 0.004) {
    let moved = false;
    for (const [df, db, dl] of [
      [step, 0, 0],
      [-step, 0, 0],
      [0, step, 0],
      [0, -step, 0],
      [0, 0, step],
      [0, 0, -step],
    ] as const) {
      const c = cost(best.lf + df, best.lb + db, best.lo + dl);
      if (c < best.c) {
        best = { lf: best.lf + df, lb: best.lb + db, lo: best.lo + dl, c };
        moved = true;
      }
    }
    if (!moved) step /= 2;
  }
  const f = Math.exp(best.lf);
  const b = Math.exp(best.lb);
  const overhead = Math.exp(best.lo);
  const gpu: GpuProfile = {
    ...scaled(base, f, b, overhead),
    id: o.id ?? `${base.id}-calibrated`,
    name: `${base.name}, calibrated`,
    source: `fitted by switchyard calibrate to ${runs.length} run${runs.length === 1 ? "" : "s"} (${runs.map((r) => r.source).join(", ")} means) of ${model.id} at TP ${tp}: ${base.id}'s dense FLOP/s × ${f.toFixed(3)}, HBM bandwidth × ${b.toFixed(3)}, step overhead ${(overhead * 1000).toFixed(2)} ms`,
  };
  const rows = runs.map((r) => {
    const p = replay(r, model, gpu, tp);
    return {
      ttftMs: r.ttftMs,
      tpotMs: r.tpotMs,
      predTtftMs: p.ttftMs,
      predTpotMs: p.tpotMs,
      ttftErr: p.ttftMs / r.ttftMs - 1,
      tpotErr: p.tpotMs / r.tpotMs - 1,
    };
  });
  const maxError = Math.max(...rows.flatMap((x) => [Math.abs(x.ttftErr), Math.abs(x.tpotErr)]));
  return { gpu, flopsFactor: f, bandwidthFactor: b, stepOverheadS: overhead, runs: rows, maxError };
}

/**
 * the fitted GPU as a profiles YAML body (`gpus:`), as src/models' loadProfilesFile reads it; with the
 * model too (`models:`) where it has no catalogue entry (a Hugging Face folder), so that a scenario can
 * name both
 */
export function profileDocument(gpu: GpuProfile, model?: ModelProfile): Record<string, unknown> {
  return model ? { gpus: [gpu], models: [model] } : { gpus: [gpu] };
}
