// The engine registry: the router's records of its engines (upstream.ts), kept as discovery says
// (the DiscoverySink), with the views the policies read, the in-flight slots requests take, panic
// mode's views and the end of a removed engine's drain. Its background probes are probes.ts's; whether
// an engine is in rotation is decided by health.ts (outlier detection); what every call to an engine
// carries, by upstream-rules.ts.
import { EventEmitter } from "node:events";
import { noteDone, noteFirstToken, noteScraped, noteSent, type EngineView } from "../../routing/index.js";
import type { DiscoverySink, DiscoverySource, EngineSpec } from "../../discovery/types.js";
import type { AdapterLoader } from "./adapters.js";
import type { EngineLoad } from "./scrape.js";
import { logger } from "../../obs/log.js";
import { backendTransport, type RouterConfig } from "../config/config.js";
import { Health, type HealthHooks } from "./health.js";
import { engineGet } from "./engine-get.js";
import { Probes } from "./probes.js";
import { transportKey, EngineRecord, type ModelCard } from "./engine-record.js";

/** how long after an engine is taken on a name it might serve is answered 503 + Retry-After, not 404 */
export const MODELS_UNKNOWN_MS = 30_000;

const log = logger("router.registry");

export interface RegistryEvents {
  /** an engine became usable or gained room: queued requests may proceed */
  capacity: [];
  /** an engine's served models changed (emitted before it can enter rotation with them) */
  models: [engine: EngineRecord];
  /** a probe, scrape or passive signal may have changed what the registry says of an engine */
  changed: [engine: EngineRecord];
  /** a new record for an engine (a new URL, or a new pool after a protocol change) */
  added: [engine: EngineRecord];
  /** an engine takes no new requests (it left discovery, or is draining); those in flight may finish */
  draining: [engine: EngineRecord];
  /** a /metrics page was scraped from an engine (for readers of other series than the load) */
  scraped: [engine: EngineRecord, text: string];
}

/**
 * A registry that follows another process's (router workers, src/router/cluster): it starts no probe
 * of its own, and sends what live traffic says of an engine to whoever decides its health.
 */
export interface RegistryLeader {
  failure(e: EngineRecord, what: string): void;
  shutdown(e: EngineRecord): void;
  success(e: EngineRecord): void;
}

export interface RegistryHooks extends HealthHooks {
  /** a request was routed while no engine of its model was in rotation */
  onPanic?: (model: string) => void;
}

export class EngineRegistry extends EventEmitter<RegistryEvents> implements DiscoverySink {
  readonly engines = new Map<string, EngineRecord>();
  /** views of the engines in rotation candidates (not draining), rebuilt only on membership change */
  private viewList: EngineView[] = [];
  private sources: DiscoverySource[] = [];
  private stopped = false;
  readonly health: Health;
  private readonly probes: Probes;
  private panicLoggedAt = -Infinity;
  /** set when another process decides health (a router worker): no probes, passive signals go there */
  leader: RegistryLeader | undefined;
  /** told of every slot taken or freed (router workers share the counts) */
  onSlot: ((e: EngineRecord) => void) | undefined;
  /** the LoRA adapters the router loads on demand (--lora-dir, `loras:`), when it manages any */
  adapters: AdapterLoader | null = null;

  constructor(
    private cfg: RouterConfig,
    private readonly hooks: RegistryHooks = {},
  ) {
    super();
    this.setMaxListeners(0);
    this.health = new Health(cfg, this.engines, {
      ...hooks,
      onCapacity: () => this.emit("capacity"),
      onDraining: (url) => {
        const e = this.engines.get(url);
        if (e) this.emit("draining", e);
      },
    });
    this.probes = new Probes({
      engines: this.engines,
      health: this.health,
      config: () => this.cfg,
      applyLoad: (e, load, at) => this.applyLoad(e, load, at),
      changed: (e) => this.emit("changed", e),
      modelsChanged: (e) => {
        this.emit("models", e);
        this.emit("capacity");
      },
      scraped: (e, text) => this.emit("scraped", e, text),
    });
  }

  setConfig(cfg: RouterConfig): void {
    const restartLoops =
      cfg.health.interval !== this.cfg.health.interval ||
      cfg.discovery.modelsInterval !== this.cfg.discovery.modelsInterval ||
      cfg.discovery.metricsInterval !== this.cfg.discovery.metricsInterval;
    this.cfg = cfg;
    this.health.setConfig(cfg);
    for (const e of this.engines.values()) e.view.maxInFlight = cfg.admission.maxInFlightPerEngine;
    if (restartLoops && this.probes.running) {
      this.probes.stop();
      this.probes.start();
    }
    this.emit("capacity");
  }

