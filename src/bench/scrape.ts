// Server-side figures from Prometheus /metrics, read before and after a run and differenced:
// prefix cache hit rate, preemptions, router retries, and the engines' own mean TTFT/ITL/E2E from
// their histograms. Every series of a family is summed, so scraping a router's or several engines'
// endpoints gives fleet totals. Through a Switchyard router, the engines' prefix-cache counters come
// from its engine list (`GET /engines`, which carries what it scrapes), so no --scrape flag is needed.
import { request } from "undici";
import { parsePrometheus } from "../protocol/prometheus-text.js";

/** Families we read; counters are matched with and without the `_total` suffix. */
export const SCRAPED = {
  prefixHits: "vllm:prefix_cache_hits",
  prefixQueries: "vllm:prefix_cache_queries",
  preemptions: "vllm:num_preemptions",
  routerRetries: "switchyard_retries",
  ttftSum: "vllm:time_to_first_token_seconds_sum",
  ttftCount: "vllm:time_to_first_token_seconds_count",
  itlSum: "vllm:inter_token_latency_seconds_sum",
  itlCount: "vllm:inter_token_latency_seconds_count",
  tpotSum: "vllm:time_per_output_token_seconds_sum",
  tpotCount: "vllm:time_per_output_token_seconds_count",
  e2eSum: "vllm:e2e_request_latency_seconds_sum",
  e2eCount: "vllm:e2e_request_latency_seconds_count",
} as const;

export type Snapshot = Map<string, number>;

function get(s: Snapshot, name: string): number | undefined {
  return s.get(name) ?? s.get(`${name}_total`);
}

/** Scrapes every URL and sums them; a URL that fails is reported, not fatal. */
export async function scrapeAll(
  urls: readonly string[],
  headers: Record<string, string>,
  timeoutMs = 5000,
): Promise<{ snapshot: Snapshot; failures: string[] }> {
  const total: Snapshot = new Map();
  const failures: string[] = [];
  await Promise.all(
    urls.map(async (url) => {
      try {
        const res = await request(url, { headers, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
        for (const [k, v] of parsePrometheus(text)) total.set(k, (total.get(k) ?? 0) + v);
      } catch (err) {
        failures.push(`${url}: ${(err as Error).message}`);
      }
    }),
  );
  return { snapshot: total, failures };
}

export interface ServerFigures {
  prefix_cache_hits: number | null;
  prefix_cache_queries: number | null;
  prefix_cache_hit_rate: number | null;
  num_preemptions: number | null;
  router_retries: number | null;
  /** the engines' own mean latencies over the run, from histogram sums and counts */
  mean_ttft_ms: number | null;
  mean_itl_ms: number | null;
  mean_e2el_ms: number | null;
  requests_seen: number | null;
  /** through a Switchyard router: each engine's own prefix-cache figures, from the router's engine list */
  engines?: EngineHitFigures[];
}

/** Differences two snapshots into the figures of the run between them. */
export function serverFigures(before: Snapshot, after: Snapshot): ServerFigures {
  const d = (name: string): number | null => {
    const a = get(after, name);
    if (a === undefined) return null;
    return a - (get(before, name) ?? 0);
  };
  const ratio = (num: number | null, den: number | null, scale = 1): number | null =>
    num === null || den === null || den <= 0 ? null : (num / den) * scale;
  const hits = d(SCRAPED.prefixHits);
  const queries = d(SCRAPED.prefixQueries);
  const itlSum = d(SCRAPED.itlSum) ?? d(SCRAPED.tpotSum);
  const itlCount = d(SCRAPED.itlCount) ?? d(SCRAPED.tpotCount);
  return {
    prefix_cache_hits: hits,
    prefix_cache_queries: queries,
    prefix_cache_hit_rate: ratio(hits, queries),
    num_preemptions: d(SCRAPED.preemptions),
    router_retries: d(SCRAPED.routerRetries),
    mean_ttft_ms: ratio(d(SCRAPED.ttftSum), d(SCRAPED.ttftCount), 1000),
    mean_itl_ms: ratio(itlSum, itlCount, 1000),
    mean_e2el_ms: ratio(d(SCRAPED.e2eSum), d(SCRAPED.e2eCount), 1000),
    requests_seen: d(SCRAPED.e2eCount),
  };
}

/** One engine's prefix-cache counters (tokens) as a Switchyard router's engine list reports them. */
export interface EngineCounters {
  url: string;
  hits: number;
  queries: number;
  /** ms since the router last read the engine's /metrics; null before the first read */
  scrapeAgeMs: number | null;
}

/**
 * The engines behind BASE with their prefix-cache counters, from a Switchyard router's `GET /engines`;
 * null when BASE is not such a router (an engine, another gateway) or the list is closed to this key.
 */
export async function routerEngines(
  base: string,
  headers: Record<string, string>,
  timeoutMs = 5000,
): Promise<EngineCounters[] | null> {
  try {
    const res = await request(`${base}/engines`, {
      headers,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return null;
    }
    const body = (await res.body.json()) as { engines?: unknown };
    if (!Array.isArray(body.engines)) return null;
    const out: EngineCounters[] = [];
    for (const e of body.engines as Record<string, unknown>[]) {
      if (typeof e.url !== "string") return null;
      const hits = e.prefixCacheHits;
      const queries = e.prefixCacheQueries;
      // an engine that exports no prefix-cache counters (not vLLM, or prefix caching off) is left out
      if (typeof hits !== "number" || typeof queries !== "number") continue;
      out.push({
        url: e.url,
        hits,
        queries,
        scrapeAgeMs: typeof e.scrapeAgeMs === "number" ? e.scrapeAgeMs : null,
      });
    }
    return out;
  } catch {
    return null;
  }
}

/**
 * The engine list once the router has read every engine's /metrics after `sinceMs` (Date.now()), so
 * that counters read after a run include all of it; gives up after `maxWaitMs` with what it has.
 */
export async function freshRouterEngines(
  base: string,
  headers: Record<string, string>,
  sinceMs: number,
  maxWaitMs = 5000,
): Promise<EngineCounters[] | null> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const list = await routerEngines(base, headers);
    const fresh = (e: EngineCounters) => e.scrapeAgeMs !== null && Date.now() - e.scrapeAgeMs > sinceMs;
    if (!list || list.every(fresh) || Date.now() >= deadline) return list;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface EngineHitFigures {
  url: string;
  prefix_cache_hits: number;
  prefix_cache_queries: number;
  prefix_cache_hit_rate: number | null;
}

/** Per-engine prefix-cache figures of the run between two engine lists (engines in both only). */
export function engineHitFigures(before: EngineCounters[], after: EngineCounters[]): EngineHitFigures[] {
  const was = new Map(before.map((e) => [e.url, e]));
  const out: EngineHitFigures[] = [];
  for (const e of after) {
    const b = was.get(e.url);
    if (!b) continue;
    // a counter that went down means the engine restarted: its counters start from zero
    const restarted = e.hits < b.hits || e.queries < b.queries;
    const hits = restarted ? e.hits : e.hits - b.hits;
    const queries = restarted ? e.queries : e.queries - b.queries;
    out.push({
      url: e.url,
      prefix_cache_hits: hits,
      prefix_cache_queries: queries,
      prefix_cache_hit_rate: queries > 0 ? hits / queries : null,
    });
  }
  return out;
}
