// One bench invocation: resolve the model, calibrate lengths, warm up, then one measured run per
// offered rate (a comma list of --qps values sweeps), each between two /metrics scrapes.
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { request } from "undici";
import { calibrate, type Calibration } from "./calibrate.js";
import { BenchClient, type ClientOptions } from "./client.js";
import { LoadRun, type LoadOptions, type TurnToSend } from "./load.js";
import { summarize, type MetricFields, type Slo } from "../workload/metrics.js";
import { Progress } from "./progress.js";
import type { RequestRecord } from "../workload/record.js";
import { resumedFigures, sampleArrays, type BenchResult, type ClientFigures } from "./report.js";
import {
  engineHitFigures,
  fillFromEngines,
  freshRouterEngines,
  routerEngineUrls,
  routerEngines,
  scrapeAll,
  scrapeEach,
  serverFigures,
  type EngineCounters,
  type ServerFigures,
} from "./scrape.js";
import type { ArrivalKind } from "../workload/arrivals.js";
import { buildWorkload, type WorkloadFlags, type WorkloadName } from "../workload/index.js";
import {
  chatMessages,
  completionPrompt,
  intendedPromptTokens,
  sentAfterPause,
  type Endpoint,
  type Workload,
} from "../workload/types.js";
import { InvalidConfigError, PeerError } from "../errors/index.js";

export interface BenchOptions {
  baseUrl: string;
  model: string | null;
  endpoint: Endpoint | "auto";
  apiKey: string | null;
  headers: Record<string, string>;
  extraBody: Record<string, unknown>;
  workload: WorkloadName;
  workloadFlags: WorkloadFlags;
  qps: number[];
  arrival: ArrivalKind;
  /** null = the workload's default (all users for multi-round-qa, no cap otherwise) */
  concurrency: number | null;
  numRequests: number | null;
  durationS: number | null;
  warmup: number;
  seed: number;
  slo: Slo | null;
  percentiles: number[];
  /** URLs to scrape; empty = the base URL's /metrics; null = do not scrape */
  scrape: string[] | null;
  connections: number | null;
  timeoutMs: number;
  calibrate: boolean;
  progress: boolean;
}

export interface BenchRun {
  result: BenchResult;
  records: RequestRecord[];
  fields: MetricFields;
}

export interface BenchIo {
  warn: (msg: string) => void;
  /** set by the caller to stop the current run early (SIGINT) */
  onRun?: (run: LoadRun) => void;
}

export async function resolveModel(baseUrl: string, headers: Record<string, string>): Promise<string> {
  const url = `${baseUrl.replace(/\/+$/, "")}/v1/models`;
  try {
    const res = await request(url, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 });
    const body = (await res.body.json()) as { data?: { id?: string }[] };
    const id = body?.data?.[0]?.id;
    if (res.statusCode === 200 && typeof id === "string") return id;
    throw new PeerError(`HTTP ${res.statusCode}, no model listed`);
  } catch (err) {
    throw new PeerError(`--model not given and ${url} did not name one (${(err as Error).message})`);
  }
}

function authHeaders(o: BenchOptions): Record<string, string> {
  return o.apiKey ? { ...o.headers, authorization: `Bearer ${o.apiKey}` } : o.headers;
}

function senderFor(client: BenchClient, workload: Workload, endpoint: Endpoint) {
  return (t: TurnToSend) => {
    const chat = endpoint === "chat";
    const resumed = sentAfterPause(t.session, t.round);
    const sent = client.send({
      index: t.index,
      sessionId: t.session.id,
      round: t.round,
      prompt: chat ? null : completionPrompt(t.session, t.round, t.answers),
      messages: chat ? chatMessages(t.session, t.round, t.answers) : null,
      maxTokens: t.session.turns[t.round]!.maxTokens,
      intendedPromptTokens: intendedPromptTokens(t.session, t.round),
      sessionHeader: workload.sessionHeader,
      keepText: t.session.carriesHistory,
    });
    return resumed
      ? sent.then((s) => {
          s.record.resumed = true;
          return s;
        })
      : sent;
  };
}

/** the dataset workload's file, read here: the workload library does no I/O */
function readText(path: string): string {
  return readFileSync(path, "utf8");
}

