// A/B comparison of two result files: each headline metric side by side with its relative change
// and a bootstrap confidence interval of that change, from the per-request samples. A difference
// is called real only when the interval excludes zero AND the change is at least --min-effect,
// so that tiny, statistically detectable shifts (timer noise on a busy host) are not reported.
import { tpotOf, type RequestRecord } from "../workload/record.js";
import { makeRng, type Rng } from "../random/rng.js";
import { mean, percentile, percentileSorted } from "../workload/stats.js";

/** One metric's samples in ms (samplesOf without building the other three, since this runs per resample). */
function valuesOf(records: readonly RequestRecord[], metric: "ttft" | "tpot" | "itl" | "e2el"): number[] {
  const xs: number[] = [];
  for (const r of records) {
    if (!r.ok) continue;
    if (metric === "ttft") xs.push(r.ttft);
    else if (metric === "e2el") xs.push(r.e2el);
    else if (metric === "tpot") {
      const t = tpotOf(r);
      if (t !== null) xs.push(t);
    } else for (const g of r.itl) xs.push(g);
  }
  return xs;
}

type Stat = (records: readonly RequestRecord[], durationS: number) => number;

function latencyStat(metric: "ttft" | "tpot" | "itl" | "e2el", kind: "mean" | "median" | "p99"): Stat {
  return (records) => {
    const xs = valuesOf(records, metric);
    if (xs.length === 0) return NaN;
    if (kind === "mean") return mean(xs);
    return percentile(xs, kind === "median" ? 50 : 99);
  };
}

export interface HeadlineMetric {
  key: string;
  higherIsBetter: boolean;
  stat: Stat;
}

/** Output tokens completed in each of WINDOWS equal slices of the run, as tokens/s. */
const WINDOWS = 10;
function windowRates(
  records: readonly RequestRecord[],
  durationS: number,
  what: "tokens" | "requests",
): number[] {
  const d = durationS * 1000;
  const bins = new Array<number>(WINDOWS).fill(0);
  if (!(d > 0)) return bins;
  const t0 = records.reduce((m, r) => Math.min(m, r.start), Infinity);
  for (const r of records) {
    if (!r.ok) continue;
    const k = Math.min(WINDOWS - 1, Math.max(0, Math.floor(((r.start + r.e2el - t0) / d) * WINDOWS)));
    bins[k]! += what === "tokens" ? r.outputTokens : 1;
  }
  return bins.map((b) => b / (durationS / WINDOWS));
}

export interface HeadlineMetric {
  key: string;
  higherIsBetter: boolean;
  /** the statistic of the run as reported */
  stat: Stat;
  /**
   * Throughputs are resampled over time windows (a request resample cannot move them when every
   * request has the same length); latencies over requests.
   */
  byWindow?: "tokens" | "requests";
  /** tail quantile: needs enough samples beyond it for a bootstrap to mean anything */
  tail?: number;
}

export const HEADLINE: HeadlineMetric[] = [
  {
    key: "output_throughput",
    higherIsBetter: true,
    stat: (r, d) => r.filter((x) => x.ok).reduce((s, x) => s + x.outputTokens, 0) / d,
    byWindow: "tokens",
  },
  {
    key: "request_throughput",
    higherIsBetter: true,
    stat: (r, d) => r.filter((x) => x.ok).length / d,
    byWindow: "requests",
  },
  ...(["ttft", "tpot", "itl", "e2el"] as const).flatMap((m) =>
    (["mean", "median", "p99"] as const).map((k) => ({
      key: `${k}_${m}_ms`,
      higherIsBetter: false,
      stat: latencyStat(m, k),
      ...(k === "p99" ? { tail: 0.99 } : {}),
    })),
  ),
];

/** A p99 needs this many samples beyond it in each run before its interval is trusted. */
export const MIN_TAIL_SAMPLES = 5;

export interface Run {
  name: string;
  records: readonly RequestRecord[];
  durationS: number;
}

export interface MetricComparison {
  metric: string;
  a: number;
  b: number;
  /** (b − a) / a */
  delta: number;
  ci: [number, number];
  significant: boolean;
  /** "B better", "B worse", "no difference" or "too few samples" (a tail with too little data) */
  verdict: string;
}

/** Requests grouped into BLOCKS runs of consecutive sends. */
const BLOCKS = 20;
function blocksOf(records: readonly RequestRecord[]): RequestRecord[][] {
  const sorted = [...records].sort((x, y) => x.start - y.start);
  const k = Math.max(1, Math.min(BLOCKS, sorted.length));
  const out: RequestRecord[][] = Array.from({ length: k }, () => []);
  sorted.forEach((r, i) => out[Math.floor((i * k) / sorted.length)]!.push(r));
  return out;
}

/**
 * A block bootstrap: whole blocks of consecutive requests are drawn, because requests in flight
 * together share the server's (and the host's) hiccups and are not independent samples.
 */
function resample(blocks: readonly RequestRecord[][], rng: Rng): RequestRecord[] {
  const out: RequestRecord[] = [];
  for (let i = 0; i < blocks.length; i++) {
    for (const r of blocks[Math.floor(rng.next() * blocks.length)]!) out.push(r);
  }
  return out;
}

