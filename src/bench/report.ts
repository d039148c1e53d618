// Result files and the printed summary. The JSON keeps vllm bench serve's field names (so existing
// tooling reads it) plus the full configuration, server-side figures, client overhead and the
// per-request samples that `compare` bootstraps from.
import { LATENCY_METRICS, type MetricFields } from "../workload/metrics.js";
import { tpotOf, type RequestRecord } from "../workload/record.js";
import { percentile } from "../workload/stats.js";
import type { ServerFigures } from "./scrape.js";

export interface ClientFigures {
  event_loop_delay_p50_ms: number;
  event_loop_delay_p99_ms: number;
  event_loop_delay_max_ms: number;
  connections: number;
  max_in_flight: number;
}

/**
 * Agent sessions' resumed turns (sent after a tool pause): where a router kept the session's KV the turn
 * prefills only what the tool added, where it lost it the whole context again. The other turns (a
 * session's first, a sub-agent's) beside them for scale.
 */
export interface ResumedFigures {
  resumed_turns: number;
  resumed_ttft_p50_ms: number;
  resumed_ttft_p90_ms: number;
  other_turns: number;
  other_ttft_p50_ms: number;
}

/** Resumed-turn TTFTs of the successful requests; null when no turn waited for a tool. */
export function resumedFigures(records: readonly RequestRecord[]): ResumedFigures | null {
  const resumed: number[] = [];
  const other: number[] = [];
  for (const r of records) if (r.ok) (r.resumed ? resumed : other).push(r.ttft);
  if (resumed.length === 0) return null;
  return {
    resumed_turns: resumed.length,
    resumed_ttft_p50_ms: percentile(resumed, 50),
    resumed_ttft_p90_ms: percentile(resumed, 90),
    other_turns: other.length,
    // a number in the JSON: 0 where every turn was resumed, as vllm bench serve writes empty figures
    other_ttft_p50_ms: other.length === 0 ? 0 : percentile(other, 50),
  };
}

export interface BenchResult extends Record<string, unknown> {
  date: string;
  backend: string;
  base_url: string;
  model_id: string;
  workload: string;
  request_rate: number | "inf";
  burstiness: number;
  max_concurrency: number | null;
  config: Record<string, unknown>;
  server: ServerFigures | null;
  client: ClientFigures;
  /** agent sessions' resumed turns; null when no turn waited for a tool */
  resumed: ResumedFigures | null;
  input_lens: number[];
  output_lens: number[];
  ttfts: number[];
  itls: number[][];
  e2els: number[];
  start_times: number[];
  session_ids: string[];
  errors: string[];
  /**
   * the engine's own per-request timing, s (0 where a request has none), present where the engine
   * returned it (vLLM's `--enable-per-request-metrics`): queue + prefill, and decode time / (output − 1)
   */
  engine_ttfts?: number[];
  engine_tpots?: number[];
}

const r6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** Per-request arrays in vllm's units (seconds), aligned by request. */
export function sampleArrays(records: readonly RequestRecord[]) {
  return {
    input_lens: records.map((r) => r.promptTokens),
    output_lens: records.map((r) => r.outputTokens),
    ttfts: records.map((r) => (Number.isFinite(r.ttft) ? r6(r.ttft / 1000) : 0)),
    itls: records.map((r) => r.itl.map((g) => r6(g / 1000))),
    e2els: records.map((r) => (Number.isFinite(r.e2el) ? r6(r.e2el / 1000) : 0)),
    start_times: records.map((r) => r6(r.start / 1000)),
    session_ids: records.map((r) => r.sessionId),
    errors: records.map((r) => (r.ok ? "" : `${r.errorKind}: ${r.error}`)),
    ...(records.some((r) => r.engineTtft !== undefined || r.engineTpot !== undefined)
      ? {
          engine_ttfts: records.map((r) => r6((r.engineTtft ?? 0) / 1000)),
          engine_tpots: records.map((r) => r6((r.engineTpot ?? 0) / 1000)),
        }
      : {}),
  };
}

/** Rebuilds records from a result file's sample arrays (for compare and plots). */
export function recordsFromResult(res: Record<string, unknown>): RequestRecord[] {
  const arr = <T>(k: string): T[] => (Array.isArray(res[k]) ? (res[k] as T[]) : []);
  const ttfts = arr<number>("ttfts");
  const e2els = arr<number>("e2els");
  const itls = arr<number[]>("itls");
  const outs = arr<number>("output_lens");
  const ins = arr<number>("input_lens");
  const errors = arr<string>("errors");
  const starts = arr<number>("start_times");
  const ids = arr<string>("session_ids");
  if (ttfts.length === 0) return [];
  return ttfts.map((t, i) => {
    const ok = (errors[i] ?? "") === "";
    return {
      index: i,
      sessionId: ids[i] ?? "",
      round: 0,
      start: (starts[i] ?? 0) * 1000,
      ok,
      ttft: t * 1000,
      itl: (itls[i] ?? []).map((g) => g * 1000),
      e2el: (e2els[i] ?? 0) * 1000,
      promptTokens: ins[i] ?? 0,
      outputTokens: outs[i] ?? 0,
      usageReported: true,
      httpStatus: ok ? 200 : 0,
      errorKind: ok ? null : "other",
      error: errors[i] ?? "",
    };
  });
}

