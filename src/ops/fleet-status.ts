// What `switchyard status` knows about a running stack, built only from what the router serves: its
// engine list (`GET /engines`) and its Prometheus page (`GET /metrics`). Two samples some seconds apart
// give rates, routing shares, window latencies and window hit rates; one sample gives totals since the
// router started. Pure functions of the samples, so the report is tested without a clock.
import { request } from "undici";
import { parseSamples, type Sample } from "../protocol/prometheus-text.js";
import {
  adapterShares,
  engineLora,
  type AdapterShares,
  type EngineLoraStatus,
  type LoraRow,
} from "./lora-status.js";
import { PeerError } from "../errors/index.js";

/** KV usage from which HBM pressure is reported: the engines' alert rule fires at ≥ 0.92 for 5 m. */
export const KV_PRESSURE = 0.92;
/** An engine whose /metrics the router has not read for this long has stale load figures. */
const STALE_SCRAPE_MS = 10_000;
/**
 * KV-fallback reasons that are not a fault: the engine is starting or has sent no event yet (the
 * router says nothing about these either), or the policy or the engine's setup asks for the prefix
 * index (`hybrid` routes engines without KV events by prefix on purpose).
 */
const EXPECTED_FALLBACKS = new Set([
  "starting",
  "no-events-yet",
  "no-cache-config",
  "version-unknown",
  "not-subscribed",
  "policy-prefix",
  "no-kv-events-endpoint",
]);

/** One row of the router's `GET /engines`, as far as status reads it. */
export interface EngineRow {
  url: string;
  role?: string;
  state?: string;
  healthy?: boolean;
  /** served models, then LoRA adapters (those with a parent) */
  models?: { id: string; parent?: string | null }[];
  inFlight?: number;
  running?: number;
  waiting?: number;
  kvUsage?: number;
  prefixCacheHits?: number | null;
  prefixCacheQueries?: number | null;
  scrapeAgeMs?: number | null;
  lastError?: string | null;
  /** where the router reads the engine's KV events (absent from a router that does not report it) */
  kvEvents?: { origin?: string; endpoints?: string[] };
  /** its LoRA adapters (null: it serves none; absent from a router that does not report them) */
  lora?: LoraRow | null;
}

export interface StatusSample {
  /** Date.now() when the sample was taken */
  at: number;
  engines: EngineRow[];
  metrics: Sample[];
  /** the router's GET /autoscale; null when it has none (an older router) or it is off */
  autoscale?: AutoscaleStatus | null;
}

/** The router's SLO autoscaling decision per pool, as GET /autoscale says (docs/autoscaling.md). */
export interface AutoscaleStatus {
  slo: { ttftP90Ms: number; tpotP90Ms: number };
  minReplicas: number;
  maxReplicas: number;
  pools: { model: string; role: string; current: number; desired: number; reason: string }[];
}

export interface EngineStatus {
  url: string;
  models: string[];
  role: string;
  state: string;
  healthy: boolean;
  inFlight: number;
  running: number;
  waiting: number;
  /** 0..1, from the engine's vllm:kv_cache_usage_perc as the router last read it */
  kvUsage: number | null;
  /** prompt tokens found in the prefix cache / looked up, over the window (else since the engine started) */
  prefixHitRate: number | null;
  /** share of the router's routed requests that went to this engine, over the window (else in total) */
  routingShare: number | null;
  /** times the router took it out of rotation, in total */
  ejections: number;
  /** how cache-aware routing sees it: `kv` (KV events), `prefix` (approximate index), null (not cache-aware) */
  routingMode: "kv" | "prefix" | null;
  /** why KV-event routing is not used for it, when it is not */
  kvFallback: string | null;
  /**
   * where its KV events come from: `explicit` (configured: backend, discovery entry, --kv-events-port,
   * collector), `discovered` (the engine's own /kv_event_sources), `none`; null when the router does
   * not say
   */
  kvEventsFrom: "explicit" | "discovered" | "none" | null;
  /** the router's predicted prefix-cache hits and the engine's differ beyond tolerance */
  hitMismatch: boolean;
  scrapeAgeMs: number | null;
  lastError: string | null;
  /** its LoRA adapters: slots, host cache, loaded, running, waiting; null when it serves none */
  lora: EngineLoraStatus | null;
}

export interface RouterStatus {
  /** seconds between the two samples; 0 for a single sample (figures are then totals) */
  windowS: number;
  requestsPerS: number | null;
  errorsPerS: number | null;
  rejectedPerS: number | null;
  retriesPerS: number | null;
  requestsTotal: number;
  inFlight: number | null;
  queueDepth: number | null;
  ttftP50Ms: number | null;
  ttftP99Ms: number | null;
  itlP50Ms: number | null;
  e2eP50Ms: number | null;
  e2eP99Ms: number | null;
  /** what the latencies cover: the window, or everything since the router started when the window had no request */
  latencySpan: "window" | "total" | null;
}

