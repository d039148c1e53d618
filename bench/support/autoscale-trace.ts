// The autoscale/trace benchmark's parts (here so that its test runs them too): the two traces (a diurnal day, the Azure burst hour), one
// policy's run of a trace in the fleet simulator, and what a run is scored on (GPU-hours, the share of
// one-minute windows meeting the SLO, p90s, scale events, requests lost).
//
// Scale: the engines are Llama-3.1-8B on an L4 slowed `timeScale` times (every step takes k times as
// long: FLOP/s and bandwidth divided by k, the step overhead times k), arrivals are thinned to 1/k and
// the SLO's bounds are k times the real ones. A replica then holds the same batch at the same share of
// its capacity as the real one (batch = rate × output × step), so the fleet's size and its GPU-hours
// are the real fleet's, while the simulator steps k times fewer steps and admits k times fewer
// requests. Latencies reported are divided back by k. The cost is noise: a one-minute window holds k
// times fewer requests.
import { createReadStream, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Autoscaler,
  DynamoSla,
  EngineCapacity,
  FixedFleet,
  HpaGpuUtil,
  KedaWaiting,
  type ScalePolicy,
} from "../../src/autoscale/index.js";
import { defaultEngineConfig, type EngineConfig } from "../../src/engine/index.js";
import { simulateFleet, type AutoscaleReport } from "../../src/fleet/fleet.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { InputFileError } from "../../src/errors/index.js";
import { makeRng } from "../../src/random/rng.js";
import { traceWorkload, TRACE_DEFAULTS, type TraceEntry } from "../../src/workload/trace.js";
import type { RequestRecord } from "../../src/workload/record.js";

const here = dirname(fileURLToPath(import.meta.url));
/** the committed sample (bench/autoscale/traces), read from the source tree next to dist/ */
export const AZURE_CONV_SAMPLE = join(here, "../../../bench/autoscale/traces/azure-conv-1in3.csv");

export interface Slo {
  ttftP90Ms: number;
  tpotP90Ms: number;
}

export interface BenchSetup {
  timeScale: number;
  slo: Slo;
  startupS: number;
  intervalS: number;
  minEngines: number;
  maxEngines: number;
  seed: number;
  /** ours: the p90s' margin below the SLO it sizes for */
  sloMargin: number;
  /** ours: spare capacity kept above the forecast rate */
  headroom: number;
}

export const SETUP_DEFAULTS: BenchSetup = {
  timeScale: 40,
  // an interactive chat SLO for an 8B model on an L4: first token within 2 s, 150 ms per token (an L4 decodes an 8B model at 60-70 ms a step: the bound leaves room for prompt chunks)
  slo: { ttftP90Ms: 2000, tpotP90Ms: 150 },
  // a vLLM engine's start to ready: see docs/autoscaling.md (image present, weights from local disk)
  startupS: 120,
  intervalS: 15,
  minEngines: 2,
  maxEngines: 40,
  seed: 1,
  sloMargin: 0.1,
  headroom: 0,
};

/** the engine at the benchmark's scale: Llama-3.1-8B on an L4 slowed k times */
export function scaledEngine(k: number): EngineConfig {
  const l4 = resolveGpu("l4");
  const gpu = {
    ...l4,
    id: `l4-x${k}`,
    bf16Flops: l4.bf16Flops / k,
    hbmBandwidth: l4.hbmBandwidth / k,
    hostLinkBandwidth: l4.hostLinkBandwidth / k,
    stepOverheadS: (l4.stepOverheadS ?? 0.002) * k,
  };
  return defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), gpu, {
    maxModelLen: 8192,
    blockHashAlgo: "fast",
  });
}

/** the Azure 2023 conversation trace's rows: seconds from its first request, prompt and output tokens */
export function readAzure(path = AZURE_CONV_SAMPLE): { t: number; input: number; output: number }[] {
  const lines = readFileSync(path, "utf8").split("\n");
  const out: { t: number; input: number; output: number }[] = [];
  let t0 = NaN;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    const [ts, ctx, gen] = line.split(",");
    const t = Date.parse(ts!.replace(" ", "T").slice(0, 23) + "Z") / 1000;
    if (Number.isNaN(t0)) t0 = t;
    out.push({ t: t - t0, input: Number(ctx), output: Number(gen) });
  }
  return out;
}

const MAX_PROMPT = 6000;
const MAX_OUTPUT = 1000;

