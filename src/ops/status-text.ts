// `switchyard status` as people read it: the router's rates and latencies on two lines, one row per
// engine, then the warnings. Columns are as wide as their widest cell; no colour, so the output pastes
// cleanly into tickets.
import type { EngineStatus, StatusReport } from "./fleet-status.js";

function pct(v: number | null, digits = 0): string {
  return v === null ? "-" : `${(v * 100).toFixed(digits)}%`;
}

function rate(v: number | null): string {
  return v === null ? "-" : v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function dur(msValue: number | null): string {
  if (msValue === null) return "-";
  if (msValue < 1) return `${msValue.toFixed(2)} ms`;
  if (msValue < 1000) return `${msValue.toFixed(msValue < 10 ? 1 : 0)} ms`;
  return `${(msValue / 1000).toFixed(2)} s`;
}

/** `http://10.0.0.7:8000` → `10.0.0.7:8000`: the scheme says nothing in a table of engines. */
function host(url: string): string {
  return url.replace(/^https?:\/\//, "").replace(/\/+$/, "");
}

function routing(e: EngineStatus): string {
  if (e.routingMode === null) return "-";
  if (e.routingMode === "kv") return "kv";
  return e.kvFallback ? `prefix (${e.kvFallback})` : "prefix";
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  // numbers right-aligned, words left-aligned, judged by the first data row
  const numeric = rows[1]?.map((cell) => /^[-\d.,/%\s]+$/.test(cell) && cell !== "-") ?? [];
  return rows.map((r) =>
    r
      .map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join("  ")
      .trimEnd(),
  );
}

export function renderStatus(r: StatusReport): string {
  const s = r.routerStats;
  const lines: string[] = [];
  const span = s.windowS > 0 ? `over the last ${s.windowS.toFixed(1)} s` : "totals since start";
  lines.push(
    `Switchyard router ${r.router}: ${r.summary.healthy} of ${r.summary.engines} engines in rotation   (${r.time.slice(11, 19)} UTC, ${span})`,
  );
  const reqs =
    s.requestsPerS === null
      ? `${s.requestsTotal} requests`
      : `${rate(s.requestsPerS)} req/s, 5xx ${rate(s.errorsPerS)}/s, rejected ${rate(s.rejectedPerS)}/s, retries ${rate(s.retriesPerS)}/s`;
  lines.push(`  requests  ${reqs}; in flight ${s.inFlight ?? "-"}, queued ${s.queueDepth ?? "-"}`);
  const latSpan =
    s.latencySpan === "total" && s.windowS > 0 ? " (no request finished in the window: since start)" : "";
  lines.push(
    `  latency   TTFT p50 ${dur(s.ttftP50Ms)} p99 ${dur(s.ttftP99Ms)}, ITL p50 ${dur(s.itlP50Ms)}, E2E p50 ${dur(s.e2eP50Ms)} p99 ${dur(s.e2eP99Ms)}${latSpan}`,
  );
  lines.push("");
  if (r.engines.length === 0) lines.push("  no engines");
  else {
    const rows = [
      [
        "ENGINE",
        "MODEL",
        "ROLE",
        "STATE",
        "IN FLIGHT",
        "RUN/WAIT",
        "KV",
        "PREFIX HIT",
        "SHARE",
        "EJECTED",
        "ROUTING",
        "KV EVENTS",
      ],
      ...r.engines.map((e) => [
        host(e.url),
        e.models.join(",") || "-",
        e.role,
        e.state,
        String(e.inFlight),
        `${e.running}/${e.waiting}`,
        pct(e.kvUsage, 1),
        pct(e.prefixHitRate, 1),
        pct(e.routingShare),
        String(e.ejections),
        routing(e),
        e.kvEventsFrom ?? "-",
      ]),
    ];
    for (const l of table(rows)) lines.push(`  ${l}`);
  }
  lines.push(...loraLines(r));
  lines.push(...autoscaleLines(r));
  lines.push("");
  if (r.warnings.length === 0) lines.push("  no warnings");
  else {
    lines.push("  warnings:");
    for (const w of r.warnings) lines.push(`  ! ${w.engine ? `${host(w.engine)}: ` : ""}${w.message}`);
  }
  return lines.join("\n");
}

/** the SLO autoscaling decision per pool and its reason; none when the router runs none */
function autoscaleLines(r: StatusReport): string[] {
  const a = r.autoscale;
  if (!a) return [];
  const lines = [
    "",
    `  autoscaling to TTFT p90 ${dur(a.slo.ttftP90Ms)}, TPOT p90 ${dur(a.slo.tpotP90Ms)}, ${a.minReplicas}-${a.maxReplicas} replicas per pool:`,
  ];
  if (a.pools.length === 0) lines.push("  no pool decided yet");
  for (const p of a.pools)
    lines.push(`  ${p.model} (${p.role}): ${p.current} -> ${p.desired} replicas: ${p.reason}`);
  return lines;
}

/** adapter names shown per cell at most; the count says how many there are */
const NAMES_SHOWN = 6;

function names(xs: readonly string[], count = xs.length): string {
  if (count === 0) return "-";
  const shown = xs.slice(-NAMES_SHOWN).join(",");
  return count > NAMES_SHOWN ? `${count}: …${shown}` : shown;
}

/** the LoRA lines: each engine's adapters, then the routing share per adapter; none without LoRA */
function loraLines(r: StatusReport): string[] {
  const engines = r.engines.filter((e) => e.lora !== null);
  if (engines.length === 0 && !r.adapters) return [];
  const out = ["", "  LoRA adapters per engine:"];
  const rows = [
    ["ENGINE", "SLOTS", "HOST CACHE", "LOADED", "RUNNING", "WAITING"],
    ...engines.map((e) => {
      const l = e.lora!;
      return [
        host(e.url),
        l.maxLoras === null ? "-" : String(l.maxLoras),
        l.maxCpuLoras === null ? "-" : String(l.maxCpuLoras),
        l.loaded === null
          ? "-"
          : names(l.loaded, l.loadedCount ?? l.loaded.length) +
            (l.loading.length ? ` (+${l.loading.length} loading)` : ""),
        names(l.running),
        names(l.waiting),
      ];
    }),
  ];
  if (engines.length) for (const l of table(rows)) out.push(`  ${l}`);
  const a = r.adapters;
  if (a) {
    const span = a.span === "window" ? "over the window" : "since the router started";
    out.push("", `  adapter routing share (${a.requests} requests ${span}):`);
    out.push(
      ...table([
        ["ADAPTER", "REQUESTS", "SHARE"],
        ...a.adapters.map((x) => [x.adapter, String(x.requests), pct(x.share, 1)]),
      ]).map((l) => `  ${l}`),
    );
  }
  return out;
}
