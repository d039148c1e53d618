// The primary's half of a router process group: the one registry that discovers engines, probes
// them, scrapes their load and judges their health (the same EngineRegistry and Health a lone router runs),
// with the workers' live-traffic signals fed in. Every change is sent to the workers as it happens
// (coalesced per event-loop turn), models before the state that may admit an engine with them.
import { discoverySources } from "../../discovery/index.js";
import { StaticDiscovery } from "../../discovery/static.js";
import { engineSpecs, type RouterConfig } from "../config/config.js";
import { parsePrefixCacheHits } from "../kv/watchdog.js";
import { RouterMetrics } from "../telemetry/metrics.js";
import { registerZmqGuardMetrics } from "../kv/metrics.js";
import { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { EngineStatus, ToWorker } from "./protocol.js";
import { SharedLoad } from "./shared-load.js";

function statusOf(e: EngineRecord, prefixCacheHits: number | undefined): EngineStatus {
  return {
    ...(prefixCacheHits !== undefined ? { prefixCacheHits } : {}),
    spec: e.spec,
    state: e.state,
    healthFailures: e.healthFailures,
    healthSuccesses: e.healthSuccesses,
    passiveFailures: e.passiveFailures,
    lastError: e.lastError,
    load: e.load,
    lastScrapeMs: e.lastScrapeMs,
    lastModelsMs: e.lastModelsMs,
  };
}

export class ControlPlane {
  readonly registry: EngineRegistry;
  /** ejections, withheld ejections, excused probes: counted here, aggregated into the group's /metrics */
  readonly metrics: RouterMetrics;
  /** the workers' (and replicas') in-flight counts, summed per engine */
  readonly load: SharedLoad;
  private readonly discovery: StaticDiscovery;
  private readonly sentStatus = new Map<string, string>();
  private readonly sentModels = new Map<string, string>();
  private readonly dirty = new Set<EngineRecord>();
  private flushScheduled = false;
  /** per engine, vllm:prefix_cache_hits at its last scrape (the workers' watchdogs read no page) */
  private readonly hits = new Map<string, number>();

  constructor(
    private cfg: RouterConfig,
    private readonly broadcast: (m: ToWorker) => void,
  ) {
    this.metrics = new RouterMetrics({ forEachEngine: () => undefined, queueDepth: () => 0 });
    // the primary's own ZMQ sockets: the KV-event relay and the peer link
    registerZmqGuardMetrics(this.metrics.registry);
    const m = this.metrics;
    this.registry = new EngineRegistry(cfg, {
      onEject: (url, reason) => m.ejections.inc({ engine: url, reason }),
      onEjectWithheld: (url, reason) => m.ejectionsWithheld.inc({ engine: url, reason }),
      onProbeExcused: (url, why) => m.probeTimeoutsExcused.inc({ engine: url, why }),
    });
    this.load = new SharedLoad(this.registry);
    this.discovery = new StaticDiscovery(engineSpecs(cfg));
    this.registry.on("changed", (e) => this.mark(e));
    this.registry.on("models", (e) => this.mark(e));
    this.registry.on("added", (e) => this.mark(e));
    // "changed" follows at once and sends it
    this.registry.on("scraped", (e, text) => {
      const hits = parsePrefixCacheHits(text);
      if (hits !== null) this.hits.set(e.url, hits);
    });
  }

  async start(): Promise<void> {
    await this.registry.addSource(this.discovery);
    for (const src of discoverySources(this.cfg.discovery)) await this.registry.addSource(src);
    this.registry.startLoops();
  }

  reconfigure(cfg: RouterConfig): void {
    this.cfg = cfg;
    this.registry.setConfig(cfg);
    this.discovery.update(engineSpecs(cfg));
  }

  /** Every engine's models and status, for a worker that just started. */
  snapshot(): ToWorker[] {
    const out: ToWorker[] = [];
    for (const e of this.registry.engines.values()) {
      if (e.draining) continue;
      const status = statusOf(e, this.hits.get(e.url));
      // the record first, its models, then its state: a worker admits it knowing what it serves
      out.push({ t: "engine", status: { ...status, state: "probing" } });
      out.push({ t: "models", url: e.url, cards: e.modelCards });
      out.push({ t: "engine", status });
    }
    return out;
  }

  /** A worker's live traffic failed on the engine (a reset, a 5xx, a connect error). */
  failure(url: string, what: string): void {
    const e = this.registry.engines.get(url);
    if (e && !e.draining) this.registry.reportFailure(e, what);
  }

  /** A worker's request was refused by the engine's shutdown drain. */
  shuttingDown(url: string): void {
    const e = this.registry.engines.get(url);
    if (e && !e.draining) this.registry.reportShutdown(e);
  }

  success(url: string): void {
    const e = this.registry.engines.get(url);
    if (!e || e.draining) return;
    this.registry.reportSuccess(e);
    // the worker zeroed its copy: make sure it hears the count again even when nothing changed here
    this.sentStatus.delete(url);
    this.mark(e);
  }

  /**
   * A worker received bytes from the engine: a probe timing out meanwhile is excused
   * (../engines/health.ts).
   */
  progress(url: string): void {
    const e = this.registry.engines.get(url);
    if (e) e.lastByteAt = performance.now();
  }

  private mark(e: EngineRecord): void {
    this.dirty.add(e);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const e of this.dirty) {
      const url = e.url;
      if (e.draining || this.registry.engines.get(url) !== e) {
        if (this.sentStatus.delete(url)) this.broadcast({ t: "remove", url });
        this.sentModels.delete(url);
        this.hits.delete(url);
        continue;
      }
      const status = statusOf(e, this.hits.get(e.url));
      const models = JSON.stringify(e.modelCards);
      if (models !== this.sentModels.get(url)) {
        if (!this.sentStatus.has(url)) {
          // the record first (a worker creates it from the status), then its models, then the status
          // again below so that the worker admits it knowing what it serves
          this.broadcast({ t: "engine", status: { ...status, state: "probing" } });
        }
        this.sentModels.set(url, models);
        this.broadcast({ t: "models", url, cards: e.modelCards });
      }
      const s = JSON.stringify(status);
      if (s === this.sentStatus.get(url)) continue;
      this.sentStatus.set(url, s);
      this.broadcast({ t: "engine", status });
    }
    this.dirty.clear();
  }

  async close(): Promise<void> {
    await this.registry.close();
  }
}
