// Plots as plain SVG with no dependencies: panels of line charts (latency CDFs, sweep curves).
// Large sample sets are thinned to at most MAX_POINTS per line so the files stay small.
import { LATENCY_METRICS, samplesOf } from "../workload/metrics.js";
import type { RequestRecord } from "../workload/record.js";

export interface Series {
  name: string;
  points: [number, number][];
  dashed?: boolean;
  /** points only, no line between them (a scatter of the layouts a plan tried) */
  scatter?: boolean;
}

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** fixed y range (CDFs use 0..1) */
  yRange?: [number, number];
  /** legend corner: top-right by default; bottom-right for CDFs, whose curves fill the top */
  legend?: "top" | "bottom";
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const MAX_POINTS = 400;
const PW = 440;
const PH = 300;
const M = { l: 64, r: 16, t: 34, b: 48 };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, want = 5): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / want;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 10000) return `${(v / 1000).toFixed(a >= 100000 ? 0 : 1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return String(Number(v.toFixed(2)));
  return String(Number(v.toPrecision(2)));
}

function thin(points: [number, number][]): [number, number][] {
  if (points.length <= MAX_POINTS) return points;
  const out: [number, number][] = [];
  const step = (points.length - 1) / (MAX_POINTS - 1);
  for (let i = 0; i < MAX_POINTS; i++) out.push(points[Math.round(i * step)]!);
  return out;
}

function panelSvg(p: Panel, ox: number, oy: number): string {
  const all = p.series.flatMap((s) => s.points);
  // Loops, not Math.max(...xs): pooled ITL samples can exceed the engine's argument limit.
  let xMin = 0;
  let xMaxRaw = all.length ? -Infinity : 1;
  let yLo = 0;
  let yHi = all.length ? -Infinity : 1;
  for (const [x, y] of all) {
    if (x < xMin) xMin = x;
    if (x > xMaxRaw) xMaxRaw = x;
    if (y < yLo) yLo = y;
    if (y > yHi) yHi = y;
  }
  const [yMin, yMaxRaw] = p.yRange ?? [yLo, yHi];
  const xt = niceTicks(xMin, xMaxRaw > xMin ? xMaxRaw : xMin + 1);
  const yt = niceTicks(yMin, yMaxRaw > yMin ? yMaxRaw : yMin + 1);
  const x0 = xt[0]!;
  const x1 = Math.max(xt[xt.length - 1]!, xMaxRaw);
  const y0 = p.yRange ? yMin : yt[0]!;
  const y1 = p.yRange ? yMaxRaw : Math.max(yt[yt.length - 1]!, yMaxRaw);
  const w = PW - M.l - M.r;
  const h = PH - M.t - M.b;
  const sx = (x: number) => ox + M.l + ((x - x0) / (x1 - x0 || 1)) * w;
  const sy = (y: number) => oy + M.t + h - ((y - y0) / (y1 - y0 || 1)) * h;
  const parts: string[] = [];
  parts.push(
    `<text x="${ox + PW / 2}" y="${oy + 20}" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`,
  );
  for (const t of xt) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" y1="${oy + M.t}" x2="${x}" y2="${oy + M.t + h}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${x}" y="${oy + M.t + h + 16}" text-anchor="middle" font-size="11">${fmt(t)}</text>`,
    );
  }
  for (const t of yt) {
    if (t < y0 - 1e-12 || t > y1 + 1e-12) continue;
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${ox + M.l}" y1="${y}" x2="${ox + M.l + w}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${ox + M.l - 6}" y="${y}" dy="4" text-anchor="end" font-size="11">${fmt(t)}</text>`);
  }
  parts.push(
    `<rect x="${ox + M.l}" y="${oy + M.t}" width="${w}" height="${h}" fill="none" stroke="#888"/>`,
    `<text x="${ox + M.l + w / 2}" y="${oy + PH - 10}" text-anchor="middle" font-size="12">${esc(p.xLabel)}</text>`,
    `<text transform="translate(${ox + 16},${oy + M.t + h / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(p.yLabel)}</text>`,
  );
  p.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = thin(s.points)
      .map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
      .join(" ");
    if (pts && s.scatter) {
      for (const [x, y] of thin(s.points))
        parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="4" fill="${color}"/>`);
    } else if (pts) {
      parts.push(
        `<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""}/>`,
      );
      if (s.points.length <= 20) {
        for (const [x, y] of s.points)
          parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
      }
    }
    const ly =
      p.legend === "bottom" ? oy + M.t + h - 8 - (p.series.length - 1 - i) * 16 : oy + M.t + 14 + i * 16;
    const lx = ox + M.l + w - 150;
    parts.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 18}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""}/>`,
      `<text x="${lx + 24}" y="${ly}" font-size="11">${esc(s.name.slice(0, 22))}</text>`,
    );
  });
  return parts.join("\n");
}

/** Lays panels out in a grid, two a row. */
export function renderPanels(title: string, panels: Panel[], cols = 2): string {
  const c = Math.min(cols, panels.length) || 1;
  const rows = Math.ceil(panels.length / c);
  const W = c * PW;
  const H = rows * PH + 30;
  const body = panels.map((p, i) => panelSvg(p, (i % c) * PW, 30 + Math.floor(i / c) * PH)).join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="15">${esc(title)}</text>
${body}
</svg>
`;
}

/** Empirical CDF points of a sample. */
export function cdfPoints(xs: readonly number[]): [number, number][] {
  const s = Float64Array.from(xs).sort();
  const n = s.length;
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) out.push([s[i]!, (i + 1) / n]);
  return out;
}

const CDF_TITLES: Record<string, string> = {
  ttft: "TTFT",
  tpot: "TPOT",
  itl: "ITL",
  e2el: "E2E latency",
};

/** Latency CDFs (TTFT, TPOT, ITL, E2EL) for one or more labelled runs, overlaid per panel. */
export function latencyCdfSvg(
  title: string,
  runs: { name: string; records: readonly RequestRecord[] }[],
): string {
  const samples = runs.map((r) => ({ name: r.name, s: samplesOf(r.records) }));
  const panels: Panel[] = LATENCY_METRICS.map((m) => ({
    title: `${CDF_TITLES[m]} CDF`,
    xLabel: `${CDF_TITLES[m]} (ms)`,
    yLabel: "fraction of samples",
    yRange: [0, 1],
    legend: "bottom",
    series: samples.map((r, i) => ({
      name: r.name,
      points: cdfPoints(r.s[m]),
      dashed: i > 0 && i % 2 === 1,
    })),
  }));
  return renderPanels(title, panels);
}

export interface SweepPoint {
  qps: number;
  output_throughput: number;
  request_throughput: number;
  mean_ttft_ms: number;
  p99_ttft_ms: number;
}

/** Throughput and TTFT versus offered QPS for a sweep. */
export function sweepSvg(title: string, points: readonly SweepPoint[]): string {
  const pts = points.filter((p) => Number.isFinite(p.qps));
  return renderPanels(title, [
    {
      title: "Throughput vs offered load",
      xLabel: "offered QPS (req/s)",
      yLabel: "output tokens/s",
      series: [{ name: "output tok/s", points: pts.map((p) => [p.qps, p.output_throughput]) }],
    },
    {
      title: "TTFT vs offered load",
      xLabel: "offered QPS (req/s)",
      yLabel: "TTFT (ms)",
      series: [
        { name: "mean TTFT", points: pts.map((p) => [p.qps, p.mean_ttft_ms]) },
        { name: "p99 TTFT", points: pts.map((p) => [p.qps, p.p99_ttft_ms]), dashed: true },
      ],
    },
  ]);
}
