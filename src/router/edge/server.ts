// The router process: wiring (registry, health, policies, cache-aware routing, tenancy, ingress,
// data plane), lifecycle (start, hot reconfigure, drain, close), the route table, and the
// router-local endpoints (/v1/models, /health, /ready, /metrics, /engines, /admin/*). Turning an HTTP
// request into a routed one is ingress.ts's; serving it, ../dataplane/proxy.ts's; draining one engine,
// ../migration/drain.ts's.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { HttpError, sendError } from "../../http/errors.js";
import { createPolicy, policyOptions, type Policy, type PolicyName } from "../../routing/index.js";
import { AdmissionQueue, RetryBudget, type QueueLimits } from "../request/admission.js";
import { engineSpecs, policySettingsOf, type RouterConfig } from "../config/config.js";
import { StaticDiscovery } from "../../discovery/static.js";
import { discoverySources } from "../../discovery/index.js";
import { Tracer } from "../../obs/tracing.js";
import { RouterMetrics } from "../telemetry/metrics.js";
import { Proxy } from "../dataplane/proxy.js";
import { Disaggregation, roleOf } from "../pd/disagg.js";
import { Registry } from "../engines/registry.js";
import { AdapterLoader, AdapterRegistry } from "../engines/adapters.js";
import type { ModelCard, Upstream } from "../engines/upstream.js";
import { CacheRouting } from "../kv/cache-routing.js";
import { logger } from "../../obs/log.js";
import { TenancyState } from "../../tenancy/state.js";
import { RouterGate } from "../../tenancy/router-gate.js";
import { AccessLog } from "../telemetry/access-log.js";
import { Ingress } from "./ingress.js";
import { matchEndpoint, notRelayed } from "../request/endpoints.js";
import { IssuedIds } from "../dataplane/issued-ids.js";
import { ResponseAffinity } from "../dataplane/response-affinity.js";
import { PromptBudget } from "./prompt-budget.js";
import { listenOnSockets, type Listening } from "./accept.js";
import { backstop, ClientConnections } from "./connections.js";
import { EngineDrains } from "../migration/drain.js";
import { readRequestBody } from "./body.js";

const log = logger("router");
/** one line per routing decision, at debug level */
const routeLog = logger("router.route");

/**
 * The process group a router worker belongs to (`router --workers N`, src/router/cluster): what it
 * answers for the whole group rather than for itself.
 */
export interface RouterGroup {
  /** e.g. "worker 1/2", in the debug route header */
  readonly label: string;
  /** the group's /metrics page */
  metrics(): Promise<string>;
  /** drains every worker */
  drain(): void;
  /** re-reads the config file in the primary and applies it everywhere; the refusal, if any */
  reload(): Promise<string | undefined>;
  /** this worker's own requests in flight on the engine (its view counts the group's) */
  ownInFlight(e: Upstream): number;
}

/**
 * Admission-queue bounds: the tenancy block's queue when the config has one (whether or not keys are
 * loaded yet: a keys directory can turn tenancy on without a reload), else the admission block.
 */
function queueLimits(cfg: RouterConfig): QueueLimits {
  const t = cfg.tenancy?.queue;
  if (t) return { queueSize: t.size, queueTimeout: t.timeout, perFlow: t.perTenant };
  return { queueSize: cfg.admission.queueSize, queueTimeout: cfg.admission.queueTimeout };
}

