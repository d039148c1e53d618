// Fitting the engine model's timing to a measured engine: the requests of one or more bench runs are
// replayed on one engine of the engine model in virtual time, and the figures its step time rests on
// (src/engine/timing.ts: FLOP/s, memory bandwidth, the fixed and per-sequence costs of a step, a
// prefill's own shape, and the API server's hand-over) are scaled until the replay's TTFT and TPOT
// match the engine's own timing (else its /metrics, else the client's). The fit minimises the squared
// log errors in stages (grids, scans, pattern searches). The result is a GPU profile that `switchyard
// sim`, `simulate` and `plan` take with `--profiles`. What is fitted and why:
// docs/planner.md#calibrating-the-engine-model.
import { defaultEngineConfig, Engine, kvCapacity, STEP_OVERHEAD_S, VirtualDriver } from "../engine/index.js";
import type { GpuProfile, ModelProfile } from "../models/index.js";
import { median } from "../workload/stats.js";
import { InputFileError, InvalidArgumentError } from "../errors/index.js";

/** what one run offers the fit: its requests and its measured means */
export interface FitRun {
  /** prompt tokens, output tokens and send time (s from the run's start) per request */
  inputLens: number[];
  outputLens: number[];
  startTimes: number[];
  /** the measured TTFT and TPOT, ms: the runs' medians or means (`statistic`) */
  ttftMs: number;
  tpotMs: number;
  /**
   * where they come from: "engine-request" (the engine's own per-request timing, vLLM's
   * `--enable-per-request-metrics`: medians), "engine" (its /metrics histograms: means) or "client"
   * (the client's clock: means)
   */
  source: "engine-request" | "engine" | "client";
  statistic: "p50" | "mean";
  /** the per-request figures the medians come from, ms (p50 runs), so that rounds can be pooled */
  samples?: { ttfts: number[]; tpots: number[] };
  /** the probe point a run is a round of (`calibrate_probe` of the result): one label's rounds are pooled */
  label?: string;
  /**
   * false where the run's TTFT is not the engine model's to match (`calibrate_fit: "tpot"` of the
   * result); "intake" where it is only once the API server's hand-over is modelled: the probe's batch
   * runs send their requests at once, and the engine core meets them one by one as the API server
   * hands them over (`calibrate_fit: "intake"`)
   */
  fitTtft?: boolean | "intake";
  /**
   * a held-out run, not fitted: the fitted profile predicts it, and its error is the fit's honest one
   * (`calibrate_check: true` of the result: `calibrate --check` runs it between the probe's points)
   */
  check?: boolean;
}

