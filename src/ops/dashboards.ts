// Do the shipped Grafana dashboards show anything? Every panel query of deploy/grafana/*.json, with
// Grafana's variables filled in, is run against a Prometheus that scrapes a live stack (the one
// `switchyard up --monitoring` starts); each must parse and return data, unless it charts an event a
// healthy local stack never has, which is named here with the reason.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";

export interface DashboardQuery {
  dashboard: string;
  panel: string;
  expr: string;
}

/** Every panel query (`targets[].expr`, rows included) of the dashboards in `dir`. */
export function dashboardQueries(dir: string): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()) {
    const dash = JSON.parse(readFileSync(join(dir, file), "utf8")) as { panels?: unknown[] };
    const visit = (panels: unknown[] | undefined) => {
      for (const p of panels ?? []) {
        const panel = p as { title?: string; panels?: unknown[]; targets?: { expr?: unknown }[] };
        visit(panel.panels);
        for (const t of panel.targets ?? [])
          if (typeof t.expr === "string")
            out.push({ dashboard: file, panel: panel.title ?? "", expr: t.expr });
      }
    };
    visit(dash.panels);
  }
  return out;
}

/**
 * Grafana's variables as a query sees them: the dashboard's own (`$namespace`, `$model`) match
 * everything, the interval ones take `window` (a PromQL duration such as `1m`).
 */
export function fillVariables(expr: string, window: string): string {
  return expr
    .replace(/\$\{?__(rate_interval|interval|range)\}?/g, window)
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?/g, ".*");
}

/** Series a healthy `switchyard up` stack never has, by metric, with why. */
export const EMPTY_ON_A_HEALTHY_LOCAL_STACK: Record<string, string> = {
  switchyard_retries_total: "attempts are retried only when an engine fails",
  switchyard_rejected_requests_total: "admission refuses requests only under overload",
  switchyard_engine_ejections_total: "no engine is ejected while all are healthy",
  "vllm:kv_offload_total_bytes_total": "KV offload is off unless a sim offload flag is passed to `up`",
  switchyard_cache_: "the cache server runs in `up` only with --cache-server",
};

export type Verdict = "data" | "expected-empty" | "empty" | "error";

export interface QueryResult extends DashboardQuery {
  query: string;
  verdict: Verdict;
  /** series returned, or the error, or why it may be empty */
  detail: string;
}

function expectedEmpty(expr: string): string | null {
  for (const [metric, why] of Object.entries(EMPTY_ON_A_HEALTHY_LOCAL_STACK)) {
    if (expr.includes(metric)) return why;
  }
  return null;
}

/** Runs every query against `prometheus` (its base URL) and says what each returned. */
export async function checkDashboards(
  prometheus: string,
  queries: DashboardQuery[],
  window = "1m",
): Promise<QueryResult[]> {
  const out: QueryResult[] = [];
  for (const q of queries) {
    const query = fillVariables(q.expr, window);
    let verdict: Verdict;
    let detail: string;
    try {
      const res = await request(`${prometheus}/api/v1/query?query=${encodeURIComponent(query)}`, {
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const body = (await res.body.json()) as {
        status?: string;
        error?: string;
        data?: { result?: { value?: [number, string] }[] };
      };
      const series = body.data?.result ?? [];
      // NaN (a quantile of no observations, 0/0) is a series with nothing to show
      const shown = series.filter((s) => s.value && s.value[1] !== "NaN");
      if (body.status !== "success") {
        verdict = "error";
        detail = body.error ?? `HTTP ${res.statusCode}`;
      } else if (shown.length > 0) {
        verdict = "data";
        detail = `${shown.length} series`;
      } else {
        const why = expectedEmpty(q.expr);
        verdict = why ? "expected-empty" : "empty";
        detail = why ?? (series.length ? "only NaN" : "no series");
      }
    } catch (err) {
      verdict = "error";
      detail = (err as Error).message;
    }
    out.push({ ...q, query, verdict, detail });
  }
  return out;
}