export class Router {
  readonly registry: Registry;
  readonly metrics: RouterMetrics;
  readonly queue: AdmissionQueue;
  readonly budget: RetryBudget;
  readonly discovery: StaticDiscovery;
  private policy!: Policy;
  /** cache-aware routing state (prefix index, KV-event index and subscriptions, watchdog) */
  readonly cache: CacheRouting;
  readonly proxy: Proxy;
  private readonly accessLog: AccessLog;
  readonly server: Server;
  /** client connections against limits.maxConnections: idle ones give way to new ones */
  readonly connections: ClientConnections;
  /** the listening sockets beyond the server's own (accept.ts) */
  private listening: Listening | undefined;
  /** OTLP span exporter; undefined when tracing is off */
  readonly tracer: Tracer | undefined;
  /** API keys, tenant limits, cache salts (src/tenancy); off until a key is configured */
  readonly tenancy: TenancyState;
  /** the tenancy gate every way in goes through: HTTP ingress and the endpoint picker (epp-glue.ts) */
  readonly gate: RouterGate;
  /** the edge: HTTP request → routed request or rejection */
  private readonly ingress: Ingress;
  /** long prompts counted off the loop at the edge; tokenizers loaded at discovery */
  private readonly prompts: PromptBudget;
  /** engines draining: the deadline after which their requests in flight move elsewhere */
  private readonly drains: EngineDrains;
  /** which engine made each stored response (../dataplane/response-affinity.ts); a router group shares it */
  readonly affinity: ResponseAffinity;
  /** the token-in requests in flight by tenant, so an abort stops only the caller's own */
  readonly issued = new IssuedIds();
  /** set once a drain starts: /ready answers 503 and responses close their connections */
  draining = false;
  /** re-reads the config file (set by startRouter); returns an error message when it was refused */
  onReload: (() => string | undefined | Promise<string | undefined>) | undefined;
  /** set in a router worker: the process group it serves with */
  group: RouterGroup | undefined;
  private droppedLogged = 0;
  /** requests between their headers and the end of their handling (a drain waits for these) */
  private active = 0;
  private readonly routeDone = (): void => {
    this.active--;
  };