function entry(i: number, tS: number, input: number, output: number): TraceEntry {
  const inputLength = Math.max(1, Math.min(MAX_PROMPT, input));
  // a request's blocks are its own: no prefix is shared (neither trace records prompt content)
  const blocks = Math.ceil(inputLength / 512);
  const hashIds = Array.from({ length: blocks }, (_, b) => i * 16 + b);
  return {
    timestampMs: tS * 1000,
    inputLength,
    outputLength: Math.max(1, Math.min(MAX_OUTPUT, output)),
    hashIds,
    chatId: null,
  };
}

/**
 * The diurnal day: a raised-cosine day (trough at 04:00, peak at 16:00, peak 8× the trough), the
 * daily periodicity BurstGPT reports for its conversation logs, at `peakRatePerS` (already scaled),
 * Poisson within the day; lengths drawn from the Azure conversation trace's rows.
 */
export function diurnalTrace(hours: number, peakRatePerS: number, seed: number, startHour = 0): TraceEntry[] {
  const rows = readAzure();
  const rng = makeRng(seed, "diurnal");
  const trough = peakRatePerS / 8;
  const rate = (tS: number) => {
    const h = startHour + tS / 3600;
    return trough + (peakRatePerS - trough) * (0.5 - 0.5 * Math.cos((2 * Math.PI * (h - 4)) / 24));
  };
  const out: TraceEntry[] = [];
  // thinning (Lewis-Shedler): candidates at the peak rate, each kept with rate(t)/peak
  let t = 0;
  const end = hours * 3600;
  for (let i = 0; out.length < 2_000_000; i++) {
    t += rng.exp(1 / peakRatePerS);
    if (t >= end) break;
    if (rng.next() * peakRatePerS > rate(t)) continue;
    const r = rows[Math.floor(rng.next() * rows.length)]!;
    out.push(entry(out.length, t, r.input, r.output));
  }
  return out;
}

/** BurstGPT's CSV columns (github.com/HPMLL/BurstGPT, README): seconds from the trace's start */
const BURSTGPT_HEADER = [
  "Timestamp",
  "Model",
  "Request tokens",
  "Response tokens",
  "Total tokens",
  "Log Type",
];

/**
 * A real day from a BurstGPT CSV (`BurstGPT_1.csv` or a `_without_fails_` file, fetched by
 * bench/autoscale/traces/fetch.sh): the rows of `logType` whose timestamp falls in day `day`'s
 * `hours` from `startHour` (days counted from the trace's first second), failed rows (a zero token
 * count) left out, thinned at random so that the day's busiest ten minutes ask for `peakRatePerS`
 * (already scaled). Arrival instants and lengths are the trace's own. Streams the file: the full
 * CSVs are over a hundred megabytes.
 */
export async function burstGptDay(
  path: string,
  opts: {
    day: number;
    hours: number;
    startHour: number;
    peakRatePerS: number;
    seed: number;
    logType: string;
  },
): Promise<TraceEntry[]> {
  const from = opts.day * 86_400 + opts.startHour * 3600;
  const to = from + opts.hours * 3600;
  const rows: { t: number; input: number; output: number }[] = [];
  const lines = createInterface({ input: createReadStream(path, "utf8"), crlfDelay: Infinity });
  let col: Record<string, number> | null = null;
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cells = line.split(",");
    if (col === null) {
      const names = cells.map((c) => c.trim());
      const missing = BURSTGPT_HEADER.filter((h) => h !== "Total tokens" && !names.includes(h));
      if (missing.length)
        throw new InputFileError(`${path}: not a BurstGPT CSV (missing ${missing.join(", ")})`);
      col = Object.fromEntries(names.map((n, i) => [n, i]));
      continue;
    }
    const t = Number(cells[col["Timestamp"]!]);
    if (!(t >= from)) continue;
    if (t >= to) break;
    if (opts.logType !== "all" && cells[col["Log Type"]!]?.trim() !== opts.logType) continue;
    const input = Number(cells[col["Request tokens"]!]);
    const output = Number(cells[col["Response tokens"]!]);
    if (!(input > 0 && output > 0)) continue;
    rows.push({ t: t - from, input, output });
  }
  if (rows.length === 0) return [];
  // the busiest ten minutes, by a sliding window over the sorted instants
  rows.sort((a, b) => a.t - b.t);
  let busiest = 0;
  for (let i = 0, j = 0; i < rows.length; i++) {
    while (rows[i]!.t - rows[j]!.t >= 600) j++;
    busiest = Math.max(busiest, i - j + 1);
  }
  const keep = Math.min(1, opts.peakRatePerS / (busiest / 600));
  const rng = makeRng(opts.seed, "burstgpt-day");
  const out: TraceEntry[] = [];
  for (const r of rows) if (rng.next() < keep) out.push(entry(out.length, r.t, r.input, r.output));
  return out;
}