export interface FitResult {
  gpu: GpuProfile;
  /** the fitted figures over the base profile's */
  flopsFactor: number;
  bandwidthFactor: number;
  /** the fitted fixed cost of a step, seconds */
  stepOverheadS: number;
  /** the fitted cost each sequence adds to a step, seconds (0: none) */
  seqOverheadS: number;
  /** what a prefill's attention FLOP costs against a dense one (1: the same) */
  prefillAttentionCostFactor: number;
  /** the fitted cost each prefilling sequence adds to a step, seconds (0: none) */
  prefillSeqOverheadS: number;
  /**
   * the fitted time the engine's API server takes to hand one request to its engine core, seconds (0:
   * none): requests sent at once reach the engine core this far apart. The replay's, not the profile's
   * (the engine model has no API server); `calibrate --predict --intake-ms` takes it back
   */
  intakeS: number;
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
 * and the engine's per-request timing where the run has it, else its engine-side means where the run
 * scraped the engine's metrics, else the client's; the rounds of one probe point pooled. `timeScale`:
 * a sim's --time-scale, undone (its modelled durations ran that many times faster).
 */
export function runsFromBench(body: unknown, timeScale = 1): FitRun[] {
  return pooled(benchRuns(body, timeScale));
}

function benchRuns(body: unknown, timeScale: number): FitRun[] {
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
      throw new InputFileError("a bench result needs input_lens, output_lens and start_times of one length");
    const server = (r.server ?? null) as Record<string, unknown> | null;
    const engTtft = num(server?.mean_ttft_ms);
    const engItl = num(server?.mean_itl_ms);
    const t0 = Math.min(...starts);
    const ok = ttfts.map((t, i) => t > 0 && outs[i]! > 0);
    const sel = <T>(a: T[]) => a.filter((_, i) => ok[i]);
    const clientTtft = (sel(ttfts).reduce((a, b) => a + b, 0) / Math.max(1, sel(ttfts).length)) * 1000;
    const clientTpot = meanTpot(sel(ttfts), sel(e2els), sel(outs));
    const base = {
      ...(typeof r.calibrate_probe === "string" ? { label: r.calibrate_probe } : {}),
      ...(r.calibrate_fit === "tpot"
        ? { fitTtft: false }
        : r.calibrate_fit === "intake"
          ? { fitTtft: "intake" as const }
          : {}),
      ...(r.calibrate_check === true ? { check: true } : {}),
      inputLens: sel(ins),
      outputLens: sel(outs),
      startTimes: sel(starts).map((s) => (s - t0) / timeScale),
    };
    // the engine's per-request timing first: it is what the engine model times (no API server in it),
    // and its medians are what a held-out check compares
    const engTtfts = sel(arr("engine_ttfts")).filter((t) => t > 0);
    const outsOk = sel(outs);
    const engTpots = sel(arr("engine_tpots")).filter((t, i) => t > 0 && outsOk[i]! > 1);
    if (engTtfts.length > 0 && engTpots.length > 0) {
      out.push({
        ...base,
        ttftMs: (median(engTtfts) * 1000) / timeScale,
        tpotMs: (median(engTpots) * 1000) / timeScale,
        source: "engine-request",
        statistic: "p50",
        samples: {
          ttfts: engTtfts.map((t) => (t * 1000) / timeScale),
          tpots: engTpots.map((t) => (t * 1000) / timeScale),
        },
      });
      continue;
    }
    const engine = engTtft !== null && engItl !== null;
    out.push({
      ...base,
      ttftMs: (engine ? engTtft : clientTtft) / timeScale,
      tpotMs: (engine ? engItl : clientTpot) / timeScale,
      source: engine ? "engine" : "client",
      statistic: "mean",
    });
  }
  return out;
}

/**
 * Runs of one label (rounds of one probe point, spread over the probe so that a busy machine's slow
 * and fast moments fall on every point) pooled into one: their requests one round after another on
 * one clock, far enough apart that each round meets an idle engine, and the medians (or the
 * request-weighted means) over all of them.
 */
export function pooled(runs: FitRun[]): FitRun[] {
  const out: FitRun[] = [];
  const byLabel = new Map<string, FitRun>();
  for (const r of runs) {
    const into = r.label === undefined ? undefined : byLabel.get(r.label);
    if (!into || into.source !== r.source) {
      const copy = { ...r, startTimes: [...r.startTimes] };
      if (r.label !== undefined) byLabel.set(r.label, copy);
      out.push(copy);
      continue;
    }
    const n0 = into.inputLens.length;
    const n1 = r.inputLens.length;
    const offset = Math.max(...into.startTimes) + ROUND_GAP_S;
    into.inputLens = [...into.inputLens, ...r.inputLens];
    into.outputLens = [...into.outputLens, ...r.outputLens];
    into.startTimes.push(...r.startTimes.map((t) => t + offset));
    if (into.samples && r.samples) {
      into.samples = {
        ttfts: [...into.samples.ttfts, ...r.samples.ttfts],
        tpots: [...into.samples.tpots, ...r.samples.tpots],
      };
      into.ttftMs = median(into.samples.ttfts);
      into.tpotMs = median(into.samples.tpots);
    } else {
      into.ttftMs = (into.ttftMs * n0 + r.ttftMs * n1) / (n0 + n1);
      into.tpotMs = (into.tpotMs * n0 + r.tpotMs * n1) / (n0 + n1);
    }
  }
  return out;
}

/**
 * whether a run's TTFT is the engine model's to match: not where the run says it is not, and a batch
 * run's only with the API server's hand-over modelled (`handOver`)
 */
export function ttftMatched(r: FitRun, handOver: boolean): boolean {
  return r.fitTtft === undefined || r.fitTtft === true || (handOver && r.fitTtft === "intake");
}

/** virtual seconds between two pooled rounds: every request of a round has finished by then */
const ROUND_GAP_S = 3600;