  constructor(private cfg: RouterConfig) {
    this.registry = new Registry(cfg, {
      onEject: (url, reason) => {
        this.metrics.ejections.inc({ engine: url, reason });
        this.drains.ejected(url);
      },
      onEjectWithheld: (url, reason) => this.metrics.ejectionsWithheld.inc({ engine: url, reason }),
      onProbeExcused: (url, why) => this.metrics.probeTimeoutsExcused.inc({ engine: url, why }),
      onPanic: (model) => this.metrics.panics.inc({ model }),
    });
    this.tenancy = new TenancyState(cfg.tenancy ?? {});
    this.queue = new AdmissionQueue(queueLimits(cfg));
    this.budget = new RetryBudget(cfg.retry);
    this.tracer = cfg.tracing.otlpEndpoint
      ? new Tracer({
          endpoint: cfg.tracing.otlpEndpoint,
          serviceName: cfg.tracing.serviceName,
          sampleRatio: cfg.tracing.sampleRatio,
        })
      : undefined;
    this.metrics = new RouterMetrics({
      tracing: () => this.tracer,
      forEachEngine: (fn) => {
        for (const e of this.registry.engines.values()) {
          if (e.draining) continue;
          fn(e.url, {
            healthy: e.healthy,
            // a worker reports its own (the group's /metrics adds them up)
            inFlight: this.group ? this.group.ownInFlight(e) : e.view.inFlight,
            running: e.view.running,
            waiting: e.view.waiting,
            kv: e.view.kvUsage,
          });
        }
      },
      queueDepth: () => this.queue.depth,
      responseIds: () => ({ size: this.affinity.size, evictions: this.affinity.evictions }),
      sessions: () => this.ingress.sessions,
      tenancyKeys: () => ({
        keys: this.tenancy.keyCount,
        stale: this.tenancy.keysError !== undefined,
        refused: this.tenancy.keyReloads,
      }),
    });
    if (cfg.lora && (cfg.lora.dir || cfg.lora.adapters.length > 0)) {
      const adapters = new AdapterLoader(
        new AdapterRegistry(cfg.lora.dir, cfg.lora.adapters),
        () => this.cfg,
        cfg.lora.maxCpuLoras,
      );
      this.registry.adapters = adapters;
      this.metrics.watchAdapters(adapters.stats);
    }
    this.affinity = new ResponseAffinity(cfg.responses.maxIds);
    this.cache = new CacheRouting(this.registry, cfg, this.metrics.registry);
    const m = this.metrics;
    this.gate = new RouterGate(
      this.tenancy,
      {
        finished: (t, status) => m.tenantRequests.child(t, String(status)).value++,
        tokens: (t, kind, n) => (m.tenantTokens.child(t, kind).value += n),
        rejected: (t, limit) => m.tenantRejected.child(t, limit).value++,
      },
      { contextOf: (model) => this.registry.maxModelLen(model) },
    );
    this.queue.onWaited = (flow, s) => m.tenantQueueWait.child(flow).observe(s);
    this.policy = this.makePolicy(cfg);
    this.queue.recheckMs = this.policy.recheckMs ?? 0;
    this.registry.on("capacity", () => this.queue.kick());
    this.prompts = new PromptBudget(this.registry, () => this.cfg);
    // before the engine can enter rotation with these models: no request waits for a tokenizer load
    this.registry.on("models", (e) => this.prompts.warm(e.modelCards));
    const linesSkipped = m.accessLinesSkipped.child();
    this.accessLog = new AccessLog(
      () => this.cfg,
      () => linesSkipped.value++,
    );
    this.proxy = new Proxy({
      accessLog: this.accessLog,
      tracer: this.tracer,
      registry: this.registry,
      metrics: this.metrics,
      queue: this.queue,
      budget: this.budget,
      config: () => this.cfg,
      policy: () => this.policy,
      disagg: new Disaggregation({
        registry: this.registry,
        config: () => this.cfg,
        budget: this.budget,
        metrics: this.metrics.registry,
        mayDebug: (req) => this.mayDebug(req),
      }),
      hashAhead: (view, since, request) => this.cache.hashAhead(view, since, request),
      loraCache: this.cache,
      affinity: this.affinity,
      issued: this.issued,
      onRouted: (req, res, view, engineUrl, requestId) => {
        const debugLine = routeLog.isLevelEnabled("debug");
        const header = !res.headersSent && this.mayDebug(req);
        if (!debugLine && !header) return;
        const note = this.cache.explain(view) ?? `engine=${engineUrl}; policy=${this.policy.name}`;
        // with the request id its access line carries, so a decision log joins what was predicted to
        // the TTFT that came (bench/support/decision-table.ts)
        if (debugLine) routeLog.debug({ requestId, model: view.model, seq: view.seq, note }, "routed");
        if (!header) return;
        res.setHeader(
          "x-switchyard-route",
          note +
            (view.sessionKey !== undefined ? `; session=${encodeURIComponent(view.sessionKey)}` : "") +
            (this.group ? `; ${this.group.label}` : ""),
        );
      },
    });
    this.ingress = new Ingress({
      config: () => this.cfg,
      registry: this.registry,
      gate: this.gate,
      metrics: this.metrics,
      budget: this.prompts,
      deadlines: this.proxy.deadlines,
      policyName: () => this.policy.name,
      accessLog: this.accessLog,
      affinity: this.affinity,
      issued: this.issued,
      forward: (req, res, pr) => this.proxy.handle(req, res, pr),
    });
    this.drains = new EngineDrains({
      registry: this.registry,
      config: () => this.cfg,
      attemptsOn: (e) => this.proxy.attemptsOn(e),
    });
    this.discovery = new StaticDiscovery(engineSpecs(cfg));
    const lim = cfg.limits;
    this.server = createServer(
      {
        keepAliveTimeout: lim.keepAliveTimeout,
        // slowloris: headers and the whole request must arrive in time (node checks both per connection)
        requestTimeout: lim.requestTimeout,
        headersTimeout: lim.headersTimeout,
        maxHeaderSize: lim.maxHeaderBytes,
        connectionsCheckingInterval: Math.min(30_000, Math.max(250, lim.headersTimeout / 4)),
      },
      (req, res) => {
        this.active++;
        let pending: Promise<void> | void;
        try {
          pending = this.route(req, res);
        } catch (err) {
          return this.routeFailed(res, err);
        }
        // answered synchronously (health, ready, models, errors): no promise at all
        if (pending === undefined) this.active--;
        else pending.then(this.routeDone, (err: unknown) => this.routeFailed(res, err));
      },
    );
    this.server.maxHeadersCount = 200;
    // the cap is kept by ClientConnections, where idle connections give way; Node's sits a little above
    if (lim.maxConnections > 0) this.server.maxConnections = backstop(lim.maxConnections);
    this.server.on("drop", this.connectionDropped);
    this.connections = new ClientConnections(this.server, lim.maxConnections, lim.headersTimeout, {
      refused: this.connectionDropped,
      reclaimed: () => this.metrics.connectionsReclaimed.child().value++,
    });
  }