/** the Azure conversation hour at its own timestamps, thinned to `keep` of its requests */
export function burstTrace(minutes: number, keep: number, seed: number): TraceEntry[] {
  const rng = makeRng(seed, "burst");
  const out: TraceEntry[] = [];
  for (const r of readAzure()) {
    if (r.t >= minutes * 60) break;
    if (rng.next() >= keep) continue;
    out.push(entry(out.length, r.t, r.input, r.output));
  }
  return out;
}

export interface PolicyResult {
  trace: string;
  policy: string;
  baseline: boolean;
  setting: string;
  gpu_hours: number;
  attainment: number;
  ttft_p90_ms: number;
  tpot_p90_ms: number;
  scale_events: number;
  lost: number;
  requests: number;
  windows: number;
  mean_engines: number;
  peak_engines: number;
  sent_to_leaving: number;
  wall_s: number;
}

function p90(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.9 * s.length) - 1)]!;
}

/** a request's time per output token, ms (NaN with one token) */
function tpotOf(r: RequestRecord): number {
  return r.outputTokens > 1 ? (r.e2el - r.ttft) / (r.outputTokens - 1) : NaN;
}

/** scores a run: windows by arrival minute; a window meets the SLO when its p90s are within it */
export function score(
  records: RequestRecord[],
  requests: number,
  report: AutoscaleReport | null,
  engines: number,
  durationS: number,
  setup: BenchSetup,
): Omit<PolicyResult, "trace" | "policy" | "baseline" | "setting" | "wall_s"> {
  const k = setup.timeScale;
  const byMin = new Map<number, { ttft: number[]; tpot: number[] }>();
  const ttft: number[] = [];
  const tpot: number[] = [];
  let lost = requests - records.length;
  for (const r of records) {
    if (!r.ok) {
      lost++;
      continue;
    }
    const m = Math.floor(r.start / 60000);
    let w = byMin.get(m);
    if (!w) byMin.set(m, (w = { ttft: [], tpot: [] }));
    w.ttft.push(r.ttft / k);
    ttft.push(r.ttft / k);
    const t = tpotOf(r);
    if (!Number.isNaN(t)) {
      w.tpot.push(t / k);
      tpot.push(t / k);
    }
  }
  let met = 0;
  for (const w of byMin.values()) {
    const a = p90(w.ttft);
    const b = w.tpot.length ? p90(w.tpot) : 0;
    if (a <= setup.slo.ttftP90Ms && b <= setup.slo.tpotP90Ms) met++;
  }
  // billed over the trace's span: the engines up at each decision (serving, starting, draining) for one
  // interval; the tail after the last arrival (k times longer than a real request's) is left out
  const timeline = (report?.timeline ?? []).filter((x) => x.t <= durationS);
  const live = timeline.map((x) => x.ready + x.starting + x.draining);
  const interval = timeline.length > 1 ? timeline[1]!.t - timeline[0]!.t : 0;
  return {
    gpu_hours: report ? (live.reduce((a, b) => a + b, 0) * interval) / 3600 : (engines * durationS) / 3600,
    attainment: byMin.size ? met / byMin.size : 1,
    ttft_p90_ms: p90(ttft),
    tpot_p90_ms: p90(tpot),
    scale_events: report?.scaleEvents ?? 0,
    lost,
    requests,
    windows: byMin.size,
    mean_engines: live.length ? live.reduce((a, b) => a + b, 0) / live.length : engines,
    peak_engines: live.length ? Math.max(...live) : engines,
    sent_to_leaving: report?.sentToLeaving ?? 0,
  };
}

export type PolicySpec =
  | { kind: "slo" }
  | { kind: "keda-waiting"; threshold: number }
  | { kind: "hpa-gpu-util"; targetPercent: number }
  | { kind: "dynamo-sla"; intervalS: number }
  | { kind: "fixed"; engines: number };

export function makePolicy(spec: PolicySpec, setup: BenchSetup, engine: EngineConfig): ScalePolicy {
  const k = setup.timeScale;
  const minReplicas = setup.minEngines;
  const maxReplicas = setup.maxEngines;
  const slo = { ttftP90Ms: setup.slo.ttftP90Ms * k, tpotP90Ms: setup.slo.tpotP90Ms * k };
  switch (spec.kind) {
    case "slo":
      return new Autoscaler(
        {
          ...slo,
          minReplicas,
          maxReplicas,
          startupSeconds: setup.startupS,
          scaleDownStabilizationSeconds: 300,
          intervalSeconds: setup.intervalS,
          sloMargin: setup.sloMargin,
          headroom: setup.headroom,
        },
        new EngineCapacity(engine),
      );
    case "keda-waiting":
      // the chart: pollingInterval 15 s; the HPA KEDA creates keeps its defaults
      return new KedaWaiting(spec.threshold, { minReplicas, maxReplicas, periodSeconds: 15 });
    case "hpa-gpu-util":
      return new HpaGpuUtil(spec.targetPercent, { minReplicas, maxReplicas, periodSeconds: 15 });
    case "dynamo-sla":
      return new DynamoSla(
        { ...slo, minReplicas, maxReplicas, adjustmentIntervalSeconds: spec.intervalS },
        new EngineCapacity(engine),
      );
    case "fixed":
      return new FixedFleet(spec.engines);
  }
}

