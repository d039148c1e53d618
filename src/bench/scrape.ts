// Server-side figures from Prometheus /metrics, read before and after a run and differenced:
// prefix cache hit rate, preemptions, router retries, and the engines' own mean TTFT/ITL/E2E from
// their histograms. Every series of a family is summed, so scraping a router's or several engines'
// endpoints gives fleet totals. Through a Switchyard router no --scrape flag is needed: its engine list
// (`GET /engines`) names the engines, whose own /metrics give the engine-side figures as they do when
// the bench points at one engine, and carries each engine's prefix-cache counters as the router read them.
import { request } from "undici";
import { parsePrometheus } from "../protocol/prometheus-text.js";
import { PeerError } from "../errors/index.js";

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

/** Scrapes each URL; a URL that fails is reported, not fatal. */
export async function scrapeEach(
  urls: readonly string[],
  headers: Record<string, string>,
  timeoutMs = 5000,
): Promise<{ pages: Map<string, Snapshot>; failures: string[] }> {
  const pages = new Map<string, Snapshot>();
  const failures: string[] = [];
  await Promise.all(
    urls.map(async (url) => {
      try {
        const res = await request(url, { headers, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new PeerError(`HTTP ${res.statusCode}`);
        pages.set(url, parsePrometheus(text));
      } catch (err) {
        failures.push(`${url}: ${(err as Error).message}`);
      }
    }),
  );
  return { pages, failures };
}

/** Sums the pages' series, taking only the URLs in `only` when given. */
export function sumPages(pages: Map<string, Snapshot>, only?: ReadonlySet<string>): Snapshot {
  const total: Snapshot = new Map();
  for (const [url, page] of pages) {
    if (only && !only.has(url)) continue;
    for (const [k, v] of page) total.set(k, (total.get(k) ?? 0) + v);
  }
  return total;
}

/** Scrapes every URL and sums them; a URL that fails is reported, not fatal. */
export async function scrapeAll(
  urls: readonly string[],
  headers: Record<string, string>,
  timeoutMs = 5000,
): Promise<{ snapshot: Snapshot; failures: string[] }> {
  const { pages, failures } = await scrapeEach(urls, headers, timeoutMs);
  return { snapshot: sumPages(pages), failures };
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

/**
 * Fills the engine-side figures a router's own /metrics lacks (it has no vllm: series) from the
 * engines' pages (keyed by their /metrics URL), summed over the engines read both before and after the
 * run, and lists each engine's prefix-cache figures; a fleet figure the scraped pages gave is kept.
 */
export function fillFromEngines(
  server: ServerFigures,
  before: Map<string, Snapshot>,
  after: Map<string, Snapshot>,
): void {
  const both = new Set([...after.keys()].filter((u) => before.has(u)));
  if (both.size === 0) return;
  const fleet = serverFigures(sumPages(before, both), sumPages(after, both));
  for (const k of Object.keys(fleet) as (keyof ServerFigures)[]) {
    if (k === "engines" || k === "router_retries") continue;
    if (server[k] === null)
      (server as unknown as Record<string, number | null>)[k] = fleet[k] as number | null;
  }
  const engines: EngineHitFigures[] = [];
  for (const u of both) {
    const f = serverFigures(before.get(u)!, after.get(u)!);
    // an engine that exports no prefix-cache counters (not vLLM, or prefix caching off) is left out
    if (f.prefix_cache_hits === null || f.prefix_cache_queries === null) continue;
    engines.push({
      url: u.replace(/\/metrics$/, ""),
      prefix_cache_hits: f.prefix_cache_hits,
      prefix_cache_queries: f.prefix_cache_queries,
      prefix_cache_hit_rate: f.prefix_cache_hit_rate,
    });
  }
  if (engines.length > 0) server.engines = engines;
}

/** One engine's prefix-cache counters (tokens) as a Switchyard router's engine list reports them. */
export interface EngineCounters {
  url: string;
  hits: number;
  queries: number;
  /** ms since the router last read the engine's /metrics; null before the first read */
  scrapeAgeMs: number | null;
}

/** A Switchyard router's `GET /engines` list; null when BASE is not such a router or the list is closed. */
async function engineList(
  base: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<Record<string, unknown>[] | null> {
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
    const list = body.engines as Record<string, unknown>[];
    return list.every((e) => typeof e?.url === "string") ? list : null;
  } catch {
    return null;
  }
}

/** The base URLs of the engines behind a Switchyard router at BASE; null when BASE is not one. */
export async function routerEngineUrls(
  base: string,
  headers: Record<string, string>,
  timeoutMs = 5000,
): Promise<string[] | null> {
  const list = await engineList(base, headers, timeoutMs);
  return list ? list.map((e) => (e.url as string).replace(/\/+$/, "")) : null;
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
  const list = await engineList(base, headers, timeoutMs);
  if (!list) return null;
  const out: EngineCounters[] = [];
  for (const e of list) {
    const hits = e.prefixCacheHits;
    const queries = e.prefixCacheQueries;
    // an engine that exports no prefix-cache counters (not vLLM, or prefix caching off) is left out
    if (typeof hits !== "number" || typeof queries !== "number") continue;
    out.push({
      url: e.url as string,
      hits,
      queries,
      scrapeAgeMs: typeof e.scrapeAgeMs === "number" ? e.scrapeAgeMs : null,
    });
  }
  return out;
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
