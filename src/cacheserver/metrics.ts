// Prometheus metrics for the cache server, on a registry of its own so that several servers in one
// process (tests, `switchyard up`) do not collide. Label children are resolved once: the hot path
// only increments.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ChunkAnnouncer } from "./kv-events.js";
import type { ProtocolErrorKind } from "./protocol.js";

export type Tier = "memory" | "disk";
export type CommandName = "put" | "get" | "exist" | "list" | "health" | "delete";

export interface Gauges {
  memoryObjects: () => number;
  memoryUsed: () => number;
  memoryBudget: () => number;
  diskObjects: () => number;
  diskUsed: () => number;
  diskMax: () => number;
  connections: () => number;
  /** free receive buffers kept for reuse (outside the budget); optional for callers that have none */
  bufferPool?: () => number;
  /** bytes reserved for PUTs in progress (part of memoryUsed) */
  memoryReserved?: () => number;
}

export class CacheMetrics {
  readonly registry = new Registry();
  private readonly hits: Counter<"tier">;
  readonly misses: Counter;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  private readonly evictions: Counter<"tier" | "outcome">;
  readonly connectionsTotal: Counter;
  readonly connectionsRefused: Counter;
  private readonly protocolErrors: Counter<"kind">;
  private readonly requests: Counter<"command">;
  readonly rejectedPuts: Counter;
  readonly putRefused: Counter;
  private readonly namespaceConnections: Counter<"namespace">;
  private readonly getLatency: Histogram<"tier">;

  readonly hitMemory;
  readonly hitDisk;
  readonly evictOffloaded;
  readonly evictDropped;
  readonly evictDisk;
  readonly getLatencyMemory;
  readonly getLatencyDisk;
  readonly getLatencyMiss;
  private readonly requestChildren: Record<CommandName, { inc: (n?: number) => void }>;