  /**
   * `x-switchyard-debug: 1` from a client debug.allowHeader lets have the explanation (RouterGate.mayDebug);
   * anyone else's changes nothing in the answer.
   */
  mayDebug(req: IncomingMessage): boolean {
    if (req.headers["x-switchyard-debug"] !== "1") return false;
    return this.gate.mayDebug(this.cfg.debug.allowHeader, req.headers["x-switchyard-debug-key"]);
  }

  /** A connection refused because limits.maxConnections were open, none of them idle. */
  private readonly connectionDropped = (): void => {
    this.metrics.connectionsDropped.child().value++;
    // a flood of drops logs once a second at most
    const now = Date.now();
    if (now - this.droppedLogged < 1000) return;
    this.droppedLogged = now;
    log.warn(
      { maxConnections: this.cfg.limits.maxConnections },
      "connection refused: limits.maxConnections client connections are open (switchyard_connections_dropped_total counts them)",
    );
  };

  /** Listening sockets accepting for this router (0 before listen()). */
  get listenSockets(): number {
    return this.listening?.sockets ?? 0;
  }

  /**
   * Listens on host:port, on `limits.listenSockets` sockets where Node can share a port between them
   * (see accept.ts), else on one. Resolves once every socket accepts.
   */
  async listen(port: number, host: string, ownSockets = false): Promise<void> {
    const lim = this.cfg.limits;
    this.listening = await listenOnSockets(
      this.server,
      port,
      host,
      lim.listenSockets,
      backstop(lim.maxConnections),
      this.connectionDropped,
      ownSockets,
    );
    if (this.listening.sockets > 1)
      log.debug({ sockets: this.listening.sockets }, "listening on several sockets");
  }

  get config(): RouterConfig {
    return this.cfg;
  }

  /** The policy new requests are routed with (the endpoint picker decides with it too). */
  get routingPolicy(): Policy {
    return this.policy;
  }

  private makePolicy(cfg: RouterConfig): Policy {
    return createPolicy(
      cfg.policy as PolicyName,
      policyOptions(policySettingsOf(cfg), { cache: this.cache }),
    );
  }

  async start(): Promise<void> {
    // a router worker's engines come from its primary (src/router/cluster)
    if (this.registry.leader) return this.cache.start();
    await this.registry.addSource(this.discovery);
    // Kubernetes / file discovery (not hot-reloaded: a mode change needs a restart)
    for (const src of discoverySources(this.cfg.discovery)) await this.registry.addSource(src);
    this.registry.startLoops();
    await this.cache.start();
  }

  /** Applies a new configuration to new requests; in-flight ones finish under the old one. */
  reconfigure(cfg: RouterConfig): void {
    if (cfg.host !== this.cfg.host || cfg.port !== this.cfg.port) {
      log.warn("host/port changes need a restart; keeping the current listener");
    }
    // first: reading a new keys directory may fail, and a failed reload must change nothing
    this.tenancy.apply(cfg.tenancy ?? {});
    this.cfg = cfg;
    this.cache.setConfig(cfg);
    this.prompts.reset();
    this.policy = this.makePolicy(cfg);
    this.queue.recheckMs = this.policy.recheckMs ?? 0;
    this.queue.setLimits(queueLimits(cfg));
    this.budget.setOptions(cfg.retry);
    this.affinity.setCap(cfg.responses.maxIds);
    this.registry.setConfig(cfg);
    this.discovery.update(engineSpecs(cfg));
    log.info({ backends: cfg.backends.length, policy: cfg.policy }, "configuration applied");
  }

  /** Drain mode: /ready answers 503 (the load balancer stops sending) and connections close after their response. */
  startDrain(): void {
    if (this.draining) return;
    this.draining = true;
    log.info({ inFlight: this.metrics.inFlight, queued: this.queue.depth }, "draining");
  }