/** the run replayed on one engine of `gpu`: its TTFT and TPOT, ms, by the run's statistic */
export function replay(
  run: FitRun,
  model: ModelProfile,
  gpu: GpuProfile,
  tp: number,
  intakeS = 0,
): { ttftMs: number; tpotMs: number } {
  // the engine's own timing starts where its engine core took the request in, as the replay's must
  const queued = run.source === "engine-request";
  const p = replayRequests(run, model, gpu, tp, queued ? "queued" : "arrival", queued ? intakeS : 0);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const stat = run.statistic === "p50" ? median : mean;
  return { ttftMs: stat(p.ttfts) * 1000, tpotMs: stat(p.tpots) * 1000 };
}

/**
 * the run replayed on one engine of `gpu`: every request's TTFT and TPOT (those of 2+ tokens), s. TTFT
 * from the request's arrival, or (`from: "queued"`) from when the engine took it in, as vLLM's
 * per-request queue + prefill time counts it: its engine core reads new requests between steps, so one
 * sent while a step runs starts its queue time when that step ends. `intakeS`: the API server's time to
 * hand a request over, one at a time: a request reaches the engine that long after it was sent, or
 * after the request before it reached it (only with `from: "queued"`, whose clock starts at the engine)
 */
export function replayRequests(
  run: Pick<FitRun, "inputLens" | "outputLens" | "startTimes">,
  model: ModelProfile,
  gpu: GpuProfile,
  tp: number,
  from: "arrival" | "queued" = "arrival",
  intakeS = 0,
): { ttfts: number[]; tpots: number[] } {
  if (from === "arrival" && intakeS > 0)
    throw new InputFileError("an intake time needs TTFT from the engine's intake");
  const cfg0 = defaultEngineConfig(model, gpu, { tensorParallelSize: tp, blockHashAlgo: "fast" });
  // no more KV blocks than the run can fill (a small model on a big profile has millions, and a fit
  // replays thousands of times), never more than the profile holds
  let need = 16;
  for (let i = 0; i < run.inputLens.length; i++)
    need += Math.ceil((run.inputLens[i]! + run.outputLens[i]! + 1) / cfg0.blockSize) + 1;
  const cfg = { ...cfg0, numGpuBlocksOverride: Math.min(kvCapacity(cfg0).numGpuBlocks, need) };
  const driver = new VirtualDriver();
  const ttfts: number[] = [];
  const tpots: number[] = [];
  const engine: Engine = new Engine(cfg, {
    onTokens: () => {},
    onFinished: (_id, _reason, t) => {
      ttfts.push(t.firstTokenTime - (from === "queued" ? t.queuedTime : t.arrivalTime));
      if (t.outputTokens > 1) tpots.push((t.finishedTime - t.firstTokenTime) / (t.outputTokens - 1));
    },
  });
  driver.attach(engine);
  // the API server hands requests over in the order they were sent, one at a time
  const order = run.startTimes.map((_, i) => i).sort((x, y) => run.startTimes[x]! - run.startTimes[y]!);
  const reach = new Array<number>(order.length);
  let free = -Infinity;
  for (const i of order) free = reach[i] = Math.max(run.startTimes[i]!, free) + intakeS;
  for (let i = 0; i < run.inputLens.length; i++) {
    const len = Math.max(1, Math.min(run.inputLens[i]!, cfg.maxModelLen - 2));
    const outN = Math.max(1, Math.min(run.outputLens[i]!, cfg.maxModelLen - len));
    driver.at(reach[i]!, () => {
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
  return { ttfts, tpots };
}

const scaled = (
  g: GpuProfile,
  f: number,
  b: number,
  overhead: number,
  seq: number,
  attention: number,
  prefillSeq: number,
): GpuProfile => ({
  ...g,
  bf16Flops: g.bf16Flops * f,
  hbmBandwidth: g.hbmBandwidth * b,
  stepOverheadS: overhead,
  ...(seq > 0 ? { seqOverheadS: seq } : {}),
  ...(attention !== 1 ? { prefillAttentionCostFactor: attention } : {}),
  ...(prefillSeq > 0 ? { prefillSeqOverheadS: prefillSeq } : {}),
});

/**
 * a point of the search: log FLOP/s and bandwidth factors, log step and sequence costs (−∞: none), log
 * prefill attention cost factor, log prefilling-sequence cost and log intake time (−∞: none)
 */
interface Point {
  lf: number;
  lb: number;
  lo: number;
  ls: number;
  la: number;
  lp: number;
  li: number;
  c: number;
}

/** the figures of a point a search may move */
type Dir = [number, number, number, number, number, number, number];

/** fits the base GPU's FLOP/s and bandwidth, the step's and each sequence's cost to the runs (module comment) */
export function fitEngine(
  runs: readonly FitRun[],
  model: ModelProfile,
  base: GpuProfile,
  o: { tp?: number; id?: string } = {},
): FitResult {
  if (runs.length === 0) throw new InvalidArgumentError("nothing to fit: no runs");
  const tp = o.tp ?? 1;
  const o0 = Math.log(base.stepOverheadS ?? STEP_OVERHEAD_S);
  const s0 = base.seqOverheadS ? Math.log(base.seqOverheadS) : -Infinity;
  const a0 = Math.log(base.prefillAttentionCostFactor ?? 1);
  const p0 = base.prefillSeqOverheadS ? Math.log(base.prefillSeqOverheadS) : -Infinity;
  const gpuAt = (p: Omit<Point, "c" | "li">) =>
    scaled(
      base,
      Math.exp(p.lf),
      Math.exp(p.lb),
      Math.exp(p.lo),
      Math.exp(p.ls),
      Math.exp(p.la),
      Math.exp(p.lp),
    );
  // the batch runs' TTFT counts once the API server's hand-over is modelled (the last stage)
  let withIntake = false;
  const at = (q: Omit<Point, "c">): Point => {
    let c = 0;
    const gpu = gpuAt(q);
    for (const r of runs) {
      const p = replay(r, model, gpu, tp, Math.exp(q.li));
      c +=
        (ttftMatched(r, withIntake) ? Math.log(p.ttftMs / r.ttftMs) ** 2 : 0) +
        Math.log(p.tpotMs / r.tpotMs) ** 2;
    }
    return { ...q, c };
  };
  const move = (p: Point, d: Dir) =>
    at({
      lf: p.lf + d[0],
      lb: p.lb + d[1],
      lo: p.lo + d[2],
      ls: p.ls + d[3],
      la: p.la + d[4],
      lp: p.lp + d[5],
      li: p.li + d[6],
    });
  const better = (a: Point, b: Point) => (b.c < a.c ? b : a);
  /** pattern search from `from`: each figure (and, with `shape`, the prefill's two and the intake) up and down */
  const descend = (from: Point, shape: boolean): Point => {
    let p = from;
    let step = Math.LN2 / 2;
    const unit = (k: number, v: number): Dir => {
      const d: Dir = [0, 0, 0, 0, 0, 0, 0];
      d[k] = v;
      return d;
    };
    while (step > 0.004) {
      let moved = false;
      const dirs: Dir[] = [0, 1, 2].flatMap((k) => [unit(k, step), unit(k, -step)]);
      if (Number.isFinite(p.ls)) dirs.push(unit(3, step), unit(3, -step));
      if (shape) {
        // the attention factor alone, and along its valley (more attention, faster dense FLOPs)
        dirs.push(unit(4, step), unit(4, -step));
        dirs.push([step, 0, 0, 0, step, 0, 0], [-step, 0, 0, 0, -step, 0, 0]);
        if (Number.isFinite(p.lp)) dirs.push(unit(5, step), unit(5, -step));
        if (Number.isFinite(p.li)) dirs.push(unit(6, step), unit(6, -step));
      }
      for (const d of dirs) {
        const next = move(p, d);
        if (next.c < p.c) {
          p = next;
          moved = true;
        }
      }
      if (!moved) step /= 2;
    }
    return p;
  };
  // one factor for both over 2^-16..2^8 (a CPU engine is a thousand times slower than a GPU profile),
  // a grid of 1/16..16 of each figure around it, the per-sequence cost from none to twice the step's,
  // then a pattern search over the four
  const none = -Infinity;
  const p00 = { lf: 0, lb: 0, lo: o0, ls: s0, la: a0, lp: p0, li: none };
  let best = at(p00);
  for (let k = -16; k <= 8; k++) best = better(best, at({ ...p00, lf: k * Math.LN2, lb: k * Math.LN2 }));
  const common = best.lf;
  for (let i = -4; i <= 4; i++)
    for (let j = -4; j <= 4; j++)
      best = better(best, at({ ...best, lf: common + i * Math.LN2, lb: common + j * Math.LN2 }));
  for (let k = -10; k <= 1; k++) best = better(best, at({ ...best, ls: best.lo + k * Math.LN2 }));
  best = descend(best, false);
  // then a prefill's own shape, where the runs ask for one: its attention against a dense FLOP
  // (1..256), a fixed cost per prefilling sequence (none, or 1/32..4 of the step's), the dense FLOP/s
  // around the fit so far (1/2..4); a pattern search over the six from the best of them
  const at0 = best;
  for (let k = 0; k <= 8; k++)
    for (let j = -2; j <= 4; j++)
      for (let q = -6; q <= 2; q++) {
        const lp = q === -6 ? at0.lp : at0.lo + q * Math.LN2;
        best = better(best, at({ ...at0, lf: at0.lf + (j * Math.LN2) / 2, la: a0 + k * Math.LN2, lp }));
      }
  if (best !== at0) best = descend(best, true);
  // last, where the engine timed batch runs itself, the API server's hand-over: none, or 1/8..8 of a
  // step's fixed cost, the batch runs' TTFT now counted; a pattern search over the seven from there
  if (runs.some((r) => r.fitTtft === "intake" && r.source === "engine-request")) {
    withIntake = true;
    const at1 = at(best);
    best = at1;
    for (let k = -3; k <= 3; k++) best = better(best, at({ ...at1, li: at1.lo + k * Math.LN2 }));
    best = descend(best, true);
  }
  const f = Math.exp(best.lf);
  const b = Math.exp(best.lb);
  const overhead = Math.exp(best.lo);
  const seq = Math.exp(best.ls);
  const attention = Math.exp(best.la);
  const prefillSeq = Math.exp(best.lp);
  const intake = Math.exp(best.li);
  const gpu: GpuProfile = {
    ...gpuAt(best),
    id: o.id ?? `${base.id}-calibrated`,
    name: `${base.name}, calibrated`,
    source: `fitted by switchyard calibrate to ${runs.length} run${runs.length === 1 ? "" : "s"} (${runs.map((r) => `${r.source} ${r.statistic}`).join(", ")}) of ${model.id} at TP ${tp}: ${base.id}'s dense FLOP/s × ${f.toFixed(3)}, HBM bandwidth × ${b.toFixed(3)}, step overhead ${(overhead * 1000).toFixed(2)} ms, ${(seq * 1000).toFixed(3)} ms a sequence, ${(prefillSeq * 1000).toFixed(3)} ms a prefilling sequence, prefill attention × ${attention.toFixed(2)}${intake > 0 ? `; the API server's hand-over ${(intake * 1000).toFixed(2)} ms a request (replay only)` : ""}`,
  };
  const { rows, maxError } = predict(runs, model, gpu, tp, intake);
  return {
    gpu,
    flopsFactor: f,
    bandwidthFactor: b,
    stepOverheadS: overhead,
    seqOverheadS: seq,
    prefillAttentionCostFactor: attention,
    prefillSeqOverheadS: prefillSeq,
    intakeS: intake,
    runs: rows,
    maxError,
  };
}

/**
 * the runs replayed on `gpu` as it is (a fitted profile, on runs it was not fitted to): measured and
 * modelled figures per run, and the largest relative error of those the fit would match
 */
export function predict(
  runs: readonly FitRun[],
  model: ModelProfile,
  gpu: GpuProfile,
  tp = 1,
  intakeS = 0,
): { rows: FitResult["runs"]; maxError: number } {
  const rows = runs.map((r) => {
    const p = replay(r, model, gpu, tp, intakeS);
    return {
      ttftMs: r.ttftMs,
      tpotMs: r.tpotMs,
      predTtftMs: p.ttftMs,
      predTpotMs: p.tpotMs,
      ttftErr: p.ttftMs / r.ttftMs - 1,
      tpotErr: p.tpotMs / r.tpotMs - 1,
    };
  });
  const maxError = Math.max(
    ...rows.flatMap((x, i) => [
      ttftMatched(runs[i]!, intakeS > 0) ? Math.abs(x.ttftErr) : 0,
      Math.abs(x.tpotErr),
    ]),
  );
  return { rows, maxError };
}

/**
 * the fitted GPU as a profiles YAML body (`gpus:`), as src/models' loadProfilesFile reads it; with the
 * model too (`models:`) where it has no catalogue entry (a Hugging Face folder), so that a scenario can
 * name both
 */
export function profileDocument(gpu: GpuProfile, model?: ModelProfile): Record<string, unknown> {
  return model ? { gpus: [gpu], models: [model] } : { gpus: [gpu] };
}