export function specName(spec: PolicySpec): { policy: string; setting: string } {
  switch (spec.kind) {
    case "slo":
      return { policy: "slo", setting: "engine model" };
    case "keda-waiting":
      return { policy: "keda-waiting", setting: `threshold ${spec.threshold}` };
    case "hpa-gpu-util":
      return { policy: "hpa-gpu-util", setting: `target ${spec.targetPercent}%` };
    case "dynamo-sla":
      return { policy: "dynamo-sla", setting: `interval ${spec.intervalS}s` };
    case "fixed":
      return { policy: "fixed-peak", setting: `${spec.engines} engines` };
  }
}

/** one policy over one trace in the fleet simulator */
export function runPolicy(
  trace: string,
  entries: TraceEntry[],
  spec: PolicySpec,
  setup: BenchSetup,
  startEngines = setup.minEngines,
): PolicyResult {
  const engine = scaledEngine(setup.timeScale);
  const workload = traceWorkload(entries, { ...TRACE_DEFAULTS, seed: setup.seed });
  const fixed = spec.kind === "fixed" ? spec.engines : 0;
  const initial = fixed || Math.max(startEngines, 1);
  const t0 = performance.now();
  const policy = makePolicy(spec, setup, engine);
  const r = simulateFleet({
    engine,
    engines: fixed || initial,
    policy: "least-load",
    // the live router scrapes every second; the engines here are k times slower
    scrapeIntervalS: Math.min(15, setup.timeScale),
    sharedServer: null,
    workload,
    qps: Infinity,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: Infinity,
    durationS: Infinity,
    seed: setup.seed,
    recordItl: false,
    autoscale:
      spec.kind === "fixed"
        ? undefined
        : {
            policy,
            intervalS: setup.intervalS,
            startupS: setup.startupS,
            initial,
            maxEngines: setup.maxEngines + 8,
          },
  });
  const wall = (performance.now() - t0) / 1000;
  const end = entries.length ? entries[entries.length - 1]!.timestampMs / 1000 : 0;
  const s = score(r.records, entries.length, r.autoscale ?? null, fixed, end, setup);
  return { trace, ...specName(spec), baseline: spec.kind !== "slo", ...s, wall_s: wall };
}

/** `plan`'s default headroom (a scenario's slo.headroom) */
const PLAN_HEADROOM = 0.1;

/** a constant Poisson rate for `minutes`, lengths from the Azure rows: the peak `plan` sizes for */
export function constantTrace(minutes: number, ratePerS: number, seed: number): TraceEntry[] {
  const rows = readAzure();
  const rng = makeRng(seed, "constant");
  const out: TraceEntry[] = [];
  for (let t = rng.exp(1 / ratePerS); t < minutes * 60; t += rng.exp(1 / ratePerS)) {
    const r = rows[Math.floor(rng.next() * rows.length)]!;
    out.push(entry(out.length, t, r.input, r.output));
  }
  return out;
}

/**
 * The fixed fleet `switchyard plan` would deploy for the peak: the fewest engines whose simulated p90
 * TTFT and TPOT at the peak rate (a constant-rate hour: at k times slower engines a request lives k
 * times longer, and a shorter window would end before the fleet reaches its steady state) are within
 * the SLO less plan's headroom.
 */
export function sizeForPeak(peakRatePerS: number, setup: BenchSetup, minutes = 60): number {
  const trace = constantTrace(minutes, peakRatePerS, setup.seed + 7);
  const meets = (n: number) => {
    const r = runPolicy("peak", trace, { kind: "fixed", engines: n }, setup);
    // as plan checks a run: each p90 at or below its bound less the default 10% headroom
    const room = 1 - PLAN_HEADROOM;
    return (
      r.ttft_p90_ms <= setup.slo.ttftP90Ms * room &&
      r.tpot_p90_ms <= setup.slo.tpotP90Ms * room &&
      r.lost === 0
    );
  };
  let lo = 1;
  let hi = setup.maxEngines;
  if (!meets(hi)) return hi;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (meets(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