  /**
   * Graceful stop: no new connections, in-flight and queued requests finish for up to `drainMs`
   * (default `drainTimeout`), then whatever is still open is cut and everything closes.
   */
  async close(drainMs: number = this.cfg.drainTimeout): Promise<void> {
    this.startDrain();
    this.listening?.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // a keep-alive connection whose response ended during the drain goes idle: close it promptly;
    // once no request is being handled, what is left (clients that stopped reading) is cut
    const sweep = setInterval(() => {
      if (this.active === 0 && this.queue.depth === 0) this.server.closeAllConnections();
      else this.server.closeIdleConnections();
    }, 200);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), drainMs)));
    const timedOut = await Promise.race([closed.then(() => false), deadline]);
    clearInterval(sweep);
    clearTimeout(timer);
    if (timedOut) {
      log.warn(
        { drainMs, inFlight: this.metrics.inFlight, queued: this.queue.depth },
        "drain deadline passed: cutting the requests still open",
      );
      this.queue.clear();
      this.server.closeAllConnections();
      await closed;
    }
    this.queue.clear();
    this.drains.close();
    this.accessLog.close();
    await this.cache.close();
    await this.registry.close();
    await this.tracer?.shutdown();
  }

  private routeFailed(res: ServerResponse, err: unknown): void {
    this.active--;
    log.error({ err }, "unhandled router error");
    if (!res.headersSent) sendError(res, 500, "internal router error");
    else res.destroy();
  }

  /**
   * Not async: the JSON routes hand back their handler's promise as it is (an async function
   * returning a promise adds a resolve-thenable job and ticks per request), the rest answer at once.
   */
  private route(req: IncomingMessage, res: ServerResponse): Promise<void> | void {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q >= 0 ? url.slice(0, q) : url;
    // draining: finish this response, then close the connection so the client reconnects elsewhere
    if (this.draining) res.setHeader("connection", "close");
    // what each path is, and whether it is relayed, is the endpoint table's (../request/endpoints.ts)
    const m = matchEndpoint(path);
    const method = req.method;
    if (m?.endpoint.served === "relay" && (method === "POST" || method === "GET")) {
      if (m.endpoint.methods.includes(method)) return this.ingress.handle(req, res, path, url, m);
    } else if (method === "POST") {
      if (path === "/ping") return this.ready(res);
      if (path === "/admin/reload" || path === "/admin/drain") return this.handleAdmin(req, res, path);
      if (path === "/admin/engines/drain" || path === "/admin/engines/undrain")
        return this.handleEngineDrain(req, res, path === "/admin/engines/drain");
    } else if (req.method === "GET" || req.method === "HEAD") {
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
          return this.json(res, 200, { server_load: this.metrics.inFlight });
        case "/v1/models":
          try {
            this.gate.authenticate(req);
          } catch (err) {
            return sendError(res, err as HttpError);
          }
          return this.json(res, 200, { object: "list", data: this.models() });
        case "/engines":
          try {
            this.gate.authenticateAdmin(req);
          } catch (err) {
            return sendError(res, err as HttpError);
          }
          return this.json(res, 200, { engines: this.engines() });
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
    sendError(res, notRelayed(req.method ?? "", path, m));
  }

  /** /ready and SageMaker's /ping: 200 while an engine is ready and the router is not draining. */
  private ready(res: ServerResponse): void {
    if (this.draining)
      return sendError(res, new HttpError(503, "router is draining", null, { "retry-after": "1" }));
    if (this.registry.anyReady()) return this.json(res, 200, { status: "ready" });
    sendError(res, new HttpError(503, "no engine is ready", null, { "retry-after": "1" }));
  }

  /**
   * /load tells the fleet's live request count (vLLM's `server_load`): once the router has keys, a
   * client must present one (a tenant's or the admin's), so an anonymous one learns nothing of the
   * traffic of others; without keys it stays open, as vLLM serves it.
   */
  private authenticateFleetState(req: IncomingMessage): void {
    if (!this.gate.enabled) {
      if (this.tenancy.adminGuarded) this.gate.authenticateAdmin(req);
      return;
    }
    try {
      this.gate.authenticate(req);
    } catch (err) {
      if (!this.tenancy.adminGuarded) throw err;
      try {
        this.gate.authenticateAdmin(req);
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
    const access = this.cfg.metrics.access;
    if (access === "open") return;
    if (access === "admin" && !this.tenancy.adminGuarded)
      throw new HttpError(403, "metrics.access is admin but no admin key is configured");
    this.gate.authenticateAdmin(req);
  }

  private async serveMetrics(res: ServerResponse): Promise<void> {
    let text: string;
    try {
      text = this.group ? await this.group.metrics() : await this.metrics.registry.metrics();
    } catch (err) {
      return sendError(res, 503, `metrics unavailable: ${(err as Error).message}`);
    }
    res.writeHead(200, { "content-type": this.metrics.registry.contentType });
    res.end(text);
  }

  /** POST /admin/reload (re-read the config file now), POST /admin/drain (readiness off, connections close). */
  private async handleAdmin(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    req.resume();
    try {
      // without any admin key these stay closed: an open drain endpoint is a denial of service
      if (!this.tenancy.adminGuarded)
        throw new HttpError(403, "admin endpoints are disabled: no admin key is configured");
      this.gate.authenticateAdmin(req);
    } catch (err) {
      return sendError(res, err as HttpError);
    }
    if (path === "/admin/drain") {
      if (this.group) this.group.drain();
      else this.startDrain();
      return this.json(res, 202, { status: "draining", inFlight: this.metrics.inFlight });
    }
    if (!this.onReload) return sendError(res, 409, "this router was started without a config file");
    const error = await this.onReload();
    if (error !== undefined) return sendError(res, 400, `reload refused, previous config kept: ${error}`);
    this.json(res, 200, { status: "reloaded" });
  }

  /**
   * POST /admin/engines/drain `{"engine": URL}`: the engine takes no new requests; those in flight
   * get engineDrainTimeout, then move (docs/router.md). POST /admin/engines/undrain ends it.
   */
  private async handleEngineDrain(req: IncomingMessage, res: ServerResponse, drain: boolean): Promise<void> {
    let url: string;
    try {
      if (!this.tenancy.adminGuarded)
        throw new HttpError(403, "admin endpoints are disabled: no admin key is configured");
      this.gate.authenticateAdmin(req);
      const body = await readRequestBody(req, 64 * 1024, {
        queue: this.proxy.deadlines,
        ms: this.cfg.limits.bodyIdleTimeout,
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
    const e = this.registry.engines.get(url);
    if (!e || e.draining)
      return sendError(res, new HttpError(404, `no engine \`${url}\` is known to this router`, "engine"));
    if (drain) {
      this.registry.health.drain(e, true);
      return this.json(res, 202, {
        engine: url,
        state: e.state,
        inFlight: e.view.inFlight,
        drainTimeoutMs: this.cfg.engineDrainTimeout,
      });
    }
    this.drains.cancel(e);
    this.registry.health.undrain(e);
    this.json(res, 200, { engine: url, state: e.state });
  }

  private json(res: ServerResponse, status: number, value: unknown): void {
    const body = JSON.stringify(value);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  /** Models of engines in rotation (all engines when none is), each once; aliases listed with their target as root. */
  models(): ModelCard[] {
    const seen = new Map<string, ModelCard>();
    const engines = [...this.registry.engines.values()].filter((e) => !e.draining);
    const live = engines.filter((e) => e.healthy);
    for (const e of live.length > 0 ? live : engines) {
      for (const card of e.modelCards) if (!seen.has(card.id)) seen.set(card.id, card);
    }
    for (const [alias, target] of Object.entries(this.cfg.aliases)) {
      const t = seen.get(target);
      if (t && !seen.has(alias)) seen.set(alias, { ...t, id: alias, root: t.root ?? target });
    }
    return [...seen.values()];
  }

  engines(): unknown[] {
    const now = Date.now();
    return [...this.registry.engines.values()].map((e) => ({
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
      kvEvents: this.cache.subs.describe(e.url),
    }));
  }
}
