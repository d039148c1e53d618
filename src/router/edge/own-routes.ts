// The router's own routes, the ones it answers itself rather than relaying: /health, /ready and
// /ping, /load, /v1/models, /engines, /autoscale, /metrics, and the admin routes (/admin/reload, /admin/drain,
// /admin/engines/drain, /admin/engines/undrain), each behind the key its contents call for. Relayed
// routes are the endpoint table's (../request/endpoints.ts) and go through ingress.ts.
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError, sendError } from "../../http/errors.js";
import { notRelayed, type EndpointMatch } from "../request/endpoints.js";
import type { ModelCard } from "../engines/engine-record.js";
import { loraResidency } from "../engines/adapters.js";
import { roleOf } from "../pd/disagg.js";
import { readRequestBody } from "./body.js";
import type { RouterRooms } from "./rooms.js";
import { aliasTarget } from "../config/config.js";
import type { Tenant } from "../../tenancy/state.js";

/** What these routes read of the router's lifecycle (edge/server.ts's Router). */
export interface RouterLifecycle {
  /** set once a drain starts: /ready answers 503 */
  readonly draining: boolean;
  startDrain(): void;
  /** re-reads the config file (set by startRouter); returns an error message when it was refused */
  readonly onReload: (() => string | undefined | Promise<string | undefined>) | undefined;
}

export class OwnRoutes {
  constructor(
    private readonly rooms: RouterRooms,
    private readonly router: RouterLifecycle,
  ) {}

  /**
   * Answers a path the endpoint table does not relay (or a method it does not relay it for): one of
   * the router's own, or the table's refusal. Not async: the answers given at once return nothing.
   */
  serve(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    m: EndpointMatch | undefined,
  ): Promise<void> | void {
    const method = req.method;
    const relay = m?.endpoint.served === "relay" && (method === "POST" || method === "GET");
    if (!relay && method === "POST") {
      if (path === "/ping") return this.ready(res);
      if (path === "/admin/reload" || path === "/admin/drain") return this.handleAdmin(req, res, path);
      if (path === "/admin/engines/drain" || path === "/admin/engines/undrain")
        return this.handleEngineDrain(req, res, path === "/admin/engines/drain");
    } else if (!relay && (method === "GET" || method === "HEAD")) {
      const rooms = this.rooms;
      switch (path) {
        case "/health":
          res.writeHead(200, { "content-length": 0 });
          return void res.end();
        case "/ready":
        case "/ping":
          return this.ready(res);
        case "/load":
          try {
            this.authenticateFleetState(req);
          } catch (err) {
            return sendError(res, err as HttpError);
          }
          return json(res, 200, { server_load: rooms.metrics.inFlight });
        case "/v1/models": {
          let tenant;
          try {
            tenant = rooms.gate.authenticate(req);
          } catch (err) {
            return sendError(res, err as HttpError);
          }
          return json(res, 200, { object: "list", data: this.models(tenant) });
        }
        case "/engines":
          try {
            rooms.gate.authenticateAdmin(req);
          } catch (err) {
            return sendError(res, err as HttpError);
          }
          return json(res, 200, { engines: this.engines() });
        case "/autoscale":
          // the decision names the engines: behind the key /engines is
          try {
            rooms.gate.authenticateAdmin(req);
          } catch (err) {
            return sendError(res, err as HttpError);
          }
          return json(res, 200, rooms.autoscale.report());
        case "/metrics":
          try {
            this.authenticateMetrics(req);
          } catch (err) {
            return sendError(res, err as HttpError);
          }
          return this.serveMetrics(res);
      }
    }
    req.resume();
    sendError(res, notRelayed(method ?? "", path, m));
  }

  /** /ready and SageMaker's /ping: 200 while an engine is ready and the router is not draining. */
  private ready(res: ServerResponse): void {
    if (this.router.draining)
      return sendError(res, new HttpError(503, "router is draining", null, { "retry-after": "1" }));
    if (this.rooms.registry.anyReady()) return json(res, 200, { status: "ready" });
    sendError(res, new HttpError(503, "no engine is ready", null, { "retry-after": "1" }));
  }

  /**
   * /load tells the fleet's live request count (vLLM's `server_load`): once the router has keys, a
   * client must present one (a tenant's or the admin's), so an anonymous one learns nothing of the
   * traffic of others; without keys it stays open, as vLLM serves it.
   */
  private authenticateFleetState(req: IncomingMessage): void {
    const { gate, tenancy } = this.rooms;
    if (!gate.enabled) {
      if (tenancy.adminGuarded) gate.authenticateAdmin(req);
      return;
    }
    try {
      gate.authenticate(req);
    } catch (err) {
      if (!tenancy.adminGuarded) throw err;
      try {
        gate.authenticateAdmin(req);
      } catch {
        throw err;
      }
    }
  }

  /**
   * /metrics carries every tenant's usage (switchyard_tenant_*) and the engines' URLs (`engine`
   * labels): with tenancy on, one tenant must not read the others' there. metrics.access: auto asks
   * for the admin key exactly where /engines does (once the router has any key); admin always;
   * open never (a port only Prometheus can reach).
   */
  private authenticateMetrics(req: IncomingMessage): void {
    const access = this.rooms.config.metrics.access;
    if (access === "open") return;
    if (access === "admin" && !this.rooms.tenancy.adminGuarded)
      throw new HttpError(403, "metrics.access is admin but no admin key is configured");
    this.rooms.gate.authenticateAdmin(req);
  }

