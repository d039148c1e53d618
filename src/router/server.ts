// The router process: node:http server, the route table, request validation at the edge, and the
// router-local endpoints (/v1/models, /health, /ready, /metrics, /engines).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { HttpError, sendError } from "../http/errors.js";
import { parseJsonObject } from "../http/body.js";
import { readRequestBody } from "./body.js";
import {
  createPolicy,
  parseSloHeader,
  predictiveOptions,
  SLO_HEADER,
  type Policy,
  type PolicyName,
} from "../routing/index.js";
import { AdmissionQueue, RetryBudget } from "./admission.js";
import type { RouterConfig } from "./config.js";
import { StaticDiscovery } from "../discovery/static.js";
import { discoverySources } from "../discovery/index.js";
import { Tracer } from "../obs/tracing.js";
import { RouterMetrics } from "./metrics.js";
import { Proxy, type ProxyRequest } from "./proxy.js";
import { Disaggregation, roleOf } from "./disagg.js";
import { Registry, type ModelCard } from "./registry.js";
import { CacheRouting } from "./kv/cache-routing.js";
import { logger } from "../obs/log.js";
import { TenancyState } from "../tenancy/state.js";
import { RouterGate } from "../tenancy/router-gate.js";
import type { Tenant } from "../tenancy/state.js";
import { ANONYMOUS_FLOW, type QueueFlow, type QueueLimits } from "./admission.js";

const log = logger("router");

/** JSON endpoints relayed to an engine serving the body's `model`. */
const JSON_ROUTES = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/embeddings",
  "/v1/responses",
  "/v1/rerank",
  "/v2/rerank",
  "/rerank",
  "/v1/score",
  "/score",
  "/pooling",
  "/classify",
  "/tokenize",
  "/detokenize",
]);
/** vLLM picks its only model when these omit `model`; the router does the same when the fleet has one. */
const MODEL_OPTIONAL = new Set(["/tokenize", "/detokenize", "/pooling", "/classify"]);
const MULTIPART_ROUTES = new Set(["/v1/audio/transcriptions", "/v1/audio/translations"]);
const MULTIPART_SNIFF_BYTES = 64 * 1024;

/**
 * Admission-queue bounds: the tenancy block's queue when the config has one (whether or not keys are
 * loaded yet: a keys directory can turn tenancy on without a reload), else the admission block.
 */
function queueLimits(cfg: RouterConfig): QueueLimits {
  const t = cfg.tenancy?.queue;
  if (t) return { queueSize: t.size, queueTimeout: t.timeout, perFlow: t.perTenant };
  return { queueSize: cfg.admission.queueSize, queueTimeout: cfg.admission.queueTimeout };
}

function flowOf(t: Tenant | undefined): QueueFlow {
  return t ? { key: t.name, weight: t.weight, priority: t.priority } : ANONYMOUS_FLOW;
}

