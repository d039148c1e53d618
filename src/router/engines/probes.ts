// The registry's background loops: health probes, /v1/models and /metrics scrapes, run concurrently
// across engines, each with a timeout and at most one probe of a kind per engine in flight, so a hung
// engine never stalls the rest. What a probe means for rotation is health.ts's to decide; what the
// registry keeps of an engine, registry.ts's. Only the process that decides health runs them (a router
// worker's registry follows its primary's).
import type { RouterConfig } from "../config/config.js";
import { logger } from "../../obs/log.js";
import { engineGet, UpstreamHttpError } from "./engine-get.js";
import { ENGINE_DRAINING, type Health } from "./health.js";
import { parseEngineMetrics, type EngineLoad } from "./scrape.js";
import type { ModelCard, EngineRecord } from "./engine-record.js";
import { PeerError } from "../../errors/index.js";

// the registry's logger: these lines were always the registry's
const log = logger("router.registry");

const MAX_MODELS_PER_ENGINE = 4096;

/** What the probes read and tell: the registry's records, its health rules, and its events. */
export interface ProbeTarget {
  readonly engines: ReadonlyMap<string, EngineRecord>;
  readonly health: Health;
  config(): RouterConfig;
  applyLoad(e: EngineRecord, load: EngineLoad, scrapedAtMs: number): void;
  /** a probe or scrape may have changed what the registry says of `e` */
  changed(e: EngineRecord): void;
  /** `e`'s served models changed (it may now take their requests) */
  modelsChanged(e: EngineRecord): void;
  /** a /metrics page was read from `e` */
  scraped(e: EngineRecord, text: string): void;
}

export class Probes {
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly t: ProbeTarget) {}

  /** whether the loops run (a config change to their intervals restarts them) */
  get running(): boolean {
    return this.timers.length > 0;
  }

  async checkHealth(e: EngineRecord): Promise<void> {
    if (!e.claim("health")) return;
    try {
      const verdict = await this.t.health.probe(e, (signal) => this.healthOf(e, signal));
      if (this.t.health.judge(e, verdict) === "admit") {
        // first contact (or re-admission): admit as soon as the engine has told us its models
        if (e.view.models.size === 0) await this.refreshModels(e, true);
        if (e.view.models.size > 0 || e.state === "ejected") this.t.health.setHealthy(e);
      }
    } finally {
      e.release("health");
      this.t.changed(e);
    }
  }

  /**
   * GET /health; a 503 there is a drain, not a failure, when the engine's /live still answers 200
   * (vLLM's drain on shutdown: /health 503 for load balancers, /live 200 until the engine is dead).
   */
  private async healthOf(e: EngineRecord, signal: AbortSignal): Promise<void> {
    const cfg = this.t.config();
    try {
      await engineGet(e, "/health", signal, 64 * 1024, cfg);
    } catch (err) {
      if (!(err instanceof UpstreamHttpError && err.status === 503)) throw err;
      const live = await engineGet(e, "/live", signal, 64 * 1024, cfg).then(
        () => true,
        () => false,
      );
      throw live ? new PeerError(ENGINE_DRAINING) : err;
    }
  }

  /** `engineGet` bounded in time too. */
  private get(e: EngineRecord, path: string, timeoutMs: number, maxBytes: number): Promise<string> {
    return engineGet(e, path, AbortSignal.timeout(Math.max(1, timeoutMs)), maxBytes, this.t.config());
  }

  async refreshModels(e: EngineRecord, force = false): Promise<void> {
    if (!force && !e.claim("models")) return;
    try {
      const text = await this.get(e, "/v1/models", this.t.config().health.timeout * 5, 8 * 2 ** 20);
      const doc = JSON.parse(text) as { data?: unknown };
      if (!Array.isArray(doc.data)) throw new PeerError("/v1/models: no data array");
      const cards: ModelCard[] = [];
      for (const m of doc.data.slice(0, MAX_MODELS_PER_ENGINE)) {
        if (m && typeof m === "object" && typeof (m as ModelCard).id === "string") cards.push(m as ModelCard);
      }
      e.modelCards = cards;
      const names = new Set(cards.map((c) => c.id));
      const before = e.view.models;
      if (names.size !== before.size || [...names].some((n) => !before.has(n))) {
        e.view.models.clear();
        for (const n of names) e.view.models.add(n);
        log.info({ engine: e.url, models: [...names] }, "engine models");
        this.t.modelsChanged(e);
      }
      e.lastModelsMs = Date.now();
    } catch (err) {
      e.lastError = `models: ${(err as Error).message}`;
    } finally {
      if (!force) e.release("models");
      this.t.changed(e);
    }
  }

  async scrapeMetrics(e: EngineRecord): Promise<void> {
    if (!e.claim("metrics")) return;
    try {
      const cfg = this.t.config();
      const text = await this.get(e, "/metrics", cfg.discovery.metricsTimeout, cfg.discovery.maxMetricsBytes);
      this.t.applyLoad(e, parseEngineMetrics(text), Date.now());
      this.t.scraped(e, text);
    } catch (err) {
      // stale load would mislead routing: forget it and let in-flight counts speak
      e.view.running = 0;
      e.view.waiting = 0;
      e.lastError = `metrics: ${(err as Error).message}`;
    } finally {
      e.release("metrics");
      this.t.changed(e);
    }
  }

  /** A new engine's first look: its health (and models), then its load. */
  async probeNow(e: EngineRecord): Promise<void> {
    await this.checkHealth(e);
    await this.scrapeMetrics(e);
  }

  private each(fn: (e: EngineRecord) => Promise<void>): void {
    for (const e of this.t.engines.values()) if (!e.draining) void fn(e);
  }

  start(): void {
    const cfg = this.t.config();
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, Math.max(50, ms));
      t.unref();
      this.timers.push(t);
    };
    every(cfg.health.interval, () => this.each((e) => this.checkHealth(e)));
    every(cfg.discovery.modelsInterval, () =>
      this.each((e) => (e.state === "ejected" ? Promise.resolve() : this.refreshModels(e))),
    );
    every(cfg.discovery.metricsInterval, () =>
      this.each((e) => (e.state === "ejected" ? Promise.resolve() : this.scrapeMetrics(e))),
    );
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }
}