function resampleNums(xs: readonly number[], rng: Rng): number[] {
  const n = xs.length;
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = xs[Math.floor(rng.next() * n)]!;
  return out;
}

function sampleCount(records: readonly RequestRecord[], key: string): number {
  const m = /_(ttft|tpot|itl|e2el)_ms$/.exec(key);
  return m ? valuesOf(records, m[1] as "ttft" | "tpot" | "itl" | "e2el").length : records.length;
}

export interface CompareOptions {
  iterations: number;
  /** confidence level, e.g. 0.95 */
  confidence: number;
  /** smallest relative change worth calling a difference, e.g. 0.02 */
  minEffect: number;
  seed: number;
}

export const COMPARE_DEFAULTS: CompareOptions = {
  iterations: 1000,
  confidence: 0.95,
  minEffect: 0.02,
  seed: 0,
};

/**
 * Latencies: a block bootstrap over consecutive requests (ITL samples move with their request).
 * Throughputs: a bootstrap over equal time windows of each run.
 */
export function compareRuns(a: Run, b: Run, o: CompareOptions = COMPARE_DEFAULTS): MetricComparison[] {
  const rng = makeRng(o.seed, "bootstrap");
  const itlSamples = Math.max(
    1,
    [...a.records, ...b.records].reduce((s, r) => s + r.itl.length, 0),
  );
  const out: MetricComparison[] = [];
  for (const h of HEADLINE) {
    const va = h.stat(a.records, a.durationS);
    const vb = h.stat(b.records, b.durationS);
    if (!Number.isFinite(va) || !Number.isFinite(vb) || va === 0) continue;
    // Pooled-ITL statistics cost a sort of every gap per iteration; fewer iterations keep compare quick.
    const iters = h.key.includes("itl")
      ? Math.max(200, Math.min(o.iterations, Math.floor(4e7 / itlSamples)))
      : o.iterations;
    const deltas: number[] = [];
    if (h.byWindow) {
      const wa = windowRates(a.records, a.durationS, h.byWindow);
      const wb = windowRates(b.records, b.durationS, h.byWindow);
      for (let i = 0; i < iters; i++) {
        const sa = mean(resampleNums(wa, rng));
        const sb = mean(resampleNums(wb, rng));
        if (sa !== 0) deltas.push((sb - sa) / sa);
      }
    } else {
      const ba = blocksOf(a.records);
      const bb = blocksOf(b.records);
      for (let i = 0; i < iters; i++) {
        const sa = h.stat(resample(ba, rng), a.durationS);
        const sb = h.stat(resample(bb, rng), b.durationS);
        if (Number.isFinite(sa) && Number.isFinite(sb) && sa !== 0) deltas.push((sb - sa) / sa);
      }
    }
    deltas.sort((x, y) => x - y);
    const alpha = (1 - o.confidence) / 2;
    // no resample with a finite ratio: an interval of nothing, written as [0, 0]
    const ci: [number, number] =
      deltas.length === 0
        ? [0, 0]
        : [percentileSorted(deltas, alpha * 100), percentileSorted(deltas, (1 - alpha) * 100)];
    const delta = (vb - va) / va;
    const tooFew =
      h.tail !== undefined &&
      Math.min(sampleCount(a.records, h.key), sampleCount(b.records, h.key)) * (1 - h.tail) <
        MIN_TAIL_SAMPLES;
    const significant = !tooFew && (ci[0] > 0 || ci[1] < 0) && Math.abs(delta) >= o.minEffect;
    const better = h.higherIsBetter ? delta > 0 : delta < 0;
    out.push({
      metric: h.key,
      a: va,
      b: vb,
      delta,
      ci,
      significant,
      verdict: tooFew ? "too few samples" : significant ? (better ? "B better" : "B worse") : "no difference",
    });
  }
  return out;
}

const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;

export function compareTable(a: Run, b: Run, rows: MetricComparison[], o: CompareOptions): string {
  const head = `A: ${a.name} (${a.records.length} requests)\nB: ${b.name} (${b.records.length} requests)\n`;
  const cols = ["metric", "A", "B", "change", `${Math.round(o.confidence * 100)}% CI`, "verdict"];
  const w = [22, 12, 12, 9, 20, 14];
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(" ");
  const body = rows.map((r) =>
    line([
      r.metric,
      r.a.toFixed(2),
      r.b.toFixed(2),
      pct(r.delta),
      `[${pct(r.ci[0])}, ${pct(r.ci[1])}]`,
      r.verdict,
    ]),
  );
  const n = rows.filter((r) => r.significant).length;
  const foot =
    n === 0
      ? `No difference beyond noise (bootstrap, ${o.iterations} resamples, minimum effect ${pct(o.minEffect).slice(1)}).`
      : `${n} of ${rows.length} metrics differ beyond noise (bootstrap, ${o.iterations} resamples, minimum effect ${pct(o.minEffect).slice(1)}).`;
  return `${head}\n${line(cols)}\n${body.join("\n")}\n\n${foot}`;
}