export interface Warning {
  engine: string | null;
  kind:
    "unhealthy" | "kv-pressure" | "kv-fallback" | "hit-mismatch" | "stale-scrape" | "errors" | "no-engine";
  message: string;
}

export interface StatusReport {
  time: string;
  router: string;
  summary: { engines: number; healthy: number };
  routerStats: RouterStatus;
  engines: EngineStatus[];
  /** how the router's adapter requests split between adapters; null without LoRA traffic */
  adapters: AdapterShares | null;
  /** the SLO autoscaling decision and its reason per pool; null when the router runs none */
  autoscale: AutoscaleStatus | null;
  warnings: Warning[];
}

type Filter = Record<string, string>;

function matches(s: Sample, name: string, filter: Filter): boolean {
  if (s.name !== name) return false;
  for (const [k, v] of Object.entries(filter)) if (s.labels[k] !== v) return false;
  return true;
}

function sum(samples: Sample[], name: string, filter: Filter = {}): number {
  let t = 0;
  for (const s of samples) if (matches(s, name, filter)) t += s.value;
  return t;
}

function has(samples: Sample[], name: string): boolean {
  return samples.some((s) => s.name === name);
}

/** Sums a family by one label. */
function byLabel(samples: Sample[], name: string, label: string, filter: Filter = {}): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (!matches(s, name, filter)) continue;
    const k = s.labels[label] ?? "";
    out.set(k, (out.get(k) ?? 0) + s.value);
  }
  return out;
}

