// The engine registry: one record per engine with its connection pool, served models, health and
// scraped load. Background loops (health, models, metrics) run concurrently across engines, each
// with a timeout and at most one probe per engine in flight, so a hung engine never stalls the rest.
// Whether an engine is in rotation is decided by health.ts (outlier detection); what every call to
// an engine carries, by upstream-rules.ts.
import { EventEmitter } from "node:events";
import { H2CClient, Pool, type Dispatcher } from "undici";
import {
  noteDone,
  noteFirstToken,
  noteScraped,
  noteSent,
  type EngineView,
  type ViewWithCounters,
} from "../../routing/index.js";
import type { DiscoverySink, DiscoverySource, EngineSpec } from "../../discovery/types.js";
import { parseEngineMetrics, type EngineLoad } from "./scrape.js";
import { logger } from "../../obs/log.js";
import { backendTransport, type BackendProtocol, type RouterConfig } from "../config/config.js";
import { ENGINE_DRAINING, Health, type HealthHooks, type HealthState } from "./health.js";
import { probeHeaders } from "./upstream-rules.js";
import type { SlotArbiter } from "./slot-arbiter.js";

const log = logger("router.registry");

/** One entry of an engine's /v1/models answer, kept as the engine sent it. */
export interface ModelCard {
  id: string;
  parent?: string | null;
  [k: string]: unknown;
}

/** An engine answered a router-initiated GET with a status other than 200. */
export class UpstreamHttpError extends Error {
  override name = "UpstreamHttpError";
  constructor(
    readonly path: string,
    readonly status: number,
  ) {
    super(`GET ${path} answered ${status}`);
  }
}

/** An engine's answer to a router-initiated GET was larger than the router reads. */
export class UpstreamTooLargeError extends Error {
  override name = "UpstreamTooLargeError";
  constructor(readonly maxBytes: number) {
    super(`answer larger than ${maxBytes} bytes`);
  }
}

const MAX_MODELS_PER_ENGINE = 4096;

/**
 * undici's HTTP/2 dispatcher keeps a non-idempotent request (every POST) alone on its connection, a
 * rule carried over from HTTP/1.1 pipelining where a dropped connection leaves the requests behind it
 * in doubt. Over h2 each stream fails on its own and undici never replays one (the router's failover
 * decides), so requests are marked idempotent here: without it the pool opens one connection per
 * POST in flight and h2c saves no sockets at all.
 */
class MultiplexingH2CClient extends H2CClient {
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    // no header filter here: every request reaches a pool through the proxy, whose hop-by-hop set
    // already drops what HTTP/2 forbids (connection, upgrade, http2-settings, te, ...), or is a probe
    return super.dispatch({ ...opts, idempotent: true }, handler);
  }
}

/** Options both transports share: the proxy keeps its own first-byte and idle deadlines. */
function clientOptions(cfg: RouterConfig) {
  return {
    connect: { timeout: cfg.timeouts.connect },
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  };
}

/** HTTP/1.1: one socket per request in flight (pipelining would put streams behind each other). */
function http1Pool(url: string, cfg: RouterConfig): Pool {
  const cap = cfg.admission.maxInFlightPerEngine;
  return new Pool(url, { ...clientOptions(cfg), pipelining: 1, connections: cap > 0 ? cap + 16 : null });
}

/** h2c: `streams` requests share each connection; the pool opens another when all are full. */
function h2cPool(url: string, cfg: RouterConfig, streams: number): Pool {
  const cap = cfg.admission.maxInFlightPerEngine;
  const opts = { ...clientOptions(cfg), maxConcurrentStreams: streams, pipelining: streams };
  return new Pool(url, {
    connections: cap > 0 ? Math.ceil((cap + 16) / streams) : null,
    // the Pool's own connector speaks HTTP/1.1 only: each client builds its h2c one from these options
    factory: (origin) => new MultiplexingH2CClient(origin, opts),
  });
}

/**
 * The router's record of one engine it proxies to: its connection pool, health state, what it serves
 * and how loaded it looks. (The engine model's `Engine` in src/engine is the simulated engine itself.)
 */
