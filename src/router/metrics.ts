// The router's own Prometheus metrics, all under `switchyard_` so they never collide with the
// engines' `vllm:` series when both are scraped into one Prometheus. Per-engine gauges are read
// from the registry at scrape time instead of being updated on the hot path.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

const LATENCY_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
];
const ITL_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10,
];
const E2E_BUCKETS = [
  0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 60, 120, 240, 480, 960,
];

export interface EngineGaugeSource {
  forEachEngine(
    fn: (
      url: string,
      s: { healthy: boolean; inFlight: number; running: number; waiting: number; kv: number },
    ) => void,
  ): void;
  queueDepth(): number;
}

export class RouterMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"model" | "engine" | "status" | "policy">;
  readonly ttft: Histogram<"model">;
  readonly itl: Histogram<"model">;
  readonly e2e: Histogram<"model">;
  readonly retries: Counter<"model" | "reason">;
  readonly ejections: Counter<"engine" | "reason">;
  readonly rejected: Counter<"reason">;
  readonly inFlight: Gauge;
  private readonly perModel = new Map<
    string,
    { ttft: Histogram.Internal<"model">; itl: Histogram.Internal<"model">; e2e: Histogram.Internal<"model"> }
  >();

  constructor(source: EngineGaugeSource) {
    const r = this.registry;
    this.requests = new Counter({
      name: "switchyard_requests_total",
      help: "Requests answered by the router, by model, engine (none when not routed), HTTP status and policy",
      labelNames: ["model", "engine", "status", "policy"],
      registers: [r],
    });
    this.ttft = new Histogram({
      name: "switchyard_time_to_first_token_seconds",
      help: "Time from the request's arrival at the router to the first response byte sent to the client",
      labelNames: ["model"],
      buckets: LATENCY_BUCKETS,
      registers: [r],
    });
    this.itl = new Histogram({
      name: "switchyard_inter_chunk_latency_seconds",
      help: "Gap between consecutive streamed chunks relayed to the client",
      labelNames: ["model"],
      buckets: ITL_BUCKETS,
      registers: [r],
    });
    this.e2e = new Histogram({
      name: "switchyard_e2e_request_latency_seconds",
      help: "Time from the request's arrival at the router to the end of the response",
      labelNames: ["model"],
      buckets: E2E_BUCKETS,
      registers: [r],
    });
    this.retries = new Counter({
      name: "switchyard_retries_total",
      help: "Attempts retried on another engine, by model and reason",
      labelNames: ["model", "reason"],
      registers: [r],
    });
    this.ejections = new Counter({
      name: "switchyard_engine_ejections_total",
      help: "Engines taken out of rotation, by reason (health, passive)",
      labelNames: ["engine", "reason"],
      registers: [r],
    });
    this.rejected = new Counter({
      name: "switchyard_rejected_requests_total",
      help: "Requests refused by admission control or the retry budget, by reason",
      labelNames: ["reason"],
      registers: [r],
    });
    this.inFlight = new Gauge({
      name: "switchyard_requests_in_flight",
      help: "Client requests the router is serving now",
      registers: [r],
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
  forModel(model: string): {
    ttft: Histogram.Internal<"model">;
    itl: Histogram.Internal<"model">;
    e2e: Histogram.Internal<"model">;
  } {
    let m = this.perModel.get(model);
    if (!m) {
      // model names reaching here were validated against the fleet, so the map is bounded by it
      if (this.perModel.size > 4096) this.perModel.clear();
      m = { ttft: this.ttft.labels(model), itl: this.itl.labels(model), e2e: this.e2e.labels(model) };
      this.perModel.set(model, m);
    }
    return m;
  }
}