  constructor(g: Gauges) {
    const registers = [this.registry];
    this.hits = new Counter({
      name: "switchyard_cache_hits_total",
      help: "GET requests answered with an object, by the tier that held it",
      labelNames: ["tier"],
      registers,
    });
    this.misses = new Counter({
      name: "switchyard_cache_misses_total",
      help: "GET requests for absent keys",
      registers,
    });
    this.bytesIn = new Counter({
      name: "switchyard_cache_bytes_in_total",
      help: "payload bytes received in complete PUTs",
      registers,
    });
    this.bytesOut = new Counter({
      name: "switchyard_cache_bytes_out_total",
      help: "payload bytes sent in GET replies",
      registers,
    });
    this.evictions = new Counter({
      name: "switchyard_cache_evictions_total",
      help: "objects evicted: from memory to disk (offloaded), from memory with nowhere to go (dropped), from disk",
      labelNames: ["tier", "outcome"],
      registers,
    });
    this.connectionsTotal = new Counter({
      name: "switchyard_cache_connections_total",
      help: "client connections accepted",
      registers,
    });
    this.connectionsRefused = new Counter({
      name: "switchyard_cache_connections_refused_total",
      help: "client connections closed at accept because max connections were open",
      registers,
    });
    this.protocolErrors = new Counter({
      name: "switchyard_cache_protocol_errors_total",
      help: "connections closed for breaking the protocol, by kind",
      labelNames: ["kind"],
      registers,
    });
    this.requests = new Counter({
      name: "switchyard_cache_requests_total",
      help: "requests handled, by command",
      labelNames: ["command"],
      registers,
    });
    this.rejectedPuts = new Counter({
      name: "switchyard_cache_put_rejected_total",
      help: "complete PUTs not stored because the object could not fit in memory",
      registers,
    });
    this.putRefused = new Counter({
      name: "switchyard_cache_put_refused_total",
      help: "PUTs whose declared length could not be reserved in the memory budget (PUTs in progress held it): payload read and dropped",
      registers,
    });
    this.namespaceConnections = new Counter({
      name: "switchyard_cache_namespace_connections_total",
      help: "connections accepted, by the namespace they were placed in (default: none configured or matched)",
      labelNames: ["namespace"],
      registers,
    });
    this.getLatency = new Histogram({
      name: "switchyard_cache_get_latency_seconds",
      help: "time from a GET header to its reply being handed to the socket, by tier (miss for misses)",
      labelNames: ["tier"],
      buckets: [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    const gauge = (name: string, help: string, fn: () => number, labels?: Record<string, string>) =>
      new Gauge({
        name,
        help,
        labelNames: labels ? Object.keys(labels) : [],
        registers,
        collect() {
          if (labels) this.set(labels, fn());
          else this.set(fn());
        },
      });
    new Gauge({
      name: "switchyard_cache_objects",
      help: "objects stored, by tier",
      labelNames: ["tier"],
      registers,
      collect() {
        this.set({ tier: "memory" }, g.memoryObjects());
        this.set({ tier: "disk" }, g.diskObjects());
      },
    });
    gauge("switchyard_cache_memory_used_bytes", "bytes charged to the memory budget", g.memoryUsed);
    gauge(
      "switchyard_cache_memory_reserved_bytes",
      "bytes of the memory budget reserved for PUTs in progress (included in memory_used_bytes)",
      g.memoryReserved ?? (() => 0),
    );
    gauge("switchyard_cache_memory_budget_bytes", "the memory budget (--max-memory)", g.memoryBudget);
    gauge(
      "switchyard_cache_disk_used_bytes",
      "bytes of object files on disk, writes in flight included",
      g.diskUsed,
    );
    gauge(
      "switchyard_cache_disk_max_bytes",
      "the disk budget (--max-disk); 0 without a disk tier",
      g.diskMax,
    );
    gauge("switchyard_cache_connections", "client connections open now", g.connections);
    gauge(
      "switchyard_cache_buffer_pool_bytes",
      "freed receive buffers kept for the next PUT of their size (outside the memory budget)",
      g.bufferPool ?? (() => 0),
    );

    this.hitMemory = this.hits.labels("memory");
    this.hitDisk = this.hits.labels("disk");
    this.evictOffloaded = this.evictions.labels("memory", "offloaded");
    this.evictDropped = this.evictions.labels("memory", "dropped");
    this.evictDisk = this.evictions.labels("disk", "dropped");
    this.getLatencyMemory = this.getLatency.labels("memory");
    this.getLatencyDisk = this.getLatency.labels("disk");
    this.getLatencyMiss = this.getLatency.labels("miss");
    this.requestChildren = {
      put: this.requests.labels("put"),
      get: this.requests.labels("get"),
      exist: this.requests.labels("exist"),
      list: this.requests.labels("list"),
      health: this.requests.labels("health"),
      delete: this.requests.labels("delete"),
    };
    for (const kind of [
      "unknown_command",
      "negative_length",
      "oversized_length",
      "empty_key",
      "bad_key",
      "truncated_header",
      "truncated_payload",
    ] as ProtocolErrorKind[])
      this.protocolErrors.labels(kind).inc(0);
  }

  request(cmd: CommandName): void {
    this.requestChildren[cmd].inc();
  }

  /** `label`: namespaceLabel(ns), from the configured namespaces only (bounded cardinality). */
  namespaceConnection(label: string): void {
    this.namespaceConnections.labels(label).inc();
  }

  protocolError(kind: ProtocolErrorKind): void {
    this.protocolErrors.labels(kind).inc();
  }

  /** The KV events' figures (`--kv-events-port`), read at scrape time; zeros while they are off. */
  kvEvents(announcer: () => ChunkAnnouncer | undefined): void {
    const registers = [this.registry];
    new Counter({
      name: "switchyard_cache_kv_events_chunks_total",
      help: "chunk hashes announced in KV events: stored (every TP rank's shard held) or removed (one gone from memory and disk)",
      labelNames: ["event"],
      registers,
      collect() {
        this.reset();
        const a = announcer();
        this.inc({ event: "stored" }, a?.stats.stored ?? 0);
        this.inc({ event: "removed" }, a?.stats.removed ?? 0);
      },
    });
    new Gauge({
      name: "switchyard_cache_kv_events_keys",
      help: "LMCache chunk shard keys the KV events follow (capped; the oldest forgotten beyond)",
      registers,
      collect() {
        this.set(announcer()?.size ?? 0);
      },
    });
    new Counter({
      name: "switchyard_cache_kv_events_forgotten_total",
      help: "shard keys the KV events stopped following at their cap while still held (their chunks announced removed)",
      registers,
      collect() {
        this.reset();
        this.inc(announcer()?.stats.forgotten ?? 0);
      },
    });
  }
}