export class Upstream {
  readonly pool: Pool;
  readonly protocol: BackendProtocol;
  /** protocol and stream count: a config change to either needs a new pool */
  readonly transport: string;
  state: HealthState = "probing";
  draining = false;
  healthFailures = 0;
  healthSuccesses = 0;
  passiveFailures = 0;
  lastError = "";
  modelCards: ModelCard[] = [];
  load: EngineLoad = { running: 0, waiting: 0, kvUsage: 0 };
  lastScrapeMs = 0;
  lastModelsMs = 0;
  /** performance.now() of the last byte received on a client request to this engine (health.ts reads it) */
  lastByteAt = 0;
  /** when a withheld ejection of this engine was last logged */
  withheldLoggedAt = -Infinity;
  /** drained by hand (POST /admin/engines/drain): draining until undrained */
  drainHeld = false;
  private probing = { health: false, models: false, metrics: false };
  /** the view policies read; mutated in place so building a snapshot allocates nothing */
  readonly view: ViewWithCounters & { models: Set<string> };

  constructor(
    public spec: EngineSpec,
    cfg: RouterConfig,
  ) {
    const t = backendTransport(cfg, spec.url);
    this.protocol = t.protocol;
    this.transport = transportKey(t);
    this.pool =
      t.protocol === "h2c" ? h2cPool(spec.url, cfg, t.maxConcurrentStreams) : http1Pool(spec.url, cfg);
    this.view = {
      id: spec.url,
      models: new Set(),
      healthy: false,
      weight: spec.weight,
      inFlight: 0,
      awaitingFirstToken: 0,
      maxInFlight: cfg.admission.maxInFlightPerEngine,
      running: 0,
      waiting: 0,
      kvUsage: 0,
    };
  }

  get url(): string {
    return this.spec.url;
  }

  get healthy(): boolean {
    return this.state === "healthy";
  }

  /** try to claim a probe slot so a slow engine never has two of the same probe in flight */
  claim(kind: "health" | "models" | "metrics"): boolean {
    if (this.probing[kind]) return false;
    this.probing[kind] = true;
    return true;
  }

  release(kind: "health" | "models" | "metrics"): void {
    this.probing[kind] = false;
  }
}

function transportKey(t: { protocol: BackendProtocol; maxConcurrentStreams: number }): string {
  return t.protocol === "h2c" ? `h2c/${t.maxConcurrentStreams}` : "http1";
}

export interface RegistryEvents {
  /** an engine became usable or gained room: queued requests may proceed */
  capacity: [];
  /** an engine's served models changed (emitted before it can enter rotation with them) */
  models: [engine: Upstream];
  /** a probe, scrape or passive signal may have changed what the registry says of an engine */
  changed: [engine: Upstream];
  /** a new record for an engine (a new URL, or a new pool after a protocol change) */
  added: [engine: Upstream];
  /** an engine takes no new requests (it left discovery, or is draining); those in flight may finish */
  draining: [engine: Upstream];
  /** a /metrics page was scraped from an engine (for readers of other series than the load) */
  scraped: [engine: Upstream, text: string];
}

/**
 * A registry that follows another process's (router workers, src/router/cluster): it starts no probe
 * of its own, and sends what live traffic says of an engine to whoever decides its health.
 */
export interface RegistryLeader {
  failure(e: Upstream, what: string): void;
  success(e: Upstream): void;
}

export interface RegistryHooks extends HealthHooks {
  /** a request was routed while no engine of its model was in rotation */
  onPanic?: (model: string) => void;
}

/** Reads at most `max` bytes of an undici body as text; larger bodies are cut off and destroyed. */
type UpstreamBody = AsyncIterable<Buffer> & { destroy(): void; on(ev: "error", fn: () => void): unknown };

/** Drops an undici body we will not read; the listener keeps its abort error from going uncaught. */
export function discard(body: UpstreamBody): void {
  body.on("error", () => undefined);
  body.destroy();
}

async function readBounded(body: UpstreamBody, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max) {
      discard(body);
      throw new UpstreamTooLargeError(max);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString("utf8");
}