const NAMES: Record<string, [string, string]> = {
  ttft: ["Time to First Token", "TTFT"],
  tpot: ["Time per Output Token (excl. 1st token)", "TPOT"],
  itl: ["Inter-token Latency", "ITL"],
  e2el: ["End-to-end Latency", "E2EL"],
};

function row(label: string, value: string): string {
  return `${label.padEnd(40)} ${value}`;
}

function num(v: unknown, digits = 2): string {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "n/a";
}

function banner(title: string, fill = "-"): string {
  const width = 50;
  const pad = Math.max(0, width - title.length);
  return `${fill.repeat(Math.floor(pad / 2))}${title}${fill.repeat(Math.ceil(pad / 2))}`;
}

/** The summary table, laid out as vllm bench serve prints it. */
export function summaryTable(
  f: MetricFields,
  server: ServerFigures | null,
  client: ClientFigures,
  resumed: ResumedFigures | null = null,
): string {
  const lines = [banner(" Serving Benchmark Result ", "=")];
  lines.push(row("Successful requests:", String(f.completed)));
  lines.push(row("Failed requests:", String(f.failed)));
  const errs = f.errors_by_kind as Record<string, number>;
  for (const [k, n] of Object.entries(errs)) lines.push(row(`  ${k}:`, String(n)));
  lines.push(row("Benchmark duration (s):", num(f.duration)));
  lines.push(row("Total input tokens:", String(f.total_input_tokens)));
  lines.push(row("Total generated tokens:", String(f.total_output_tokens)));
  lines.push(row("Request throughput (req/s):", num(f.request_throughput)));
  if (f.request_goodput !== null) lines.push(row("Request goodput (req/s):", num(f.request_goodput)));
  lines.push(row("Output token throughput (tok/s):", num(f.output_throughput)));
  lines.push(row("Total Token throughput (tok/s):", num(f.total_token_throughput)));
  for (const m of LATENCY_METRICS) {
    const [title, short] = NAMES[m]!;
    lines.push(banner(title));
    lines.push(row(`Mean ${short} (ms):`, num(f[`mean_${m}_ms`])));
    lines.push(row(`Median ${short} (ms):`, num(f[`median_${m}_ms`])));
    for (const k of Object.keys(f)) {
      const p = new RegExp(`^p([0-9.]+)_${m}_ms$`).exec(k);
      if (p) lines.push(row(`P${p[1]} ${short} (ms):`, num(f[k])));
    }
  }
  if (resumed) {
    lines.push(banner("Resumed turns (after a tool pause)"));
    lines.push(row("Resumed turns:", String(resumed.resumed_turns)));
    lines.push(row("Median resumed TTFT (ms):", num(resumed.resumed_ttft_p50_ms)));
    lines.push(row("P90 resumed TTFT (ms):", num(resumed.resumed_ttft_p90_ms)));
    lines.push(row("Median TTFT of other turns (ms):", num(resumed.other_ttft_p50_ms)));
  }
  if (server) {
    lines.push(banner("Server side (/metrics)"));
    const pct = server.prefix_cache_hit_rate;
    lines.push(row("Prefix cache hit rate:", pct === null ? "n/a" : `${(pct * 100).toFixed(1)} %`));
    for (const e of server.engines ?? []) {
      const r = e.prefix_cache_hit_rate;
      lines.push(
        row(`  ${e.url.replace(/^https?:\/\//, "")}:`, r === null ? "n/a" : `${(r * 100).toFixed(1)} %`),
      );
    }
    lines.push(row("Preemptions:", server.num_preemptions === null ? "n/a" : String(server.num_preemptions)));
    if (server.router_retries !== null) lines.push(row("Router retries:", String(server.router_retries)));
    lines.push(row("Engine mean TTFT (ms):", num(server.mean_ttft_ms)));
    lines.push(row("Engine mean ITL (ms):", num(server.mean_itl_ms)));
  }
  lines.push(banner("Client"));
  lines.push(
    row(
      "Event-loop delay p99 / max (ms):",
      `${num(client.event_loop_delay_p99_ms)} / ${num(client.event_loop_delay_max_ms)}`,
    ),
  );
  lines.push(row("Max requests in flight:", String(client.max_in_flight)));
  lines.push("=".repeat(50));
  return lines.join("\n");
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(records: readonly RequestRecord[]): string {
  const head =
    "index,session_id,round,start_ms,ok,http_status,error_kind,prompt_tokens,output_tokens,ttft_ms,tpot_ms,e2el_ms,itl_mean_ms,itl_max_ms,error";
  const n3 = (x: number | null) => (x === null || !Number.isFinite(x) ? "" : x.toFixed(3));
  const rows = records.map((r) => {
    const itlMean = r.itl.length ? r.itl.reduce((a, b) => a + b, 0) / r.itl.length : null;
    const itlMax = r.itl.length ? Math.max(...r.itl) : null;
    return [
      r.index,
      csvField(r.sessionId),
      r.round,
      n3(r.start),
      r.ok ? 1 : 0,
      r.httpStatus,
      r.errorKind ?? "",
      r.promptTokens,
      r.outputTokens,
      n3(r.ttft),
      n3(tpotOf(r)),
      n3(r.e2el),
      n3(itlMean),
      n3(itlMax),
      csvField(r.error),
    ].join(",");
  });
  return `${head}\n${rows.join("\n")}\n`;
}
