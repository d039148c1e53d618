// The router's HTTP edge: the server and its connections, the lifecycle (start, hot reconfigure,
// drain, close) and dispatch by the endpoint table. The rooms it serves with are wired in
// ../assembly.ts; turning an HTTP request into a routed one is ingress.ts's, serving it
// ../dataplane/attempt-loop.ts's; the router's own routes (/health, /metrics, /admin/*, ...) are
// own-routes.ts's; draining one engine, ../migration/drain.ts's.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { sendError } from "../../http/errors.js";
import type { Policy } from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import { logger } from "../../obs/log.js";
import { matchEndpoint } from "../request/endpoints.js";
import { autoListenSockets, listenOnSockets, type Listening } from "./accept.js";
import { backstop, ClientConnections } from "./connections.js";
import { OwnRoutes } from "./own-routes.js";
import type { RouterGroup, RouterRooms } from "./rooms.js";

const log = logger("router");

export type { RouterGroup, RouterRooms } from "./rooms.js";

/** The rooms (../assembly.ts) behind an HTTP server, with the lifecycle of both. */
export class Router {
  readonly registry: RouterRooms["registry"];
  readonly metrics: RouterRooms["metrics"];
  readonly queue: RouterRooms["queue"];
  readonly budget: RouterRooms["budget"];
  readonly discovery: RouterRooms["discovery"];
  readonly cache: RouterRooms["cache"];
  readonly attemptLoop: RouterRooms["attemptLoop"];
  readonly tracer: RouterRooms["tracer"];
  readonly tenancy: RouterRooms["tenancy"];
  readonly gate: RouterRooms["gate"];
  readonly affinity: RouterRooms["affinity"];
  readonly issued: RouterRooms["issued"];
  readonly server: Server;
  /** client connections against limits.maxConnections: idle ones give way to new ones */
  readonly connections: ClientConnections;
  /** the listening sockets beyond the server's own (accept.ts) */
  private listening: Listening | undefined;
  private readonly ownRoutes: OwnRoutes;
  /** set once a drain starts: /ready answers 503 and responses close their connections */
  draining = false;
  /** set in a router worker: true when a response should close its connection to even the group */
  closeForBalance: (() => boolean) | undefined;
  /** set in a router worker: told when the count of client connections changes */
  onConnectionsChanged: (() => void) | undefined;
  /** re-reads the config file (set by startRouter); returns an error message when it was refused */
  onReload: (() => string | undefined | Promise<string | undefined>) | undefined;
  private droppedLogged = 0;
  /** requests between their headers and the end of their handling (a drain waits for these) */
  private active = 0;
  private readonly routeDone = (): void => {
    this.active--;
  };

  constructor(private readonly rooms: RouterRooms) {
    this.registry = rooms.registry;
    this.metrics = rooms.metrics;
    this.queue = rooms.queue;
    this.budget = rooms.budget;
    this.discovery = rooms.discovery;
    this.cache = rooms.cache;
    this.attemptLoop = rooms.attemptLoop;
    this.tracer = rooms.tracer;
    this.tenancy = rooms.tenancy;
    this.gate = rooms.gate;
    this.affinity = rooms.affinity;
    this.issued = rooms.issued;
    this.ownRoutes = new OwnRoutes(rooms, this);
    const lim = rooms.config.limits;
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
      changed: () => this.onConnectionsChanged?.(),
    });
  }

  /** set in a router worker: the process group it serves with */
  get group(): RouterGroup | undefined {
    return this.rooms.group;
  }

  set group(group: RouterGroup | undefined) {
    this.rooms.group = group;
  }

  /** A connection refused because limits.maxConnections were open, none of them idle. */
  private readonly connectionDropped = (): void => {
    this.metrics.connectionsDropped.child().value++;
    // a flood of drops logs once a second at most
    const now = Date.now();
    if (now - this.droppedLogged < 1000) return;
    this.droppedLogged = now;
    log.warn(
      { maxConnections: this.config.limits.maxConnections },
      "connection refused: limits.maxConnections client connections are open (switchyard_connections_dropped_total counts them)",
    );
  };

  /** Listening sockets accepting for this router (0 before listen()). */
  get listenSockets(): number {
    return this.listening?.sockets ?? 0;
  }

  /**
   * Listens on host:port, on `limits.listenSockets` sockets where Node can share a port between them
   * (see accept.ts), else on one. Resolves once every socket accepts. `socketGroup`: a router worker
   * binding sockets of its own, one of this many processes on the port; `auto` is the group's, shared out.
   */
  async listen(port: number, host: string, socketGroup?: number): Promise<void> {
    const lim = this.config.limits;
    this.listening = await listenOnSockets(
      this.server,
      port,
      host,
      lim.listenSockets === "auto" ? autoListenSockets(socketGroup ?? 1) : lim.listenSockets,
      backstop(lim.maxConnections),
      this.connectionDropped,
      socketGroup !== undefined,
    );
    if (this.listening.sockets > 1)
      log.debug({ sockets: this.listening.sockets }, "listening on several sockets");
  }

  get config(): RouterConfig {
    return this.rooms.config;
  }

  /** The policy new requests are routed with (the endpoint picker decides with it too). */
  get routingPolicy(): Policy {
    return this.rooms.policy;
  }

  async start(): Promise<void> {
    await this.rooms.start();
  }

  /** Applies a new configuration to new requests; in-flight ones finish under the old one. */
  reconfigure(cfg: RouterConfig): void {
    const now = this.rooms.config;
    if (cfg.host !== now.host || cfg.port !== now.port) {
      log.warn("host/port changes need a restart; keeping the current listener");
    }
    this.rooms.reconfigure(cfg);
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
  async close(drainMs: number = this.config.drainTimeout): Promise<void> {
    this.startDrain();
    // every connection ended: the server's own and those its extra listening sockets accepted
    const closed = Promise.all([
      new Promise<void>((resolve) => this.server.close(() => resolve())),
      this.listening?.close(),
    ]);
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
    await this.rooms.close();
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
    // or this worker holds more than its share of the group's connections (../cluster/conn-balance.ts)
    if (this.draining || this.closeForBalance?.()) res.setHeader("connection", "close");
    // what each path is, and whether it is relayed, is the endpoint table's (../request/endpoints.ts)
    const m = matchEndpoint(path);
    const method = req.method;
    if (m?.endpoint.served === "relay" && (method === "POST" || method === "GET")) {
      if (m.endpoint.methods.includes(method)) return this.rooms.ingress.handle(req, res, path, url, m);
    }
    return this.ownRoutes.serve(req, res, path, m);
  }
}