function specsOf(cfg: RouterConfig) {
  return cfg.backends.map((b) => ({
    url: b.url,
    weight: b.weight,
    apiKey: "apiKey" in b ? b.apiKey : undefined,
    role: "role" in b ? b.role : undefined,
  }));
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
  private readonly proxy: Proxy;
  readonly server: Server;
  /** OTLP span exporter; undefined when tracing is off */
  readonly tracer: Tracer | undefined;
  /** API keys, tenant limits, cache salts (src/tenancy); off until a key is configured */
  readonly tenancy: TenancyState;
  private readonly gate: RouterGate;
  /** set once a drain starts: /ready answers 503 and responses close their connections */
  draining = false;
  /** re-reads the config file (set by startRouter); returns an error message when it was refused */
  onReload: (() => string | undefined) | undefined;
  private droppedLogged = 0;
  /** requests between their headers and the end of their handling (a drain waits for these) */
  private active = 0;
  private readonly routeDone = (): void => {
    this.active--;
  };

  constructor(private cfg: RouterConfig) {
    this.registry = new Registry(cfg, {
      onEject: (url, reason) => this.metrics.ejections.inc({ engine: url, reason }),
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
            inFlight: e.view.inFlight,
            running: e.view.running,
            waiting: e.view.waiting,
            kv: e.view.kvUsage,
          });
        }
      },
      queueDepth: () => this.queue.depth,
    });
    this.cache = new CacheRouting(this.registry, cfg, this.metrics.registry);
    const m = this.metrics;
    this.gate = new RouterGate(this.tenancy, {
      finished: (t, status) => m.tenantRequests.child(t, String(status)).value++,
      tokens: (t, kind, n) => (m.tenantTokens.child(t, kind).value += n),
      rejected: (t, limit) => m.tenantRejected.child(t, limit).value++,
    });
    this.queue.onWaited = (flow, s) => m.tenantQueueWait.child(flow).observe(s);
    this.policy = this.makePolicy(cfg);
    this.registry.on("capacity", () => this.queue.kick());
    this.proxy = new Proxy({
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
      }),
      onRouted: (req, res, view, engineUrl) => {
        if (req.headers["x-switchyard-debug"] !== "1" || res.headersSent) return;
        res.setHeader(
          "x-switchyard-route",
          this.cache.explain(view) ?? `engine=${engineUrl}; policy=${this.policy.name}`,
        );
      },
    });
    this.discovery = new StaticDiscovery(specsOf(cfg));
    const lim = cfg.limits;
    this.server = createServer(
      {
        keepAliveTimeout: 65_000,
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
    if (lim.maxConnections > 0) this.server.maxConnections = lim.maxConnections;
    this.server.on("drop", () => {
      this.metrics.connectionsDropped.child().value++;
      // a flood of drops logs once a second at most
      const now = Date.now();
      if (now - this.droppedLogged < 1000) return;
      this.droppedLogged = now;
      log.warn(
        { maxConnections: this.server.maxConnections },
        "connection refused: limits.maxConnections client connections are open (switchyard_connections_dropped_total counts them)",
      );
    });
  }

  get config(): RouterConfig {
    return this.cfg;
  }

  private makePolicy(cfg: RouterConfig): Policy {
    return createPolicy(cfg.policy as PolicyName, {
      sessionLoadFactor: cfg.session.loadFactor,
      cache: this.cache,
      cacheAware: cfg.routing.cost,
      predictive: predictiveOptions(cfg.predictive, cfg.slo),
    });
  }

  async start(): Promise<void> {
    await this.registry.addSource(this.discovery);
    // Kubernetes / file discovery (not hot-reloaded: a mode change needs a restart)
    for (const src of discoverySources(this.cfg.discovery)) await this.registry.addSource(src);
    this.registry.startLoops();
    this.cache.start();
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
    this.policy = this.makePolicy(cfg);
    this.queue.setLimits(queueLimits(cfg));
    this.budget.setOptions(cfg.retry);
    this.registry.setConfig(cfg);
    this.discovery.update(specsOf(cfg));
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
    if (req.method === "POST") {
      if (JSON_ROUTES.has(path)) return this.handleJson(req, res, path, url);
      if (MULTIPART_ROUTES.has(path)) return this.handleMultipart(req, res, url);
      if (path === "/admin/reload" || path === "/admin/drain") return this.handleAdmin(req, res, path);
    } else if (req.method === "GET" || req.method === "HEAD") {
      switch (path) {
        case "/health":
          res.writeHead(200, { "content-length": 0 });
          return void res.end();
        case "/ready":
          if (this.draining)
            return sendError(res, new HttpError(503, "router is draining", null, { "retry-after": "1" }));
          if (this.registry.anyReady()) return this.json(res, 200, { status: "ready" });
          return sendError(res, new HttpError(503, "no engine is ready", null, { "retry-after": "1" }));
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
          return this.serveMetrics(res);
      }
    }
    req.resume();
    if (JSON_ROUTES.has(path) || MULTIPART_ROUTES.has(path) || path === "/v1/models") {
      return sendError(
        res,
        new HttpError(405, `method ${req.method} not allowed on ${path}`, null, {}, "BadRequestError"),
      );
    }
    sendError(res, 404, `no route for ${req.method} ${path}`);
  }

  private async serveMetrics(res: ServerResponse): Promise<void> {
    const text = await this.metrics.registry.metrics();
    res.writeHead(200, { "content-type": this.metrics.registry.contentType });
    res.end(text);
  }

  /** POST /admin/reload (re-read the config file now), POST /admin/drain (readiness off, connections close). */
  private handleAdmin(req: IncomingMessage, res: ServerResponse, path: string): void {
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
      this.startDrain();
      return this.json(res, 202, { status: "draining", inFlight: this.metrics.inFlight });
    }
    if (!this.onReload) return sendError(res, 409, "this router was started without a config file");
    const error = this.onReload();
    if (error !== undefined) return sendError(res, 400, `reload refused, previous config kept: ${error}`);
    this.json(res, 200, { status: "reloaded" });
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
      scrapeAgeMs: e.lastScrapeMs ? now - e.lastScrapeMs : null,
      passiveFailures: e.passiveFailures,
      lastError: e.lastError || null,
    }));
  }

  /** The only model name in the fleet, when there is exactly one. */
  private soleModel(): string | undefined {
    let only: string | undefined;
    for (const e of this.registry.engines.values()) {
      for (const m of e.view.models) {
        if (only === undefined) only = m;
        else if (only !== m) return undefined;
      }
    }
    return only;
  }

  private resolveModel(model: string): string {
    return this.cfg.aliases[model] ?? model;
  }

  private async handleJson(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    url: string,
  ): Promise<void> {
    let pr: ProxyRequest;
    let tenant: Tenant | undefined;
    let admitted: Awaited<ReturnType<RouterGate["admit"]>> | undefined;
    try {
      // keys before the body: an anonymous client never makes the router buffer a body
      tenant = this.gate.authenticate(req);
      let body = await this.readBody(req);
      const obj = parseJsonObject(req, body);
      validateFields(path, obj);
      let mutated = false;
      let model = obj.model as string | undefined;
      if (model === undefined) {
        model = MODEL_OPTIONAL.has(path) ? this.soleModel() : undefined;
        if (model === undefined) throw new HttpError(400, "the request needs a `model` field", "model");
      } else {
        const target = this.resolveModel(model);
        if (target !== model) {
          // an alias: the engine only knows the target name, so this (rare) request is re-serialised
          model = target;
          obj.model = target;
          mutated = true;
        }
      }
      if (!this.registry.knowsModel(model))
        throw new HttpError(404, `The model \`${model}\` does not exist.`, "model");
      if (tenant) {
        // limits, then the tenant's cache_salt into the body before the routing view is built,
        // so the KV-aware policy hashes the blocks the engine will
        admitted = await this.gate.admit(tenant, path, obj, body.length);
        mutated ||= admitted.mutated;
      }
      if (mutated) body = Buffer.from(JSON.stringify(obj));
      const slo = parseSloHeader(req.headers[SLO_HEADER]);
      if (slo instanceof Error) throw new HttpError(400, slo.message, SLO_HEADER);
      pr = {
        sloTtftMs: slo,
        path: url,
        model,
        stream: obj.stream === true,
        sessionKey: this.sessionKey(req, obj),
        body,
        parsed: obj,
        tenant: admitted?.request,
        flow: flowOf(tenant),
      };
    } catch (err) {
      if (err instanceof HttpError) {
        if (err.status !== 429 && err.status !== 503) this.gate.refused(tenant, err.status);
        this.metrics.requests.inc({
          model: "none",
          engine: "none",
          status: String(err.status),
          policy: this.policy.name,
        });
        return sendError(res, err);
      }
      throw err;
    }
    await this.proxy.handle(req, res, pr);
  }

  /** The JSON body; a client stalling mid-body for limits.bodyIdleTimeout gets 408 (slowloris). */
  private readBody(req: IncomingMessage): Promise<Buffer> {
    const lim = this.cfg.limits;
    return readRequestBody(req, lim.maxBodyBytes, { queue: this.proxy.deadlines, ms: lim.bodyIdleTimeout });
  }

  private sessionKey(req: IncomingMessage, obj: Record<string, unknown> | undefined): string | undefined {
    const h = req.headers[this.cfg.session.header.toLowerCase()];
    if (typeof h === "string" && h !== "") return h;
    const key = this.cfg.session.bodyKey;
    if (key && obj) {
      const v = obj[key];
      if (typeof v === "string" || typeof v === "number") return String(v);
    }
    return undefined;
  }

  /** Multipart uploads stream through: only the head is read, to find the `model` field. */
  private async handleMultipart(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const reject = (e: HttpError) => {
      req.resume();
      this.metrics.requests.inc({
        model: "none",
        engine: "none",
        status: String(e.status),
        policy: this.policy.name,
      });
      sendError(res, e);
    };
    let tenant: Tenant | undefined;
    try {
      tenant = this.gate.authenticate(req);
    } catch (err) {
      return reject(err as HttpError);
    }
    const ctype = String(req.headers["content-type"] ?? "");
    if (!ctype.toLowerCase().startsWith("multipart/form-data")) {
      return reject(new HttpError(415, `unsupported Content-Type '${ctype}': expected multipart/form-data`));
    }
    const limit = this.cfg.limits.maxBodyBytes;
    if (Number(req.headers["content-length"] ?? 0) > limit) {
      return reject(new HttpError(413, `request body exceeds the limit of ${limit} bytes`));
    }
    const it = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let size = 0;
    let ended = false;
    let model: string | undefined;
    while (size < MULTIPART_SNIFF_BYTES) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      head.push(r.value);
      size += r.value.length;
      const m = /name="model"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n/.exec(
        Buffer.concat(head).toString("latin1"),
      );
      if (m) {
        model = Buffer.from(m[1]!, "latin1").toString("utf8");
        break;
      }
    }
    model = model !== undefined ? this.resolveModel(model) : this.soleModel();
    if (model === undefined) {
      return reject(new HttpError(400, "the form needs a `model` field before the file part", "model"));
    }
    if (!this.registry.knowsModel(model)) {
      return reject(new HttpError(404, `The model \`${model}\` does not exist.`, "model"));
    }
    let sent = 0;
    async function* body(): AsyncGenerator<Buffer> {
      for (const c of head) {
        sent += c.length;
        yield c;
      }
      if (ended) return;
      while (true) {
        const r = await it.next();
        if (r.done) return;
        sent += r.value.length;
        if (sent > limit) throw new HttpError(413, `request body exceeds the limit of ${limit} bytes`);
        yield r.value;
      }
    }
    const stream = Readable.from(body(), { objectMode: false });
    let admitted;
    if (tenant) {
      try {
        admitted = await this.gate.admit(
          tenant,
          url,
          undefined,
          Number(req.headers["content-length"] ?? size),
        );
      } catch (err) {
        if (err instanceof HttpError) return reject(err);
        throw err;
      }
    }
    await this.proxy.handle(req, res, {
      path: url,
      model,
      stream: false,
      sessionKey: this.sessionKey(req, undefined),
      body: stream,
      tenant: admitted?.request,
      flow: flowOf(tenant),
    });
  }
}

const NUMERIC_FIELDS = ["max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "seed"];

/** Cheap checks of the fields the router itself reads or that are wrong in an obvious way. */
function validateFields(path: string, obj: Record<string, unknown>): void {
  if (obj.model !== undefined && typeof obj.model !== "string") {
    throw new HttpError(400, "`model` must be a string", "model");
  }
  if (obj.stream !== undefined && obj.stream !== null && typeof obj.stream !== "boolean") {
    throw new HttpError(400, "`stream` must be a boolean", "stream");
  }
  if (path === "/v1/chat/completions" && !Array.isArray(obj.messages)) {
    throw new HttpError(400, "`messages` must be an array of messages", "messages");
  }
  if (path === "/v1/completions") {
    const p = obj.prompt;
    if (typeof p !== "string" && !Array.isArray(p)) {
      throw new HttpError(
        400,
        "`prompt` must be a string, a list of strings or a list of token ids",
        "prompt",
      );
    }
  }
  for (const f of NUMERIC_FIELDS) {
    const v = obj[f];
    if (v !== undefined && v !== null && typeof v !== "number")
      throw new HttpError(400, `\`${f}\` must be a number`, f);
  }
}