/** Cumulative bucket counts by upper bound, summed over every other label. */
export function histogramBuckets(samples: readonly Sample[], family: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${family}_bucket`) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    if (!Number.isNaN(le)) out.set(le, (out.get(le) ?? 0) + s.value);
  }
  return out;
}

/** Prometheus's histogram_quantile over cumulative buckets: linear within the bucket, in seconds. */
export function histogramQuantile(q: number, cumulative: Map<number, number>): number | null {
  const les = [...cumulative.keys()].sort((a, b) => a - b);
  const total = les.length ? cumulative.get(les[les.length - 1]!)! : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const le of les) {
    const c = cumulative.get(le)!;
    if (c >= rank) {
      // the +Inf bucket answers with the highest finite bound, as Prometheus does
      if (le === Infinity) return prevLe;
      return c === prevCount ? le : prevLe + ((le - prevLe) * (rank - prevCount)) / (c - prevCount);
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

function deltaBuckets(before: Map<number, number>, after: Map<number, number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const [le, c] of after) out.set(le, Math.max(0, c - (before.get(le) ?? 0)));
  return out;
}

function countOf(b: Map<number, number>): number {
  return b.get(Infinity) ?? 0;
}

function ms(s: number | null): number | null {
  return s === null ? null : s * 1000;
}

function engineKey(url: string): string {
  return url.replace(/\/+$/, "");
}

/** The report for `after`, with rates and window figures against `before` when there is one. */
export function buildReport(router: string, after: StatusSample, before: StatusSample | null): StatusReport {
  const m = after.metrics;
  const b = before?.metrics ?? null;
  const windowS = before ? Math.max(0.001, (after.at - before.at) / 1000) : 0;
  // a labelled counter nothing has incremented yet has no series: its rate is 0
  const rate = (name: string, filter: Filter = {}): number | null =>
    b ? Math.max(0, sum(m, name, filter) - sum(b, name, filter)) / windowS : null;

  // latencies: over the window when requests finished in it, else since the router started
  const lat = (family: string) => {
    const total = histogramBuckets(m, family);
    const win = b ? deltaBuckets(histogramBuckets(b, family), total) : null;
    return { total, win };
  };
  const ttft = lat("switchyard_time_to_first_token_seconds");
  const e2e = lat("switchyard_e2e_request_latency_seconds");
  const itl = lat("switchyard_inter_chunk_latency_seconds");
  const useWindow = e2e.win !== null && countOf(e2e.win) > 0;
  const pick = (l: { total: Map<number, number>; win: Map<number, number> | null }) =>
    useWindow ? l.win! : l.total;
  const latencySpan = useWindow ? "window" : countOf(e2e.total) > 0 ? "total" : null;
  const q = (quantile: number, l: { total: Map<number, number>; win: Map<number, number> | null }) =>
    latencySpan === null ? null : ms(histogramQuantile(quantile, pick(l)));

  const gauge = (name: string): number | null => (has(m, name) ? sum(m, name) : null);
  const routerStats: RouterStatus = {
    windowS,
    requestsPerS: rate("switchyard_requests_total"),
    errorsPerS: b ? fiveXx(m, b) / windowS : null,
    rejectedPerS: rate("switchyard_rejected_requests_total"),
    retriesPerS: rate("switchyard_retries_total"),
    requestsTotal: sum(m, "switchyard_requests_total"),
    inFlight: gauge("switchyard_requests_in_flight"),
    queueDepth: gauge("switchyard_queue_depth"),
    ttftP50Ms: q(0.5, ttft),
    ttftP99Ms: q(0.99, ttft),
    itlP50Ms: q(0.5, itl),
    e2eP50Ms: q(0.5, e2e),
    e2eP99Ms: q(0.99, e2e),
    latencySpan,
  };

  // routing share: requests answered per engine (`none` = not routed), over the window when any
  const routedNow = byLabel(m, "switchyard_requests_total", "engine");
  routedNow.delete("none");
  let routed = routedNow;
  if (b) {
    const was = byLabel(b, "switchyard_requests_total", "engine");
    const win = new Map([...routedNow].map(([k, v]) => [k, v - (was.get(k) ?? 0)]));
    if ([...win.values()].some((v) => v > 0)) routed = win;
  }
  const routedTotal = [...routed.values()].reduce((a, v) => a + v, 0);
  const ejections = byLabel(m, "switchyard_engine_ejections_total", "engine");
  const kvMode = byLabel(m, "switchyard_routing_engine_kv_mode", "engine");
  const mismatch = byLabel(m, "switchyard_routing_hit_mismatch", "engine");
  const fallback = new Map<string, string>();
  for (const s of m)
    if (s.name === "switchyard_routing_kv_fallback" && s.value > 0 && s.labels.engine)
      fallback.set(engineKey(s.labels.engine), s.labels.reason ?? "unknown");
  const beforeRows = new Map((before?.engines ?? []).map((e) => [engineKey(e.url), e]));

  const engines: EngineStatus[] = after.engines.map((e) => {
    const key = engineKey(e.url);
    const was = beforeRows.get(key);
    let hitRate: number | null = null;
    const hits = e.prefixCacheHits ?? null;
    const queries = e.prefixCacheQueries ?? null;
    if (hits !== null && queries !== null) {
      const dq = was?.prefixCacheQueries != null ? queries - was.prefixCacheQueries : 0;
      const dh = was?.prefixCacheHits != null ? hits - was.prefixCacheHits : 0;
      if (dq > 0 && dh >= 0) hitRate = dh / dq;
      else if (queries > 0) hitRate = hits / queries;
    }
    const share = routed.get(key) ?? routed.get(e.url);
    const mode = kvMode.get(key) ?? kvMode.get(e.url);
    return {
      url: e.url,
      // the served models; adapters are in `lora`
      models: (e.models ?? []).filter((x) => !x.parent).map((x) => x.id),
      role: e.role ?? "both",
      state: e.state ?? (e.healthy ? "healthy" : "unknown"),
      healthy: e.healthy === true,
      inFlight: e.inFlight ?? 0,
      running: e.running ?? 0,
      waiting: e.waiting ?? 0,
      kvUsage: typeof e.kvUsage === "number" ? e.kvUsage : null,
      prefixHitRate: hitRate,
      routingShare: routedTotal > 0 ? (share ?? 0) / routedTotal : null,
      ejections: ejections.get(key) ?? ejections.get(e.url) ?? 0,
      routingMode: mode === undefined ? null : mode > 0 ? "kv" : "prefix",
      kvFallback: fallback.get(key) ?? null,
      kvEventsFrom: kvOrigin(e.kvEvents?.origin),
      hitMismatch: (mismatch.get(key) ?? mismatch.get(e.url) ?? 0) > 0,
      scrapeAgeMs: e.scrapeAgeMs ?? null,
      lastError: e.lastError ?? null,
      lora: engineLora(e.lora),
    };
  });

  return {
    time: new Date(after.at).toISOString(),
    router,
    summary: { engines: engines.length, healthy: engines.filter((e) => e.healthy).length },
    routerStats,
    engines,
    adapters: adapterShares(m, b),
    autoscale: after.autoscale ?? null,
    warnings: warningsFor(engines, routerStats),
  };
}

function kvOrigin(v: unknown): EngineStatus["kvEventsFrom"] {
  return v === "explicit" || v === "discovered" || v === "none" ? v : null;
}

function fiveXx(after: Sample[], before: Sample[]): number {
  const count = (ss: Sample[]) => {
    let t = 0;
    for (const s of ss)
      if (s.name === "switchyard_requests_total" && s.labels.status?.startsWith("5")) t += s.value;
    return t;
  };
  return Math.max(0, count(after) - count(before));
}

function warningsFor(engines: EngineStatus[], r: RouterStatus): Warning[] {
  const out: Warning[] = [];
  if (engines.length > 0 && engines.every((e) => !e.healthy))
    out.push({ engine: null, kind: "no-engine", message: "no engine is in rotation: every request fails" });
  for (const e of engines) {
    if (!e.healthy)
      out.push({
        engine: e.url,
        kind: "unhealthy",
        message: `out of rotation (${e.state})${e.lastError ? `: ${e.lastError}` : ""}`,
      });
    if (e.kvUsage !== null && e.kvUsage >= KV_PRESSURE)
      out.push({
        engine: e.url,
        kind: "kv-pressure",
        message: `KV cache ${(e.kvUsage * 100).toFixed(0)}% full (≥ ${KV_PRESSURE * 100}%): HBM pressure, preemptions follow`,
      });
    if (e.kvFallback && !EXPECTED_FALLBACKS.has(e.kvFallback))
      out.push({
        engine: e.url,
        kind: "kv-fallback",
        message: `KV-event routing unavailable (${e.kvFallback}); routed by the approximate prefix index`,
      });
    if (e.hitMismatch)
      out.push({
        engine: e.url,
        kind: "hit-mismatch",
        message:
          "predicted and engine-reported prefix-cache hits differ: check PYTHONHASHSEED, tokenizer, block size, hash algorithm",
      });
    if (e.scrapeAgeMs !== null && e.scrapeAgeMs > STALE_SCRAPE_MS)
      out.push({
        engine: e.url,
        kind: "stale-scrape",
        message: `the router last read its /metrics ${(e.scrapeAgeMs / 1000).toFixed(0)} s ago: load figures are stale`,
      });
  }
  if (
    r.errorsPerS !== null &&
    r.requestsPerS !== null &&
    r.requestsPerS > 0 &&
    r.errorsPerS / r.requestsPerS > 0.05
  )
    out.push({
      engine: null,
      kind: "errors",
      message: `${((r.errorsPerS / r.requestsPerS) * 100).toFixed(1)}% of responses are 5xx`,
    });
  return out;
}

/** Fetches one sample from the router: its engine list and its metrics page. */
export async function sampleRouter(
  router: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<StatusSample> {
  const get = async (path: string): Promise<{ status: number; text: string }> => {
    try {
      const res = await request(`${router}${path}`, {
        headers,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      return { status: res.statusCode, text: await res.body.text() };
    } catch (err) {
      const e = err as { code?: string; message?: string };
      throw new StatusError(`cannot reach the router at ${router} (${e.code ?? e.message ?? String(err)})`);
    }
  };
  const [eng, met, scale] = await Promise.all([get("/engines"), get("/metrics"), get("/autoscale")]);
  const at = Date.now();
  if (eng.status === 401 || eng.status === 403)
    throw new StatusError(
      `${router}/engines answered ${eng.status}: it needs the router's admin key (--api-key or $SWITCHYARD_ADMIN_KEY)`,
    );
  let list: unknown = null;
  try {
    list = (JSON.parse(eng.text) as { engines?: unknown }).engines;
  } catch {
    list = null;
  }
  if (eng.status !== 200 || !Array.isArray(list))
    throw new StatusError(
      `${router}/engines answered ${eng.status} without an engine list: is it a Switchyard router?`,
    );
  return {
    at,
    engines: list as EngineRow[],
    metrics: met.status === 200 ? parseSamples(met.text) : [],
    autoscale: scale.status === 200 ? autoscaleOf(scale.text) : null,
  };
}

/** GET /autoscale's answer when the decision runs; null when it is off or the answer is not one */
function autoscaleOf(text: string): AutoscaleStatus | null {
  try {
    const r = JSON.parse(text) as Partial<AutoscaleStatus> & { enabled?: boolean };
    if (r.enabled !== true || !Array.isArray(r.pools) || !r.slo) return null;
    return {
      slo: r.slo,
      minReplicas: Number(r.minReplicas),
      maxReplicas: Number(r.maxReplicas),
      pools: r.pools.map((p) => ({
        model: String(p.model),
        role: String(p.role),
        current: Number(p.current),
        desired: Number(p.desired),
        reason: String(p.reason),
      })),
    };
  } catch {
    return null;
  }
}

export class StatusError extends PeerError {}