export class Registry extends EventEmitter<RegistryEvents> implements DiscoverySink {
  readonly engines = new Map<string, Upstream>();
  /** views of the engines in rotation candidates (not draining), rebuilt only on membership change */
  private viewList: EngineView[] = [];
  private timers: NodeJS.Timeout[] = [];
  private sources: DiscoverySource[] = [];
  private stopped = false;
  readonly health: Health;
  private panicLoggedAt = -Infinity;
  /** set when another process decides health (a router worker): no probes, passive signals go there */
  leader: RegistryLeader | undefined;
  /** told of every slot taken or freed (router workers share the counts) */
  onSlot: ((e: Upstream) => void) | undefined;
  /** set in a router worker: confirms picks against the group's counts */
  arbiter: SlotArbiter<Upstream> | undefined;

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
  }

  setConfig(cfg: RouterConfig): void {
    const restartLoops =
      cfg.health.interval !== this.cfg.health.interval ||
      cfg.discovery.modelsInterval !== this.cfg.discovery.modelsInterval ||
      cfg.discovery.metricsInterval !== this.cfg.discovery.metricsInterval;
    this.cfg = cfg;
    this.health.setConfig(cfg);
    for (const e of this.engines.values()) e.view.maxInFlight = cfg.admission.maxInFlightPerEngine;
    if (restartLoops && this.timers.length > 0) {
      this.stopLoops();
      this.startLoops();
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
    const e = new Upstream(spec, this.cfg);
    this.engines.set(spec.url, e);
    this.rebuildViews();
    this.emit("added", e);
    if (this.leader) return;
    log.info({ engine: spec.url, weight: spec.weight, protocol: e.protocol }, "engine added");
    if (!this.stopped) void this.probeNow(e);
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
  takeSlot(e: Upstream, now = performance.now()): void {
    noteSent(e.view, now);
    this.onSlot?.(e);
  }

  /** A request's first token (its first answer byte) came back from the engine. */
  firstToken(e: Upstream, now: number): void {
    noteFirstToken(e.view, now);
    this.onSlot?.(e);
  }

  /**
   * The slot is free again: a draining engine may now leave. `answered`: the request's first token
   * had come back (firstToken was told then).
   */
  freeSlot(e: Upstream, answered = false): void {
    noteDone(e.view, answered, performance.now());
    this.onSlot?.(e);
    this.maybeFinishDrain(e);
  }

  /** called when an attempt on a draining engine ends (or another worker's did) */
  maybeFinishDrain(e: Upstream): void {
    if (e.draining && e.view.inFlight === 0) this.finishRemoval(e);
  }

  private finishRemoval(e: Upstream): void {
    if (this.engines.get(e.url) === e) this.engines.delete(e.url);
    void e.pool.close().catch(() => undefined);
  }

  private rebuildViews(): void {
    this.viewList = [...this.engines.values()].filter((e) => !e.draining).map((e) => e.view);
  }

  /** Every model name some engine serves (ready or not): decides 404 versus 503. */
  knowsModel(model: string): boolean {
    for (const e of this.engines.values()) if (!e.draining && e.view.models.has(model)) return true;
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
  reportFailure(e: Upstream, what: string): void {
    if (this.leader) return this.leader.failure(e, what);
    this.health.reportFailure(e, what);
    this.emit("changed", e);
  }

  reportSuccess(e: Upstream): void {
    // per request: only a reset of a failure count is news
    if (e.passiveFailures === 0) return;
    if (this.leader) return this.leader.success(e);
    this.health.reportSuccess(e);
    this.emit("changed", e);
  }

  /**
   * GET from an engine through its own pool (its protocol: an h2c-only engine refuses HTTP/1.1, so
   * no other client should probe it) with the engine key (upstream-rules.ts), bounded in size;
   * throws UpstreamHttpError unless 200.
   */
  async request(e: Upstream, path: string, signal: AbortSignal, maxBytes: number): Promise<string> {
    const res = await e.pool.request({
      path,
      method: "GET",
      headers: probeHeaders(e.spec, this.cfg),
      signal,
    });
    // not progress (lastByteAt): vLLM's API server answers /metrics while a stuck engine core hangs /health
    if (res.statusCode !== 200) {
      discard(res.body);
      throw new UpstreamHttpError(path, res.statusCode);
    }
    return readBounded(res.body, maxBytes);
  }

  /** `request` bounded in time too. */
  get(e: Upstream, path: string, timeoutMs: number, maxBytes: number): Promise<string> {
    return this.request(e, path, AbortSignal.timeout(Math.max(1, timeoutMs)), maxBytes);
  }

  async checkHealth(e: Upstream): Promise<void> {
    if (!e.claim("health")) return;
    try {
      const verdict = await this.health.probe(e, (signal) => this.healthOf(e, signal));
      if (this.health.judge(e, verdict) === "admit") {
        // first contact (or re-admission): admit as soon as the engine has told us its models
        if (e.view.models.size === 0) await this.refreshModels(e, true);
        if (e.view.models.size > 0 || e.state === "ejected") this.health.setHealthy(e);
      }
    } finally {
      e.release("health");
      this.emit("changed", e);
    }
  }

  /**
   * GET /health; a 503 there is a drain, not a failure, when the engine's /live still answers 200
   * (vLLM's drain on shutdown: /health 503 for load balancers, /live 200 until the engine is dead).
   */
  private async healthOf(e: Upstream, signal: AbortSignal): Promise<void> {
    try {
      await this.request(e, "/health", signal, 64 * 1024);
    } catch (err) {
      if (!(err instanceof UpstreamHttpError && err.status === 503)) throw err;
      const live = await this.request(e, "/live", signal, 64 * 1024).then(
        () => true,
        () => false,
      );
      throw live ? new Error(ENGINE_DRAINING) : err;
    }
  }

  async refreshModels(e: Upstream, force = false): Promise<void> {
    if (!force && !e.claim("models")) return;
    try {
      const text = await this.get(e, "/v1/models", this.cfg.health.timeout * 5, 8 * 2 ** 20);
      const doc = JSON.parse(text) as { data?: unknown };
      if (!Array.isArray(doc.data)) throw new Error("/v1/models: no data array");
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
        this.emit("models", e);
        this.emit("capacity");
      }
      e.lastModelsMs = Date.now();
    } catch (err) {
      e.lastError = `models: ${(err as Error).message}`;
    } finally {
      if (!force) e.release("models");
      this.emit("changed", e);
    }
  }

  async scrapeMetrics(e: Upstream): Promise<void> {
    if (!e.claim("metrics")) return;
    try {
      const text = await this.get(
        e,
        "/metrics",
        this.cfg.discovery.metricsTimeout,
        this.cfg.discovery.maxMetricsBytes,
      );
      this.applyLoad(e, parseEngineMetrics(text), Date.now());
      this.emit("scraped", e, text);
    } catch (err) {
      // stale load would mislead routing: forget it and let in-flight counts speak
      e.view.running = 0;
      e.view.waiting = 0;
      e.lastError = `metrics: ${(err as Error).message}`;
    } finally {
      e.release("metrics");
      this.emit("changed", e);
    }
  }

  /** A scrape's load, into the record and the view policies read (router workers get it from the primary). */
  applyLoad(e: Upstream, load: EngineLoad, scrapedAtMs: number): void {
    e.load = load;
    e.view.running = load.running;
    e.view.waiting = load.waiting;
    e.view.kvUsage = load.kvUsage;
    e.view.blockSize = load.blockSize;
    e.view.prefillCounters = load.prefill;
    // on this process's clock (a worker hears of the primary's scrape a moment later)
    noteScraped(e.view, performance.now() - Math.max(0, Date.now() - scrapedAtMs));
    e.lastScrapeMs = scrapedAtMs;
  }

  private async probeNow(e: Upstream): Promise<void> {
    await this.checkHealth(e);
    await this.scrapeMetrics(e);
  }

  private each(fn: (e: Upstream) => Promise<void>): void {
    for (const e of this.engines.values()) if (!e.draining) void fn(e);
  }

  startLoops(): void {
    if (this.leader) return;
    this.stopped = false;
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, Math.max(50, ms));
      t.unref();
      this.timers.push(t);
    };
    every(this.cfg.health.interval, () => this.each((e) => this.checkHealth(e)));
    every(this.cfg.discovery.modelsInterval, () =>
      this.each((e) => (e.state === "ejected" ? Promise.resolve() : this.refreshModels(e))),
    );
    every(this.cfg.discovery.metricsInterval, () =>
      this.each((e) => (e.state === "ejected" ? Promise.resolve() : this.scrapeMetrics(e))),
    );
  }

  private stopLoops(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.stopLoops();
    for (const s of this.sources) await s.stop();
    await Promise.all([...this.engines.values()].map((e) => e.pool.destroy().catch(() => undefined)));
    this.engines.clear();
  }
}