  async addSource(src: DiscoverySource): Promise<void> {
    this.sources.push(src);
    await src.start(this);
  }

  snapshot(): readonly EngineView[] {
    return this.viewList;
  }

  /**
   * Every engine in rotation holds its in-flight cap (admission.maxInFlightPerEngine): no request of
   * any model can be placed now. False without a cap or without an engine.
   */
  saturated(): boolean {
    if (this.viewList.length === 0) return false;
    for (const v of this.viewList) if (v.maxInFlight <= 0 || v.inFlight < v.maxInFlight) return false;
    return true;
  }

  upsert(spec: EngineSpec): void {
    const known = this.engines.get(spec.url);
    // a new protocol needs a new pool: the old record's requests finish on the old one (pool.close)
    if (known && !known.draining && known.transport === transportKey(backendTransport(this.cfg, spec.url))) {
      known.spec = spec;
      known.view.weight = spec.weight;
      this.emit("changed", known);
      return;
    }
    if (known) this.finishRemoval(known);
    const e = new EngineRecord(spec, this.cfg);
    this.engines.set(spec.url, e);
    this.rebuildViews();
    this.emit("added", e);
    if (this.leader) return;
    log.info({ engine: spec.url, weight: spec.weight, protocol: e.protocol }, "engine added");
    if (!this.stopped) void this.probes.probeNow(e);
    this.emit("changed", e);
  }

  remove(url: string): void {
    const e = this.engines.get(url);
    if (!e || e.draining) return;
    // In-flight requests finish on the old engine; it just takes no new ones.
    e.draining = true;
    e.view.healthy = false;
    this.rebuildViews();
    if (!this.leader) log.info({ engine: url, inFlight: e.view.inFlight }, "engine removed; draining");
    this.emit("changed", e);
    if (e.view.inFlight === 0) this.finishRemoval(e);
    else this.emit("draining", e);
  }

  /** A request takes a slot on `e` (the data plane's in-flight count, which policies read). */
  takeSlot(e: EngineRecord, now = performance.now()): void {
    noteSent(e.view, now);
    this.onSlot?.(e);
  }

  /** A request's first token (its first answer byte) came back from the engine. */
  firstToken(e: EngineRecord, now: number): void {
    noteFirstToken(e.view, now);
    this.onSlot?.(e);
  }

  /**
   * The slot is free again: a draining engine may now leave. `answered`: the request's first token
   * had come back (firstToken was told then).
   */
  freeSlot(e: EngineRecord, answered = false): void {
    noteDone(e.view, answered, performance.now());
    this.onSlot?.(e);
    this.maybeFinishDrain(e);
  }

  /** called when an attempt on a draining engine ends (or another worker's did) */
  maybeFinishDrain(e: EngineRecord): void {
    if (e.draining && e.view.inFlight === 0) this.finishRemoval(e);
  }

  private finishRemoval(e: EngineRecord): void {
    if (this.engines.get(e.url) === e) this.engines.delete(e.url);
    void e.pool.close().catch(() => undefined);
  }

  private rebuildViews(): void {
    this.viewList = [...this.engines.values()].filter((e) => !e.draining).map((e) => e.view);
  }

  /** Every model name some engine serves (ready or not): decides 404 versus 503. */
  /**
   * The served model a registry adapter's requests go with: its base when an engine serves it, else
   * the base model of any engine (an adapter_config.json names its base by a path or hub id, which
   * need not be the served name)
   */
  adapterBase(base: string | null): string | undefined {
    let any: string | undefined;
    for (const e of this.engines.values()) {
      if (e.draining) continue;
      if (base !== null && e.view.models.has(base)) return base;
      any ??= e.modelCards.find((c) => !c.parent)?.id;
    }
    return any;
  }

  knowsModel(model: string): boolean {
    for (const e of this.engines.values()) if (!e.draining && e.view.models.has(model)) return true;
    // a registry adapter is known where its base model is served (the router loads it there)
    const a = this.adapters?.registry.get(model);
    return a !== undefined && this.adapterBase(a.base) !== undefined;
  }

