// startCacheServer: the lm:// listener, the tiers behind it, and the optional Prometheus endpoint.
// Used by the CLI, by tests and by `switchyard up`.
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { logger, type Logger } from "../obs/log.js";
import { Connection } from "./connection.js";
import { DiskTier } from "./disk.js";
import { CacheMetrics } from "./metrics.js";
import { TieredStore } from "./store.js";
import { PER_OBJECT_OVERHEAD } from "./memory.js";
import { PER_CHUNK_OVERHEAD } from "./payload.js";

export const DEFAULT_PORT = 65432;
export const DEFAULT_MAX_OBJECT_BYTES = 2 ** 30;
/** LMCache opens one connection per worker: a large fleet stays far below this */
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;
/** lm:// lengths are int32 */
const PROTOCOL_MAX_LENGTH = 2 ** 31 - 1;

export interface CacheServerOptions {
  host?: string;
  /** 0 picks a free port */
  port?: number;
  maxMemoryBytes: number;
  /** largest PUT accepted; default min(1 GiB, memory budget) and never above the budget */
  maxObjectBytes?: number;
  diskDir?: string;
  maxDiskBytes?: number;
  /** Prometheus text at /metrics; 0 picks a free port, undefined serves none */
  metricsPort?: number;
  metricsHost?: string;
  log?: Logger;
  /** read PUT payloads straight into their final Buffers (default true; false is for tests) */
  directReads?: boolean;
  /** connections beyond this are closed at accept (each may hold a PUT receive buffer outside the budget) */
  maxConnections?: number;
  /** a peer that moves no bytes for this long mid-request, or while its replies go unread, is closed */
  stallTimeoutMs?: number;
}

export interface CacheServer {
  port: number;
  metricsPort: number | undefined;
  store: TieredStore;
  metrics: CacheMetrics;
  connections(): number;
  /** Stops accepting, lets replies in flight finish, flushes disk writes. Idempotent. */
  close(): Promise<void>;
}

export async function startCacheServer(opts: CacheServerOptions): Promise<CacheServer> {
  const log = opts.log ?? logger("cache-server");
  if (!(opts.maxMemoryBytes > 0)) throw new RangeError("maxMemoryBytes must be positive");
  const maxObjectBytes = Math.min(
    opts.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES,
    opts.maxMemoryBytes,
    PROTOCOL_MAX_LENGTH,
  );
  const live = new Set<Connection>();
  let disk: DiskTier | undefined;
  // metrics read the store through closures, so they can exist before it does
  const ref: { store?: TieredStore } = {};
  const metrics = new CacheMetrics({
    memoryObjects: () => ref.store?.memory.stats().objects ?? 0,
    memoryUsed: () => ref.store?.memory.usedBytes ?? 0,
    memoryBudget: () => opts.maxMemoryBytes,
    diskObjects: () => disk?.stats().objects ?? 0,
    diskUsed: () => disk?.stats().usedBytes ?? 0,
    diskMax: () => disk?.maxBytes ?? 0,
    connections: () => live.size,
    bufferPool: () => ref.store?.pool.heldBytes ?? 0,
  });
  if (opts.diskDir) {
    if (!(opts.maxDiskBytes && opts.maxDiskBytes > 0)) throw new RangeError("a disk tier needs maxDiskBytes");
    disk = new DiskTier(opts.diskDir, opts.maxDiskBytes, log, () => metrics.evictDisk.inc());
    await disk.open();
  }
  const store = (ref.store = new TieredStore(opts.maxMemoryBytes, disk, metrics, log));
  // an object must fit beside the slice kept for disk writes, or it would be accepted and then dropped
  const ctx = {
    store,
    metrics,
    log,
    maxObjectBytes: Math.min(
      maxObjectBytes,
      store.memory.residentBudget - PER_OBJECT_OVERHEAD - PER_CHUNK_OVERHEAD - 150,
    ),
    directReads: opts.directReads,
    stallTimeoutMs: opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
  };
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  let refusedLoggedAt = -Infinity;

  // paused on connect: Connection may rebuild the socket around its handle to choose its read buffers
  // counted here, not by net.Server's maxConnections: Connection takes the accepted handle over, and the
  // server stops counting the socket it came in
  const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
    if (live.size >= maxConnections) {
      socket.destroy();
      metrics.connectionsRefused.inc();
      // a flood of them must not become a flood of log lines
      if (performance.now() - refusedLoggedAt > 10_000) {
        refusedLoggedAt = performance.now();
        log.warn({ maxConnections }, "connection refused: max connections open");
      }
      return;
    }
    const conn = new Connection(socket, ctx);
    live.add(conn);
    metrics.connectionsTotal.inc();
    log.debug({ peer: conn.peer }, "client connected");
    void conn.done.then(() => {
      live.delete(conn);
      log.debug({ peer: conn.peer }, "client disconnected");
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? DEFAULT_PORT, opts.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let http: HttpServer | undefined;
  let metricsPort: number | undefined;
  if (opts.metricsPort !== undefined) {
    http = createHttpServer((req, res) => {
      if (req.url === "/metrics") {
        metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { "content-type": metrics.registry.contentType });
            res.end(text);
          },
          (err: unknown) => {
            res.writeHead(500).end(String(err));
          },
        );
      } else if (req.url === "/health") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      } else res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    });
    const h = http;
    await new Promise<void>((resolve, reject) => {
      h.once("error", reject);
      h.listen(opts.metricsPort, opts.metricsHost ?? opts.host ?? "0.0.0.0", () => resolve());
    });
    metricsPort = (http.address() as AddressInfo).port;
  }
  log.info(
    {
      port,
      metricsPort,
      maxMemoryBytes: opts.maxMemoryBytes,
      maxObjectBytes: ctx.maxObjectBytes,
      diskDir: opts.diskDir,
      maxDiskBytes: disk?.maxBytes,
    },
    "cache server listening",
  );

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...live].map((c) => c.stop()));
      await closed;
      if (http) {
        const h = http;
        h.closeAllConnections();
        await new Promise<void>((resolve) => h.close(() => resolve()));
      }
      await disk?.flush();
      log.info("cache server stopped");
    })());

  return { port, metricsPort, store, metrics, connections: () => live.size, close };
}
