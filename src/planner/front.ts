// The trade-off a plan searched along: every layout it simulated to the end (aggregated and
// disaggregated, each engine count tried), placed by output tokens/s per GPU (what the fleet earns for
// its GPUs) against tokens/s per user (1000 ÷ mean TPOT, how fast each answer streams), and the
// Pareto front over them (no other layout tried is better on both). The SLO's TPOT bound is a vertical
// line (layouts left of it stream too slowly); the chosen layout is marked. Runs stopped early (certain
// to miss) are not on it: their throughput covers only the requests finished by then.
import { renderPanels, type Series } from "../bench/svg.js";
import { gpusOf, type FleetChoice } from "./input.js";
import { label, type Evaluated } from "./search.js";
import type { SloTargets } from "./slo.js";

export interface FrontPoint {
  layout: string;
  kind: "aggregated" | "disaggregated";
  offload: string;
  gpus: number;
  output_tok_s_per_gpu: number;
  tok_s_per_user: number;
  ttft_p90_ms: number;
  tpot_p90_ms: number;
  slo_met: boolean | null;
  on_front: boolean;
  chosen: boolean;
}

export interface Front {
  /** the TPOT bound (less headroom) as tokens/s per user; null without an SLO */
  slo_tok_s_per_user: number | null;
  points: FrontPoint[];
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

export function frontOf(
  tried: Iterable<Evaluated>,
  chosen: FleetChoice,
  chosenMode: string,
  targets: SloTargets | null,
): Front {
  const want = `${label(chosen)} ${chosenMode}`;
  const points: FrontPoint[] = [];
  for (const e of tried) {
    const b = e.report.bench;
    const tpot = num(b.mean_tpot_ms);
    if (!(tpot > 0)) continue;
    points.push({
      layout: label(e.fleet),
      kind: e.fleet.pd ? "disaggregated" : "aggregated",
      offload: e.mode,
      gpus: gpusOf(e.fleet),
      output_tok_s_per_gpu: num(b.output_throughput) / gpusOf(e.fleet),
      tok_s_per_user: 1000 / tpot,
      ttft_p90_ms: e.predicted.ttft_p90_ms,
      tpot_p90_ms: e.predicted.tpot_p90_ms,
      slo_met: e.check ? e.check.met : null,
      on_front: false,
      chosen: `${label(e.fleet)} ${e.mode}` === want,
    });
  }
  for (const p of points)
    p.on_front = !points.some(
      (q) =>
        q !== p &&
        q.tok_s_per_user >= p.tok_s_per_user &&
        q.output_tok_s_per_gpu >= p.output_tok_s_per_gpu &&
        (q.tok_s_per_user > p.tok_s_per_user || q.output_tok_s_per_gpu > p.output_tok_s_per_gpu),
    );
  points.sort(
    (a, b) => a.tok_s_per_user - b.tok_s_per_user || b.output_tok_s_per_gpu - a.output_tok_s_per_gpu,
  );
  return { slo_tok_s_per_user: targets ? 1000 / targets.tpot : null, points };
}

/** the front as an SVG chart: the layouts tried by kind, the front as a line, the SLO line, the choice */
export function frontSvg(title: string, f: Front): string {
  const xy = (p: FrontPoint): [number, number] => [p.tok_s_per_user, p.output_tok_s_per_gpu];
  const series: Series[] = [
    {
      name: "aggregated",
      points: f.points.filter((p) => p.kind === "aggregated").map(xy),
      scatter: true,
    },
    {
      name: "disaggregated (P/D)",
      points: f.points.filter((p) => p.kind === "disaggregated").map(xy),
      scatter: true,
    },
    { name: "Pareto front", points: f.points.filter((p) => p.on_front).map(xy) },
  ];
  const top = Math.max(1, ...f.points.map((p) => p.output_tok_s_per_gpu));
  if (f.slo_tok_s_per_user !== null)
    series.push({
      name: "SLO: TPOT p90 bound",
      points: [
        [f.slo_tok_s_per_user, 0],
        [f.slo_tok_s_per_user, top],
      ],
      dashed: true,
    });
  const chosen = f.points.filter((p) => p.chosen).map(xy);
  if (chosen.length) series.push({ name: "chosen", points: chosen, scatter: true });
  return renderPanels(title, [
    {
      title: "output tokens/s per GPU against tokens/s per user",
      xLabel: "tokens/s per user (1000 / mean TPOT)",
      yLabel: "output tokens/s per GPU",
      series,
    },
  ]);
}