  /**
   * Whether an engine taken on in the last MODELS_UNKNOWN_MS may still serve a model the router has not
   * heard of: in rotation or still probed, and its /v1/models not yet answered (vLLM always lists one).
   */
  modelsPending(): boolean {
    const now = performance.now();
    for (const e of this.engines.values())
      if (
        !e.draining &&
        e.state !== "ejected" &&
        e.view.models.size === 0 &&
        now - e.addedAt < MODELS_UNKNOWN_MS
      )
        return true;
    return false;
  }

  anyReady(): boolean {
    for (const e of this.engines.values()) if (e.healthy && !e.draining) return true;
    return false;
  }

  /**
   * Panic mode's candidates: when engines serve `model` but none of them is in rotation, views of all
   * of them marked usable (copies: the real views keep saying the truth); undefined otherwise.
   */
  panicViews(model: string): EngineView[] | undefined {
    let out: EngineView[] | undefined;
    for (const e of this.engines.values()) {
      if (e.draining || e.state === "draining" || !e.view.models.has(model)) continue;
      if (e.view.healthy) return undefined;
      (out ??= []).push({ ...e.view, healthy: true });
    }
    return out;
  }

  /** Counts (and logs, at most every 10 s) a request routed in panic mode. */
  notePanic(model: string): void {
    this.hooks.onPanic?.(model);
    const now = performance.now();
    if (now - this.panicLoggedAt < 10_000) return;
    this.panicLoggedAt = now;
    log.error(
      { model },
      "panic mode: no engine of the model is in rotation; routing among all of them anyway",
    );
  }

  /** The largest `max_model_len` the engines serving `model` announce in /v1/models; undefined if none does. */
  maxModelLen(model: string): number | undefined {
    let max: number | undefined;
    for (const e of this.engines.values()) {
      if (e.draining) continue;
      for (const c of e.modelCards) {
        if (c.id !== model) continue;
        const n = c.max_model_len;
        if (typeof n === "number" && n > 0 && (max === undefined || n > max)) max = n;
      }
    }
    return max;
  }

  /** The card some engine announces for `model`, for its root/parent (tokenizer choice). */
  modelCard(model: string): ModelCard | undefined {
    for (const e of this.engines.values()) {
      const card = e.modelCards.find((c) => c.id === model);
      if (card) return card;
    }
    return undefined;
  }

  // ---- health (rules in health.ts) -------------------------------------------------------------

  /** live traffic: a connect error, reset or 5xx answer from the engine */
  reportFailure(e: EngineRecord, what: string): void {
    if (this.leader) return this.leader.failure(e, what);
    this.health.reportFailure(e, what);
    this.emit("changed", e);
  }

  /** live traffic: the engine refused a request as vLLM does while it drains on shutdown */
  reportShutdown(e: EngineRecord): void {
    if (this.leader) return this.leader.shutdown(e);
    this.health.shuttingDown(e);
    this.emit("changed", e);
  }

  reportSuccess(e: EngineRecord): void {
    // per request: only a reset of a failure count is news
    if (e.passiveFailures === 0) return;
    if (this.leader) return this.leader.success(e);
    this.health.reportSuccess(e);
    this.emit("changed", e);
  }

  /** A GET from an engine bounded in size and time (engine-get.ts), for readers beside the probes. */
  get(e: EngineRecord, path: string, timeoutMs: number, maxBytes: number): Promise<string> {
    return engineGet(e, path, AbortSignal.timeout(Math.max(1, timeoutMs)), maxBytes, this.cfg);
  }

  /** A scrape's load, into the record and the view policies read (router workers get it from the primary). */
  applyLoad(e: EngineRecord, load: EngineLoad, scrapedAtMs: number): void {
    e.load = load;
    e.view.running = load.running;
    e.view.waiting = load.waiting;
    e.view.kvUsage = load.kvUsage;
    e.view.blockSize = load.blockSize;
    e.view.prefillCounters = load.prefill;
    this.adapters?.applyScrape(e, load.lora);
    // on this process's clock (a worker hears of the primary's scrape a moment later)
    noteScraped(e.view, performance.now() - Math.max(0, Date.now() - scrapedAtMs));
    e.lastScrapeMs = scrapedAtMs;
  }

  /** Starts the background probes (probes.ts); none in a registry that follows another's. */
  startLoops(): void {
    if (this.leader) return;
    this.stopped = false;
    this.probes.start();
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.probes.stop();
    for (const s of this.sources) await s.stop();
    await Promise.all([...this.engines.values()].map((e) => e.pool.destroy().catch(() => undefined)));
    this.engines.clear();
  }
}
