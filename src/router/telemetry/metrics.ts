// The router's own Prometheus metrics, all under `switchyard_` so they never collide with the
// engines' `vllm:` series when both are scraped into one Prometheus. Per-engine gauges are read
// from the registry at scrape time instead of being updated on the hot path. The per-request
// series (requests, TTFT, ITL, E2E, in-flight) are plain numbers behind cached per-label-set
// children: prom-client hashes the label object on every inc/observe, which cost more than the
// rest of the router's bookkeeping together; these are formatted by prom-client only at scrape.
import { createRequire } from "node:module";
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from "prom-client";
import type { TenantMetricsSink } from "../../tenancy/router-gate.js";
import { CounterFamily, HistogramChild, HistogramFamily } from "../../obs/metric-families.js";

const LATENCY_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
];
/**
 * a claim's answer is a round trip between two processes on one host: tens of microseconds idle; one
 * unanswered for 2 s stands unconfirmed, just over the 2 s bound, so the 5 s bucket holds those
 */
const CLAIM_WAIT_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2, 5];
const ITL_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10,
];
const E2E_BUCKETS = [
  0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 60, 120, 240, 480, 960,
];

/** This package's version, for switchyard_build_info. */
function packageVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    for (const rel of ["../../../package.json", "../../../../package.json"]) {
      try {
        const pkg = require(rel) as { name?: string; version?: string };
        if (pkg.name === "switchyard" && typeof pkg.version === "string") return pkg.version;
      } catch {
        // not at this depth (compiled under dist/ or run from src/)
      }
    }
  } catch {
    // no package.json: an embedded build
  }
  return "unknown";
}

/** The series one request updates, bound once per (model) and per (model, engine, status, policy). */
export interface ModelSeries {
  ttft: HistogramChild;
  itl: HistogramChild;
  e2e: HistogramChild;
}

export interface EngineGaugeSource {
  forEachEngine(
    fn: (
      url: string,
      s: { healthy: boolean; inFlight: number; running: number; waiting: number; kv: number },
    ) => void,
  ): void;
  queueDepth(): number;
  /** the span exporter when tracing is on */
  tracing?(): { exported: number; dropped: Record<string, number> } | undefined;
  /** response affinity (dataplane/response-affinity.ts): ids remembered, and dropped to stay within the cap */
  responseIds?(): { size: number; evictions: number };
  /** session identity (src/routing/session-identity.ts): sessions held, dropped, and found by source */
  sessions?(): { size: number; evictions: number; expired: number; found: Record<string, number> };
  /** tenancy's keys: how many are in force, whether the last reload was refused, refusals by why */
  tenancyKeys?(): { keys: number; stale: boolean; refused: Record<string, number> };
}