  private async serveMetrics(res: ServerResponse): Promise<void> {
    const { group, metrics } = this.rooms;
    let text: string;
    try {
      text = group ? await group.metrics() : await metrics.registry.metrics();
    } catch (err) {
      return sendError(res, 503, `metrics unavailable: ${(err as Error).message}`);
    }
    res.writeHead(200, { "content-type": metrics.registry.contentType });
    res.end(text);
  }

  /** Without any admin key the admin routes stay closed: an open drain endpoint is a denial of service. */
  private authenticateAdminRoute(req: IncomingMessage): void {
    if (!this.rooms.tenancy.adminGuarded)
      throw new HttpError(403, "admin endpoints are disabled: no admin key is configured");
    this.rooms.gate.authenticateAdmin(req);
  }

  /** POST /admin/reload (re-read the config file now), POST /admin/drain (readiness off, connections close). */
  private async handleAdmin(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    req.resume();
    try {
      this.authenticateAdminRoute(req);
    } catch (err) {
      return sendError(res, err as HttpError);
    }
    if (path === "/admin/drain") {
      if (this.rooms.group) this.rooms.group.drain();
      else this.router.startDrain();
      return json(res, 202, { status: "draining", inFlight: this.rooms.metrics.inFlight });
    }
    const reload = this.router.onReload;
    if (!reload) return sendError(res, 409, "this router was started without a config file");
    const error = await reload();
    if (error !== undefined) return sendError(res, 400, `reload refused, previous config kept: ${error}`);
    json(res, 200, { status: "reloaded" });
  }

  /**
   * POST /admin/engines/drain `{"engine": URL}`: the engine takes no new requests; those in flight
   * get engineDrainTimeout, then move (docs/router.md). POST /admin/engines/undrain ends it.
   */
  private async handleEngineDrain(req: IncomingMessage, res: ServerResponse, drain: boolean): Promise<void> {
    const rooms = this.rooms;
    let url: string;
    try {
      this.authenticateAdminRoute(req);
      const body = await readRequestBody(req, 64 * 1024, {
        queue: rooms.attemptLoop.deadlines,
        ms: rooms.config.limits.bodyIdleTimeout,
      });
      let doc: { engine?: unknown };
      try {
        doc = JSON.parse(body.toString("utf8")) as { engine?: unknown };
      } catch {
        throw new HttpError(400, 'the body must be JSON: {"engine": "http://host:port"}');
      }
      if (typeof doc?.engine !== "string")
        throw new HttpError(400, "`engine` must be an engine URL", "engine");
      url = doc.engine.replace(/\/+$/, "");
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      return sendError(res, err);
    }
    const e = rooms.registry.engines.get(url);
    if (!e || e.draining)
      return sendError(res, new HttpError(404, `no engine \`${url}\` is known to this router`, "engine"));
    if (drain) {
      rooms.registry.health.drain(e, true);
      return json(res, 202, {
        engine: url,
        state: e.state,
        inFlight: e.view.inFlight,
        drainTimeoutMs: rooms.config.engineDrainTimeout,
      });
    }
    rooms.drains.cancel(e);
    rooms.registry.health.undrain(e);
    json(res, 200, { engine: url, state: e.state });
  }

  /**
   * Models of engines in rotation (all engines when none is), each once; aliases listed with their
   * target as root. With tenancy, only those the caller may use (the gate's rule, as a request naming
   * one meets it). An adapter's card carries its name as its root, never its folder or Hub id.
   */
  models(tenant?: Tenant): ModelCard[] {
    const seen = new Map<string, ModelCard>();
    const engines = [...this.rooms.registry.engines.values()].filter((e) => !e.draining);
    const live = engines.filter((e) => e.healthy);
    for (const e of live.length > 0 ? live : engines) {
      for (const card of e.modelCards)
        if (!seen.has(card.id)) seen.set(card.id, card.parent != null ? { ...card, root: card.id } : card);
    }
    for (const [alias, target] of Object.entries(this.rooms.config.aliases)) {
      const t = seen.get(target);
      if (t && !seen.has(alias)) seen.set(alias, { ...t, id: alias, root: t.root ?? target });
    }
    const reg = this.rooms.registry.adapters?.registry;
    const privateTo = (n: string) => reg?.privateTo(n);
    const out: ModelCard[] = [];
    for (const card of seen.values()) {
      const target = aliasTarget(this.rooms.config.aliases, card.id) ?? card.id;
      if (this.rooms.gate.mayUse(tenant, card.id, target, privateTo)) out.push(card);
    }
    return out;
  }

  engines(): unknown[] {
    const now = Date.now();
    return [...this.rooms.registry.engines.values()].map((e) => ({
      url: e.url,
      weight: e.spec.weight,
      role: roleOf(e.spec),
      protocol: e.protocol,
      state: e.draining ? "draining" : e.state,
      healthy: e.healthy && !e.draining,
      models: e.modelCards.map((c) => ({ id: c.id, parent: c.parent ?? null })),
      inFlight: e.view.inFlight,
      running: e.view.running,
      waiting: e.view.waiting,
      kvUsage: e.view.kvUsage,
      blockSize: e.load.blockSize ?? null,
      numGpuBlocks: e.load.numGpuBlocks ?? null,
      prefixCacheHits: e.load.prefixCacheHits ?? null,
      prefixCacheQueries: e.load.prefixCacheQueries ?? null,
      scrapeAgeMs: e.lastScrapeMs ? now - e.lastScrapeMs : null,
      passiveFailures: e.passiveFailures,
      lastError: e.lastError || null,
      // where its KV events come from: configured, read from the engine (/kv_event_sources), or none
      kvEvents: this.rooms.cache.subs.describe(e.url),
      lora: loraResidency(e, this.rooms.registry.adapters),
    }));
  }
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
