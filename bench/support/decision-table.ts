// The routing decisions of a run, summed up the same way whether the fleet simulator made them or the
// live router did: predicted against observed TTFT by how full the picked engine's KV was (as the
// router last scraped it), and how long requests waited in the router before their pick (late
// binding's holds). The two tables side by side say where the simulator and a live run part: a
// prediction that is right in one and wrong in the other, or holds that one has and the other not.
// Live rows come from the router's log at debug level: its "routed" line (the decision's note, with
// the request id) joined to its access line (TTFT, time queued) by that id.
import { percentile } from "../../src/workload/stats.js";

export interface DecisionRow {
  /** the picked engine's KV in use, as the router saw it (0..1) */
  kvUsage: number;
  /** the TTFT the policy predicted there, ms (NaN: the policy predicts none) */
  predictedMs: number;
  /** the TTFT that came, counted from the pick, ms */
  fromPickMs: number;
  /** how long the request waited in the router before its pick, ms */
  heldMs: number;
}

/** KV in use at the pick: where the engine has room, where it is filling, where it is full */
const BUCKETS: readonly [number, number][] = [
  [0, 0.8],
  [0.8, 0.95],
  [0.95, Infinity],
];

/** NaN where there is nothing to take the median of */
const median = (xs: number[]) => (xs.length ? percentile(xs, 50) : NaN);
const ms = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "—");

/** A markdown table: one line per KV bucket, then the router's holds. */
export function decisionTable(rows: readonly DecisionRow[]): string[] {
  const out = [
    "| KV in use at the pick | picks | observed ÷ predicted TTFT, median | predicted TTFT p50 ms | TTFT from the pick p50 / p90 ms |",
    "|---|---|---|---|---|",
  ];
  for (const [lo, hi] of BUCKETS) {
    const b = rows.filter((r) => r.kvUsage >= lo && r.kvUsage < hi);
    if (b.length === 0) continue;
    const predicted = b.filter((r) => r.predictedMs > 0);
    const ratio = median(predicted.map((r) => r.fromPickMs / r.predictedMs));
    const predictedP50 = median(predicted.map((r) => r.predictedMs));
    const from = b.map((r) => r.fromPickMs);
    const bucket = hi === Infinity ? `≥ ${lo * 100}%` : `${lo * 100}–${hi * 100}%`;
    const times = Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : "—";
    out.push(
      `| ${bucket} | ${b.length} | ${times} | ${ms(predictedP50)} | ${ms(median(from))} / ${ms(percentile(from, 90))} |`,
    );
  }
  const held = rows.map((r) => r.heldMs);
  const some = held.filter((h) => h > 0).length;
  out.push(
    "",
    `held in the router before the pick: ${some} of ${rows.length} requests; p75 ${ms(percentile(held, 75))} ms, p90 ${ms(percentile(held, 90))} ms, longest ${ms(Math.max(0, ...held))} ms`,
  );
  return out;
}

/** one `key=value; key=value` routing note as a map */
function noteFields(note: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of note.split("; ")) {
    const eq = part.indexOf("=");
    if (eq > 0) m.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return m;
}

/**
 * The decisions in a router's log (pino JSON lines, debug level): each generation request's last
 * "routed" line joined to its access line. Requests without either, or whose note carries no KV figure
 * (a policy that reads no cache), are left out.
 */
export function rowsFromRouterLog(text: string): DecisionRow[] {
  const routed = new Map<string, Map<string, string>>();
  const access: { requestId: string; ttftMs: number; queuedMs: number }[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (j.msg === "routed" && typeof j.requestId === "string" && typeof j.note === "string")
      routed.set(j.requestId, noteFields(j.note));
    else if (
      j.msg === "request" &&
      typeof j.requestId === "string" &&
      typeof j.ttftMs === "number" &&
      typeof j.path === "string" &&
      /completions|messages|responses/.test(j.path)
    )
      access.push({
        requestId: j.requestId,
        ttftMs: j.ttftMs,
        queuedMs: typeof j.queuedMs === "number" ? j.queuedMs : 0,
      });
  }
  const rows: DecisionRow[] = [];
  for (const a of access) {
    const f = routed.get(a.requestId);
    const kv = Number(f?.get("kv_usage"));
    if (!f || !Number.isFinite(kv)) continue;
    rows.push({
      kvUsage: kv,
      predictedMs: Number(f.get("predicted_ttft_ms") ?? NaN),
      fromPickMs: a.ttftMs - a.queuedMs,
      heldMs: a.queuedMs,
    });
  }
  return rows;
}
