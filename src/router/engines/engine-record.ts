// The router's record of one engine: its connection pool (HTTP/1.1, or h2c multiplexed), what it serves,
// its health state and scraped load, and the view the routing policies read. The registry
// (registry.ts) keeps these records; this file says what one is and how its pool is built.
import { FailureMarks } from "./failure-marks.js";
import { H2CClient, Pool, type Dispatcher } from "undici";
import type { ViewWithCounters } from "../../routing/index.js";
import type { EngineSpec } from "../../discovery/types.js";
import type { EngineLoad } from "./scrape.js";
import { backendTransport, type BackendProtocol, type RouterConfig } from "../config/config.js";
import type { HealthState } from "./health.js";

/** One entry of an engine's /v1/models answer, kept as the engine sent it. */
export interface ModelCard {
  id: string;
  parent?: string | null;
  [k: string]: unknown;
}

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

/**
 * How long an idle connection to an engine is kept for the next request, where the engine's answers
 * carry no Keep-Alive hint (a hint, as Node's http servers send, sets it instead): below the 5 s after
 * which vLLM's API server (uvicorn, VLLM_HTTP_TIMEOUT_KEEP_ALIVE) closes an idle connection without
 * one. Kept longer (it was 30 s), requests often go out on a connection the engine is closing at that
 * moment. Such a request goes to the same engine again once (dataplane/attempt.ts, `sendAgain`), but
 * a second close counts against the engine and excludes it from the request's next attempts (a stream
 * moving off a failed engine can then find no engine left). 3 s leaves the engine's 5 s a margin of
 * 2 s for undici's idle timer (a plain Node timer) firing late on a busy loop.
 */
export const ENGINE_IDLE_KEEPALIVE_MS = 3_000;

/** Options both transports share: the proxy keeps its own first-byte and idle deadlines. */
function clientOptions(cfg: RouterConfig) {
  return {
    connect: { timeout: cfg.timeouts.connect },
    keepAliveTimeout: ENGINE_IDLE_KEEPALIVE_MS,
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
export class EngineRecord {
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
  /** performance.now() when the router took the engine on (how long its model list may be unknown) */
  readonly addedAt = performance.now();
  /** performance.now() of the last byte received on a client request to this engine (health.ts reads it) */
  lastByteAt = 0;
  /** its recent failures, by request (health probes: 0) */
  readonly failures = new FailureMarks();
  /** when a withheld ejection of this engine was last logged */
  withheldLoggedAt = -Infinity;
  /** drained by hand (POST /admin/engines/drain): draining until undrained */
  drainHeld = false;
  shutdownAt = 0;
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

export function transportKey(t: { protocol: BackendProtocol; maxConcurrentStreams: number }): string {
  return t.protocol === "h2c" ? `h2c/${t.maxConcurrentStreams}` : "http1";
}