export class RouterMetrics {
  readonly registry = new Registry();
  readonly requests = new CounterFamily(
    "switchyard_requests_total",
    "Requests answered by the router, by model, engine (none when not routed), HTTP status and policy",
    ["model", "engine", "status", "policy"] as const,
  );
  readonly ttft = new HistogramFamily(
    "switchyard_time_to_first_token_seconds",
    "Time from the request's arrival at the router to the first response byte sent to the client",
    "model",
    LATENCY_BUCKETS,
  );
  readonly itl = new HistogramFamily(
    "switchyard_inter_chunk_latency_seconds",
    "Gap between consecutive streamed chunks relayed to the client",
    "model",
    ITL_BUCKETS,
  );
  readonly e2e = new HistogramFamily(
    "switchyard_e2e_request_latency_seconds",
    "Time from the request's arrival at the router to the end of the response",
    "model",
    E2E_BUCKETS,
  );
  /** per tenant (configured names only: the label set is bounded by the config); never keys */
  readonly tenantRequests = new CounterFamily(
    "switchyard_tenant_requests_total",
    "Requests of each tenant answered by the router, by HTTP status",
    ["tenant", "status"] as const,
  );
  readonly tenantRejected = new CounterFamily(
    "switchyard_tenant_rejected_total",
    "Requests refused for a tenant limit, by the limit (requests_per_minute, prompt_tokens_per_minute, completion_tokens_per_minute, concurrent_requests, adapter_loads_per_minute, store)",
    ["tenant", "limit"] as const,
  );
  readonly tenantTokens = new CounterFamily(
    "switchyard_tenant_tokens_total",
    "Tokens charged to each tenant (prompt, completion), from the engines' usage or the router's estimate",
    ["tenant", "kind"] as const,
  );
  readonly tenantQueueWait = new HistogramFamily(
    "switchyard_tenant_queue_wait_seconds",
    "Time a tenant's request waited in the fair admission queue before an engine had room",
    "tenant",
    LATENCY_BUCKETS,
  );
  /** what the tenancy gate counts per tenant, into the families above */
  readonly tenantBooks: TenantMetricsSink = {
    finished: (t, status) => this.tenantRequests.child(t, String(status)).value++,
    tokens: (t, kind, n) => (this.tenantTokens.child(t, kind).value += n),
    rejected: (t, limit) => this.tenantRejected.child(t, limit).value++,
  };
  /** a request of `flow` left the admission queue after `seconds` */
  readonly tenantWaited = (flow: string, seconds: number): void =>
    this.tenantQueueWait.child(flow).observe(seconds);
  readonly connectionsDropped = new CounterFamily(
    "switchyard_connections_dropped_total",
    "Client connections refused because limits.maxConnections were open and every one had a request in progress",
    [] as const,
  );
  readonly connectionsRebalanced = new CounterFamily(
    "switchyard_connections_rebalanced_total",
    "Client connections a router worker closed after their response (connection: close) because it held more than its share of the group's",
    [] as const,
  );
  readonly connectionsReclaimed = new CounterFamily(
    "switchyard_connections_reclaimed_total",
    "Idle client connections (keep-alive between requests, or never used) closed to make room for a new one at limits.maxConnections",
    [] as const,
  );
  readonly accessLinesSkipped = new CounterFamily(
    "switchyard_access_log_lines_skipped_total",
    "Successful requests given no access line because accessLog.maxPerSecond were written that second",
    [] as const,
  );
  private readonly skippedLine = this.accessLinesSkipped.child();
  /** a successful request given no access line (accessLog.maxPerSecond) */
  readonly accessLineSkipped = (): void => {
    this.skippedLine.value++;
  };
  /** the tokenizer endpoints, kept out of the generation series above */
  readonly tokenizerRequests = new CounterFamily(
    "switchyard_tokenizer_requests_total",
    "Requests to the tokenizer endpoints (/tokenize, /detokenize), by route and HTTP status; not in switchyard_requests_total",
    ["route", "status"] as const,
  );
  /** the relayed routes that neither infer nor tokenize (../request/endpoints.ts: counted "other") */
  readonly otherRequests = new CounterFamily(
    "switchyard_other_requests_total",
    "Requests to relayed routes that generate nothing (render, stored responses, count_tokens, /version, ...), by route (the path as vLLM declares it) and HTTP status; not in switchyard_requests_total",
    ["route", "status"] as const,
  );
  /** streams that broke off mid-response, by model, why, and what became of them */
  readonly migrations = new CounterFamily(
    "switchyard_migrations_total",
    "Streams whose engine failed or was drained after the first byte, by model, reason (connection_lost, " +
      "closed, idle_timeout, error_event, drain, ejected) and outcome (continued on another engine; ended " +
      "by the router, the answer being complete; not_migratable, no_token_ids, limit, poisoned, failed: " +
      "ended with an error event)",
    ["model", "reason", "outcome"] as const,
  );
  readonly migrationGap = new HistogramFamily(
    "switchyard_migration_seconds",
    "Time from a stream's break to the first byte relayed from the engine that continues it",
    "model",
    LATENCY_BUCKETS,
  );
  /** router workers: how long a load-aware pick waited for the primary's answer (../cluster/claims.ts) */
  readonly claimWait = new HistogramFamily(
    "switchyard_routing_claim_wait_seconds",
    "Router workers: time from a load-aware pick to the primary's answer (confirmed, or refused: cancelled on its engine and decided again), or to standing unanswered, by result; the request is at its engine meanwhile, its answer held",
    "result",
    CLAIM_WAIT_BUCKETS,
  );
  /** router workers: how long engines' answers waited for the group's word on their picks (dataplane/attempt.ts) */
  readonly claimHeld = new HistogramFamily(
    "switchyard_routing_claim_held_seconds",
    "Router workers: time an engine's answer waited for the primary's word on its load-aware pick, from its first byte (only answers that came before the word; what claims add to TTFT)",
    "model",
    CLAIM_WAIT_BUCKETS,
  );
  /** histogram children of requests outside the generation metrics: observed, never exported */
  readonly unlistedSeries: ModelSeries = {
    ttft: new HistogramChild([], {}),
    itl: new HistogramChild([], {}),
    e2e: new HistogramChild([], {}),
  };
  readonly retries: Counter<"model" | "reason">;
  readonly ejections: Counter<"engine" | "reason">;
  readonly ejectionsWithheld: Counter<"engine" | "reason">;
  readonly probeTimeoutsExcused: Counter<"engine" | "why">;
  readonly panics: Counter<"model">;
  readonly poisoned: Counter<"model">;
  readonly rejected: Counter<"reason">;
  /** router workers' load-aware picks put to the primary (src/router/cluster/claims.ts) */
  readonly claims: Counter<"result">;
  /** client requests being served now; read at scrape */
  inFlight = 0;
  private readonly perModel = new Map<string, ModelSeries>();