export async function runBench(o: BenchOptions, io: BenchIo): Promise<BenchRun[]> {
  const headers = authHeaders(o);
  const base = o.baseUrl.replace(/\/+$/, "");
  const model = o.model ?? (await resolveModel(base, headers));
  let cal: Calibration = { shape: { tokensPerWord: 1 }, source: "assumed", detail: "calibration off" };
  if (o.calibrate && o.workload !== "dataset") {
    cal = await calibrate(`${base}/tokenize`, model, headers);
    if (cal.source === "assumed") io.warn(`token lengths: ${cal.detail}`);
  }
  const probe = buildWorkload(o.workload, o.workloadFlags, o.seed, 0, cal.shape, readText).workload;
  if (probe.arrivalGapsS && o.qps.length > 1)
    throw new InvalidConfigError(
      "--qps does not apply to a replayed trace, which keeps its own times: use --trace-speed",
    );
  const endpoint: Endpoint = o.endpoint === "auto" ? probe.defaultEndpoint : o.endpoint;
  const numUsers = o.workload === "multi-round-qa" ? (o.workloadFlags.numUsers ?? 10) : null;
  const concurrency = o.concurrency ?? numUsers ?? Infinity;
  const connections = o.connections ?? (Number.isFinite(concurrency) ? Math.min(concurrency, 4096) : 1024);
  const maxRequests = o.numRequests ?? (o.durationS !== null ? Infinity : (probe.naturalRequests ?? 200));
  const clientOpts: ClientOptions = {
    baseUrl: base,
    model,
    endpoint,
    apiKey: o.apiKey,
    connections,
    timeoutMs: o.timeoutMs,
    extraHeaders: o.headers,
    extraBody: o.extraBody,
  };
  const client = new BenchClient(clientOpts);
  const scrapeUrls = o.scrape === null ? [] : o.scrape.length ? o.scrape : [`${base}/metrics`];
  const runs: BenchRun[] = [];
  try {
    if (o.warmup > 0) {
      const { workload } = buildWorkload(
        o.workload,
        o.workloadFlags,
        o.seed + 7919,
        o.warmup,
        cal.shape,
        readText,
      );
      const warm = new LoadRun(
        {
          qps: Infinity,
          arrival: o.arrival,
          concurrency: Math.min(concurrency, o.warmup),
          maxRequests: o.warmup,
          durationS: Infinity,
          seed: o.seed,
        },
        senderFor(client, workload, endpoint),
      );
      io.onRun?.(warm);
      const w = await warm.run(workload.sessions);
      const bad = w.records.filter((r) => !r.ok).length;
      if (bad)
        io.warn(
          `warmup: ${bad} of ${w.records.length} requests failed: ${w.records.find((r) => !r.ok)?.error}`,
        );
    }
    for (const [point, qps] of o.qps.entries()) {
      const count = Number.isFinite(maxRequests) ? maxRequests : Infinity;
      // Each point of a sweep gets its own prompts: with one seed, later points would find the
      // earlier points' prompts in the server's prefix cache and look faster than they are.
      const seed = o.seed + point;
      const { workload, options: workloadOptions } = buildWorkload(
        o.workload,
        o.workloadFlags,
        seed,
        count,
        cal.shape,
        readText,
      );
      const load: LoadOptions = {
        qps,
        arrival: o.arrival,
        concurrency,
        maxRequests,
        durationS: o.durationS ?? Infinity,
        seed,
        schedule: workload.arrivalGapsS,
      };
      const before = scrapeUrls.length ? await scrapeAll(scrapeUrls, headers) : null;
      const enginesBefore = before ? await routerEngines(base, headers) : null;
      // through a router, with the default scrape: its engines' own pages as well (no credentials:
      // the bench's key is the router's)
      const enginePages =
        before && o.scrape?.length === 0
          ? ((await routerEngineUrls(base, headers)) ?? []).map((u) => `${u}/metrics`)
          : [];
      const pagesBefore = enginePages.length ? await scrapeEach(enginePages, {}) : null;
      const run = new LoadRun(load, senderFor(client, workload, endpoint));
      io.onRun?.(run);
      const progress = new Progress(
        `qps=${Number.isFinite(qps) ? qps : "inf"}`,
        maxRequests,
        run,
        process.stderr,
        !o.progress,
      );
      const eld = monitorEventLoopDelay({ resolution: 5 });
      eld.enable();
      client.t0 = performance.now();
      progress.start();
      const res = await run.run(workload.sessions);
      progress.stop();
      eld.disable();
      const ended = Date.now();
      const after = before ? await scrapeAll(scrapeUrls, headers) : null;
      if (after?.failures.length) io.warn(`/metrics scrape failed: ${after.failures.join("; ")}`);
      const pagesAfter = pagesBefore ? await scrapeEach(enginePages, {}) : null;
      const unread = [...(pagesBefore?.failures ?? []), ...(pagesAfter?.failures ?? [])];
      if (unread.length) io.warn(`engine /metrics not read (its figures are left out): ${unread.join("; ")}`);
      const server =
        before && after && after.failures.length < scrapeUrls.length
          ? serverFigures(before.snapshot, after.snapshot)
          : null;
      if (server && pagesBefore && pagesAfter) fillFromEngines(server, pagesBefore.pages, pagesAfter.pages);
      if (server && enginesBefore && !server.engines) {
        addEngineFigures(server, enginesBefore, await freshRouterEngines(base, headers, ended));
      }
      const fields = summarize(res.records, res.durationS, o.slo, o.percentiles);
      const clientFig: ClientFigures = {
        event_loop_delay_p50_ms: eld.percentile(50) / 1e6,
        event_loop_delay_p99_ms: eld.percentile(99) / 1e6,
        event_loop_delay_max_ms: eld.max / 1e6,
        connections,
        max_in_flight: res.maxInFlight,
      };
      if (res.maxInFlight > connections)
        io.warn(
          `up to ${res.maxInFlight} requests were in flight on ${connections} connections: some queued in the client; raise --connections`,
        );
      const result: BenchResult = {
        date: new Date().toISOString(),
        backend: endpoint === "chat" ? "openai-chat" : "openai",
        base_url: base,
        endpoint: endpoint === "chat" ? "/v1/chat/completions" : "/v1/completions",
        model_id: model,
        workload: o.workload,
        num_prompts: res.records.length,
        request_rate: workload.arrivalGapsS ? traceRate(workloadOptions) : Number.isFinite(qps) ? qps : "inf",
        burstiness: o.arrival === "poisson" ? 1 : 0,
        max_concurrency: Number.isFinite(concurrency) ? concurrency : null,
        ...fields,
        server,
        client: clientFig,
        resumed: resumedFigures(res.records),
        config: {
          ...o,
          qps: Number.isFinite(qps) ? qps : "inf",
          seed,
          qps_sweep: o.qps.map((q) => (Number.isFinite(q) ? q : "inf")),
          model,
          endpoint,
          apiKey: o.apiKey ? "(set)" : null,
          headers: Object.keys(o.headers),
          concurrency: Number.isFinite(concurrency) ? concurrency : null,
          num_requests: Number.isFinite(maxRequests) ? maxRequests : null,
          workload_options: workloadOptions,
          calibration: { tokens_per_word: cal.shape.tokensPerWord, source: cal.source, detail: cal.detail },
          usage_reported: res.records.every((r) => !r.ok || r.usageReported),
        },
        ...sampleArrays(res.records),
      };
      runs.push({ result, records: res.records, fields });
      if (
        run.dispatched < maxRequests &&
        Number.isFinite(maxRequests) &&
        o.durationS === null &&
        !stoppedEarly(run)
      )
        io.warn(`only ${run.dispatched} of ${maxRequests} requests: the workload ran out`);
    }
  } finally {
    await client.close();
  }
  return runs;
}

/**
 * Through a Switchyard router: each engine's prefix-cache figures from its engine list, and the fleet's
 * hit rate from them when the scraped pages had none (a router's own /metrics has no vllm: series).
 */
function addEngineFigures(
  server: ServerFigures,
  before: EngineCounters[],
  after: EngineCounters[] | null,
): void {
  if (!after || after.length === 0) return;
  const engines = engineHitFigures(before, after);
  if (engines.length === 0) return;
  server.engines = engines;
  if (server.prefix_cache_queries !== null) return;
  const hits = engines.reduce((a, e) => a + e.prefix_cache_hits, 0);
  const queries = engines.reduce((a, e) => a + e.prefix_cache_queries, 0);
  server.prefix_cache_hits = hits;
  server.prefix_cache_queries = queries;
  server.prefix_cache_hit_rate = queries > 0 ? hits / queries : null;
}

/** a replayed trace's own rate (requests over the window's span at its speed), as its options report it */
function traceRate(options: Record<string, unknown>): number | "inf" {
  const rate = (options.window as { request_rate?: number } | undefined)?.request_rate;
  return typeof rate === "number" && Number.isFinite(rate) ? rate : "inf";
}

function stoppedEarly(run: LoadRun): boolean {
  return run.isStopped;
}
