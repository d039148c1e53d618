// Turns request records into vllm bench serve's result fields. Definitions (vllm bench serve):
// TTFT = send → first output chunk; TPOT = (E2EL − TTFT) / (output tokens − 1) for outputs of 2+
// tokens; ITL = every gap between output chunks, pooled over requests; E2EL = send → end of stream.
// Throughputs divide by the run's duration (first send → last completion). Goodput counts requests
// meeting every SLO bound (a 1-token output has TPOT 0, as in vllm). Empty sets report 0, as vllm does.
import { tpotOf, type RequestRecord } from "./record.js";
import { mean, percentileSorted, std } from "./stats.js";
import { InvalidConfigError } from "../errors/index.js";

export const LATENCY_METRICS = ["ttft", "tpot", "itl", "e2el"] as const;
export type LatencyMetric = (typeof LATENCY_METRICS)[number];

export const DEFAULT_PERCENTILES = [90, 95, 99];

export interface Slo {
  ttft?: number;
  tpot?: number;
  e2el?: number;
}

/** Parses `ttft:500,tpot:50,e2el:3000` (ms; commas or spaces between pairs). */
export function parseSlo(text: string): Slo {
  const slo: Slo = {};
  for (const part of text.split(/[\s,]+/).filter(Boolean)) {
    const m = /^(ttft|tpot|e2el):([0-9]+(?:\.[0-9]+)?)$/.exec(part.trim());
    if (!m)
      throw new InvalidConfigError(`--slo: cannot read '${part}' (expected ttft:MS, tpot:MS or e2el:MS)`);
    slo[m[1] as keyof Slo] = Number(m[2]);
  }
  return slo;
}

/** Per-metric samples in ms, pooled as vllm bench pools them. */
export function samplesOf(records: readonly RequestRecord[]): Record<LatencyMetric, number[]> {
  const out: Record<LatencyMetric, number[]> = { ttft: [], tpot: [], itl: [], e2el: [] };
  for (const r of records) {
    if (!r.ok) continue;
    out.ttft.push(r.ttft);
    out.e2el.push(r.e2el);
    const t = tpotOf(r);
    if (t !== null) out.tpot.push(t);
    for (const g of r.itl) out.itl.push(g);
  }
  return out;
}

export function meetsSlo(r: RequestRecord, slo: Slo): boolean {
  if (!r.ok) return false;
  if (slo.ttft !== undefined && r.ttft > slo.ttft) return false;
  if (slo.tpot !== undefined && (tpotOf(r) ?? 0) > slo.tpot) return false;
  if (slo.e2el !== undefined && r.e2el > slo.e2el) return false;
  return true;
}

export type MetricFields = Record<string, number | null | Record<string, number>>;

export function summarize(
  records: readonly RequestRecord[],
  durationS: number,
  slo: Slo | null,
  percentiles: readonly number[] = DEFAULT_PERCENTILES,
): MetricFields {
  const ok = records.filter((r) => r.ok);
  const totalIn = ok.reduce((s, r) => s + r.promptTokens, 0);
  const totalOut = ok.reduce((s, r) => s + r.outputTokens, 0);
  const d = durationS > 0 ? durationS : NaN;
  const errors: Record<string, number> = {};
  for (const r of records)
    if (!r.ok) errors[r.errorKind ?? "other"] = (errors[r.errorKind ?? "other"] ?? 0) + 1;
  const f: MetricFields = {
    duration: durationS,
    completed: ok.length,
    failed: records.length - ok.length,
    total_input_tokens: totalIn,
    total_output_tokens: totalOut,
    request_throughput: ok.length / d || 0,
    request_goodput: slo ? ok.filter((r) => meetsSlo(r, slo)).length / d || 0 : null,
    output_throughput: totalOut / d || 0,
    total_token_throughput: (totalIn + totalOut) / d || 0,
    errors_by_kind: errors,
  };
  const s = samplesOf(records);
  for (const m of LATENCY_METRICS) {
    const sorted = Float64Array.from(s[m]).sort();
    const xs = Array.from(sorted);
    // vllm bench serve writes 0 where no request succeeded (`np.percentile(ttfts or 0, p)`)
    const at = (p: number) => (xs.length === 0 ? 0 : percentileSorted(xs, p));
    f[`mean_${m}_ms`] = mean(xs);
    f[`median_${m}_ms`] = at(50);
    f[`std_${m}_ms`] = std(xs);
    for (const p of percentiles) f[`p${String(p)}_${m}_ms`] = at(p);
  }
  return f;
}