  constructor(source: EngineGaugeSource) {
    const r = this.registry;
    for (const m of [
      this.requests,
      this.ttft,
      this.itl,
      this.e2e,
      this.tenantRequests,
      this.tenantRejected,
      this.tenantTokens,
      this.tenantQueueWait,
      this.connectionsDropped,
      this.connectionsReclaimed,
      this.connectionsRebalanced,
      this.accessLinesSkipped,
      this.tokenizerRequests,
      this.otherRequests,
      this.migrations,
      this.migrationGap,
      this.claimWait,
      this.claimHeld,
    ])
      r.registerMetric(m as unknown as Metric);
    // process_cpu_seconds_total, process_resident_memory_bytes, nodejs_eventloop_lag_seconds, ...
    collectDefaultMetrics({ register: r });
    new Gauge({
      name: "switchyard_build_info",
      help: "Always 1; the labels say which build runs (version, Node.js version)",
      labelNames: ["version", "node_version"],
      registers: [r],
    }).set({ version: packageVersion(), node_version: process.version }, 1);
    this.retries = new Counter({
      name: "switchyard_retries_total",
      help: "Attempts retried on another engine (or sent again to theirs when it closed their connection under them), by model and reason",
      labelNames: ["model", "reason"],
      registers: [r],
    });
    this.ejections = new Counter({
      name: "switchyard_engine_ejections_total",
      help: "Engines taken out of rotation, by reason (health, passive)",
      labelNames: ["engine", "reason"],
      registers: [r],
    });
    this.ejectionsWithheld = new Counter({
      name: "switchyard_engine_ejections_withheld_total",
      help:
        "Ejections not made because health.maxEjectionPercent of the engine's model were out of rotation " +
        "already; the engine stays in rotation",
      labelNames: ["engine", "reason"],
      registers: [r],
    });
    this.probeTimeoutsExcused = new Counter({
      name: "switchyard_health_probe_timeouts_excused_total",
      help:
        "Health probes that timed out but did not count as failures, by why: progress (the engine sent " +
        "bytes on its requests meanwhile) or router_lag (the router's own event loop ran late)",
      labelNames: ["engine", "why"],
      registers: [r],
    });
    this.panics = new Counter({
      name: "switchyard_panic_routed_requests_total",
      help: "Requests routed while no engine of their model was in rotation (panic mode: routed among all of them)",
      labelNames: ["model"],
      registers: [r],
    });
    this.poisoned = new Counter({
      name: "switchyard_poison_requests_total",
      help: "Requests not retried because engines failed while serving them (retry.poisonAfter): possible poison requests",
      labelNames: ["model"],
      registers: [r],
    });
    this.rejected = new Counter({
      name: "switchyard_rejected_requests_total",
      help: "Requests refused by admission control or the retry budget, by reason",
      labelNames: ["reason"],
      registers: [r],
    });
    this.claims = new Counter({
      name: "switchyard_routing_claims_total",
      help: "Router workers: load-aware picks put to the primary, by result (confirmed; refused: made without counting another process's pick, decided again; unconfirmed: no answer in time, the pick stood)",
      labelNames: ["result"],
      registers: [r],
    });
    const inFlight = () => this.inFlight;
    new Gauge({
      name: "switchyard_requests_in_flight",
      help: "Client requests the router is serving now",
      registers: [r],
      collect() {
        this.set(inFlight());
      },
    });
    const engineGauge = (
      name: string,
      help: string,
      pick: (s: Parameters<Parameters<EngineGaugeSource["forEachEngine"]>[0]>[1]) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ["engine"],
        registers: [r],
        collect() {
          this.reset();
          source.forEachEngine((url, s) => this.set({ engine: url }, pick(s)));
        },
      });
    engineGauge("switchyard_engine_healthy", "1 when the engine is in rotation, 0 when ejected", (s) =>
      s.healthy ? 1 : 0,
    );
    engineGauge(
      "switchyard_engine_in_flight",
      "Requests this router has in flight on the engine",
      (s) => s.inFlight,
    );
    engineGauge("switchyard_engine_requests_running", "Scraped vllm:num_requests_running", (s) => s.running);
    engineGauge("switchyard_engine_requests_waiting", "Scraped vllm:num_requests_waiting", (s) => s.waiting);
    engineGauge("switchyard_engine_kv_cache_usage", "Scraped vllm:kv_cache_usage_perc (0..1)", (s) => s.kv);
    const tracing = () => source.tracing?.();
    new Counter({
      name: "switchyard_tracing_spans_exported_total",
      help: "Spans accepted by the OTLP collector (0 with tracing off)",
      registers: [r],
      collect() {
        this.reset();
        this.inc(tracing()?.exported ?? 0);
      },
    });
    new Counter({
      name: "switchyard_tracing_spans_dropped_total",
      help: "Spans lost: export queue full, or the collector refused or was unreachable",
      labelNames: ["reason"],
      registers: [r],
      collect() {
        this.reset();
        const t = tracing();
        if (t) for (const [reason, n] of Object.entries(t.dropped)) this.inc({ reason }, n);
      },
    });
    const ids = () => source.responseIds?.() ?? { size: 0, evictions: 0 };
    new Gauge({
      name: "switchyard_response_affinity_ids",
      help: "Response ids the router remembers with the engine that made them (stored responses' follow-ups go there)",
      registers: [r],
      collect() {
        this.set(ids().size);
      },
    });
    new Counter({
      name: "switchyard_response_affinity_evictions_total",
      help: "Response ids forgotten to stay within responses.maxIds (least recently used first); a follow-up naming one gets 404",
      registers: [r],
      collect() {
        this.reset();
        this.inc(ids().evictions);
      },
    });
    const tenancyKeys = () => source.tenancyKeys?.();
    new Gauge({
      name: "switchyard_tenancy_keys",
      help: "Tenant API keys in force (0: tenancy off)",
      registers: [r],
      collect() {
        this.set(tenancyKeys()?.keys ?? 0);
      },
    });
    new Gauge({
      name: "switchyard_tenancy_keys_stale",
      help: "1 while the last key reload was refused and the router serves the last good key set (the log names why)",
      registers: [r],
      collect() {
        this.set(tenancyKeys()?.stale ? 1 : 0);
      },
    });
    new Counter({
      name: "switchyard_tenancy_key_reloads_refused_total",
      help: "Key reloads refused, the previous keys kept, by reason (emptied: the new set had no tenant keys, which would switch tenancy off; invalid: it did not parse or read)",
      labelNames: ["reason"],
      registers: [r],
      collect() {
        this.reset();
        const k = tenancyKeys();
        if (k) for (const [reason, n] of Object.entries(k.refused)) this.inc({ reason }, n);
      },
    });
    const sessions = () => source.sessions?.();
    new Gauge({
      name: "switchyard_sessions",
      help: "Sessions the router remembers (session identity; at most session.maxSessions)",
      registers: [r],
      collect() {
        this.set(sessions()?.size ?? 0);
      },
    });
    new Counter({
      name: "switchyard_sessions_dropped_total",
      help: "Sessions forgotten: reason cap (the least recently seen, past session.maxSessions) or idle (unseen for session.idleTimeout)",
      labelNames: ["reason"],
      registers: [r],
      collect() {
        this.reset();
        const s = sessions();
        if (!s) return;
        this.inc({ reason: "cap" }, s.evictions);
        this.inc({ reason: "idle" }, s.expired);
      },
    });
    new Counter({
      name: "switchyard_session_requests_total",
      help: "Generation requests whose session was found, by where: agentic-context, header, body, response-chain, inferred",
      labelNames: ["source"],
      registers: [r],
      collect() {
        this.reset();
        const s = sessions();
        if (s) for (const [source, n] of Object.entries(s.found)) this.inc({ source }, n);
      },
    });
    new Gauge({
      name: "switchyard_queue_depth",
      help: "Requests waiting in the router's admission queue",
      registers: [r],
      collect() {
        this.set(source.queueDepth());
      },
    });
  }

  /** Pre-bound histogram children per model, so the per-chunk path does no label hashing. */
  forModel(model: string): ModelSeries {
    let m = this.perModel.get(model);
    if (!m) {
      // model names reaching here were validated against the fleet, so the map is bounded by it
      if (this.perModel.size > 4096) this.perModel.clear();
      m = { ttft: this.ttft.child(model), itl: this.itl.child(model), e2e: this.e2e.child(model) };
      this.perModel.set(model, m);
    }
    return m;
  }

  /**
   * The LoRA adapters the router loads (src/router/engines/adapters.ts): loads, failed loads, unloads
   * (host-cache evictions it asked for) and the seconds loads took, read at scrape
   */
  watchAdapters(stats: {
    loads: number;
    loadFailures: number;
    unloads: number;
    loadSecondsTotal: number;
    loadsByTenant: ReadonlyMap<string, number>;
  }): void {
    const r = this.registry;
    // counters that follow the loader's own totals: each scrape adds what they grew by since the last
    const counter = (name: string, help: string, read: () => number) => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          const now = read();
          if (now > seen) this.inc(now - seen);
          seen = now;
        },
      });
    };
    // by the tenant whose request caused the load ("" without tenancy): a load is that tenant's cost
    const seenBy = new Map<string, number>();
    new Counter({
      name: "switchyard_lora_loads_total",
      help: "LoRA adapter loads the router started through the engines' load API, by the tenant whose request caused them",
      labelNames: ["tenant"],
      registers: [r],
      collect() {
        for (const [tenant, now] of stats.loadsByTenant) {
          const was = seenBy.get(tenant) ?? 0;
          if (now > was) this.inc({ tenant }, now - was);
          seenBy.set(tenant, now);
        }
      },
    });
    counter(
      "switchyard_lora_load_failures_total",
      "LoRA adapter loads an engine refused or did not answer",
      () => stats.loadFailures,
    );
    counter(
      "switchyard_lora_unloads_total",
      "LoRA adapters the router unloaded to stay within max_cpu_loras",
      () => stats.unloads,
    );
    counter(
      "switchyard_lora_load_seconds_total",
      "Seconds the router's LoRA adapter loads took",
      () => stats.loadSecondsTotal,
    );
  }

  /** Counts one stream's break and what became of it. */
  countMigration(model: string, reason: string, outcome: string): void {
    this.migrations.child(model, reason, outcome).value++;
  }

  /**
   * Counts one answered request outside the generation metrics (no TTFT, no requests_total): the
   * tokenizer routes, or the others that generate nothing; `route` is the path as the endpoint table
   * declares it (`/v1/responses/{id}`), so ids never become labels.
   */
  countUnlisted(route: string, status: number, family: "tokenizer" | "other" = "tokenizer"): void {
    const q = route.indexOf("?");
    const f = family === "tokenizer" ? this.tokenizerRequests : this.otherRequests;
    f.child(q >= 0 ? route.slice(0, q) : route, statusText(status)).value++;
  }

  /** Counts one answered request; the child per label set is cached by the family. */
  countRequest(model: string, engine: string, status: number, policy: string): void {
    this.requests.child(model, engine, statusText(status), policy).value++;
  }
}

const STATUS_TEXT: string[] = [];
function statusText(status: number): string {
  if (status < 0 || status > 999) return String(status);
  return (STATUS_TEXT[status] ??= String(status));
}
