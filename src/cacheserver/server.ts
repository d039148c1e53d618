// startCacheServer: the lm:// listeners, the tiers behind them, and the optional Prometheus endpoint.
// Used by the CLI, by tests and by `switchyard up`. Every listener shares one store, one budget and one
// connection cap; what differs is the namespace its clients' keys live in (namespace.ts). Inside those,
// each namespace has a cap of its own on memory (a share of the budget) and on open connections, so
// one namespace's clients cannot evict or crowd out every other's. An optional RESP listener (resp.ts)
// serves the same store to Redis clients, LMCache's RESP L2 adapter among them. With `kvEvents` the
// server announces the LMCache chunks it holds and loses as KV events over ZMQ (kv-events.ts).
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { logger, type Logger } from "../obs/log.js";
import { connectableEndpoint } from "../kvevents/endpoint.js";
import { ZmqEventPublisher } from "../kvevents/publisher.js";
import type { CurveKeys } from "../kvevents/curve.js";
import { Connection } from "./connection.js";
import { ChunkAnnouncer, DEFAULT_EVENT_CHUNK_TOKENS } from "./kv-events.js";
import { DiskTier } from "./disk.js";
import { RespConnection } from "./resp.js";
import { CacheMetrics } from "./metrics.js";
import {
  DEFAULT_NAMESPACE,
  NamespaceMap,
  checkNamespace,
  namespaceLabel,
  type CidrRule,
  type ListenSpec,
} from "./namespace.js";
import { TieredStore } from "./store.js";
import { CACHE_SERVER_PORT } from "../config/vllm-defaults.js";

export const DEFAULT_PORT = CACHE_SERVER_PORT;
export const DEFAULT_MAX_OBJECT_BYTES = 2 ** 30;
/** LMCache opens one connection per worker: a large fleet stays far below this */
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;
/** 1 GiB (the default max object) at under 10 MB/s: far slower than any LMCache link */
export const DEFAULT_PUT_TIMEOUT_MS = 120_000;
/** lm:// lengths are int32 */
const PROTOCOL_MAX_LENGTH = 2 ** 31 - 1;

export interface CacheServerOptions {
  host?: string;
  /** 0 picks a free port */
  port?: number;
  /**
   * lm:// listeners, each placing its clients in a namespace (DEFAULT_NAMESPACE: the unnamed one);
   * when given, host/port open no listener of their own. Ports may be 0.
   */
  listen?: Partial<ListenSpec>[];
  /** source address → namespace, first match wins, before the listener's namespace */
  namespaceByAddress?: CidrRule[];
  maxMemoryBytes: number;
  /** largest PUT accepted; default min(1 GiB, memory budget) and never above the budget */
  maxObjectBytes?: number;
  diskDir?: string;
  maxDiskBytes?: number;
  /** a RESP (Redis protocol) listener on the same store, its clients in the default namespace unless
   * namespaceByAddress places them; 0 picks a free port, undefined serves none */
  respPort?: number;
  /** Prometheus text at /metrics; 0 picks a free port, undefined serves none */
  metricsPort?: number;
  metricsHost?: string;
  log?: Logger;
  /** read PUT payloads straight into their final Buffers (default true; false is for tests) */
  directReads?: boolean;
  /** connections beyond this are closed at accept (each may hold a PUT receive buffer outside the budget) */
  maxConnections?: number;
  /**
   * the share of the memory budget one namespace may hold (0 < share ≤ 1); default 1/2 when the
   * server has more than one namespace (listeners, address rules), else 1
   */
  namespaceMemoryShare?: number;
  /** connections one namespace may hold open; default half of maxConnections (rounded up) with more than one namespace */
  namespaceMaxConnections?: number;
  /** a peer that moves no bytes for this long mid-request, or while its replies go unread, is closed */
  stallTimeoutMs?: number;
  /** a PUT whose payload is not all in this long after its header is closed (slow_payload) */
  putTimeoutMs?: number;
  /** announce the LMCache chunks held as KV events (kv-events.ts); undefined: none */
  kvEvents?: CacheKvEventsOptions;
}

export interface CacheKvEventsOptions {
  /** the ZMQ PUB port, bound on `host` (0 picks a free one) */
  port: number;
  /** the replay ROUTER port (0 picks a free one; undefined: no replay) */
  replayPort?: number;
  /** tokens per LMCache chunk (block_size in the events); default 256, LMCache's */
  chunkTokens?: number;
  /** the namespace whose chunks are announced; default the unnamed one */
  namespace?: string;
  /** shard keys followed at most (the oldest forgotten beyond, announced removed) */
  maxKeys?: number;
  /** batches kept for replay (default 10,000) */
  bufferSteps?: number;
  /**
   * CURVE keys of the events' PUB and replay sockets (their secret key, and the subscribers admitted:
   * clients.keys); null or undefined: plain
   */
  curve?: CurveKeys | null;
}

export interface CacheServer {
  /** the first listener's port */
  port: number;
  /** every listener's port, in the order given */
  ports: number[];
  metricsPort: number | undefined;
  respPort: number | undefined;
  store: TieredStore;
  metrics: CacheMetrics;
  /** where the KV events are published (connectable), when asked for */
  kvEventsEndpoint: string | undefined;
  kvEventsReplayEndpoint: string | undefined;
  /** the KV events' state (tests, metrics), when asked for */
  kvEvents: ChunkAnnouncer | undefined;
  /**
   * settles once what the disk tier kept from an earlier run has been announced (at once without a
   * disk tier or KV events); the server answers requests meanwhile
   */
  diskAnnounced: Promise<void>;
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
  const live = new Set<Connection | RespConnection>();
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
    memoryReserved: () => ref.store?.memory.reservedBytes ?? 0,
  });
  const listens: ListenSpec[] = (opts.listen ?? [{}]).map((l) => ({
    host: l.host ?? opts.host ?? "0.0.0.0",
    port: l.port ?? opts.port ?? DEFAULT_PORT,
    namespace:
      l.namespace === undefined || l.namespace === DEFAULT_NAMESPACE
        ? DEFAULT_NAMESPACE
        : checkNamespace(l.namespace, `listener ${l.host ?? ""}:${l.port ?? ""}`),
  }));
  if (listens.length === 0) throw new RangeError("at least one listener is needed");
  const byAddress = new NamespaceMap(opts.namespaceByAddress ?? []);
  // the KV events' settings, checked before anything is opened
  const eventNamespace =
    opts.kvEvents?.namespace === undefined || opts.kvEvents.namespace === DEFAULT_NAMESPACE
      ? DEFAULT_NAMESPACE
      : checkNamespace(opts.kvEvents.namespace, "KV events");
  const eventChunkTokens = opts.kvEvents?.chunkTokens ?? DEFAULT_EVENT_CHUNK_TOKENS;
  if (!(Number.isInteger(eventChunkTokens) && eventChunkTokens > 0))
    throw new RangeError("KV events: chunkTokens must be a positive integer");
  if (opts.diskDir) {
    if (!(opts.maxDiskBytes && opts.maxDiskBytes > 0)) throw new RangeError("a disk tier needs maxDiskBytes");
    disk = new DiskTier(opts.diskDir, opts.maxDiskBytes, log, () => metrics.evictDisk.inc());
    await disk.open();
  }
  const store = (ref.store = new TieredStore(opts.maxMemoryBytes, disk, metrics, log));
  // one namespace's clients must not take the whole budget or every connection from the others
  const namespaces = new Set([
    ...listens.map((l) => l.namespace),
    ...(opts.namespaceByAddress ?? []).map((r) => r.namespace),
  ]);
  const shared = namespaces.size > 1;
  const share = opts.namespaceMemoryShare ?? (shared ? 0.5 : 1);
  if (!(share > 0 && share <= 1)) throw new RangeError("namespaceMemoryShare must be in (0, 1]");
  const namespaceCap = Math.floor(store.memory.residentBudget * share);
  store.memory.namespaceCap = () => namespaceCap;
  // an object's reservation must fit beside the slice kept for disk writes, or it would be refused
  // (or accepted and then dropped) every time
  let refusedPutLoggedAt = -Infinity;
  const ctx = {
    store,
    metrics,
    log,
    maxObjectBytes: Math.min(
      maxObjectBytes,
      TieredStore.largestObject(namespaceCap, opts.directReads !== false),
    ),
    directReads: opts.directReads,
    stallTimeoutMs: opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
    putTimeoutMs: opts.putTimeoutMs ?? DEFAULT_PUT_TIMEOUT_MS,
    onPutRefused: (peer: string, namespace: string, bytes: number) => {
      // a client declaring PUTs in a loop must not become a flood of log lines
      if (performance.now() - refusedPutLoggedAt < 10_000) return;
      refusedPutLoggedAt = performance.now();
      log.warn(
        { peer, namespace: namespaceLabel(namespace), bytes, reservedBytes: store.memory.reservedBytes },
        "PUT refused: PUTs in progress hold the memory budget; its payload is read and dropped",
      );
    },
  };
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const namespaceMaxConnections = Math.min(
    maxConnections,
    opts.namespaceMaxConnections ?? (shared ? Math.ceil(maxConnections / 2) : maxConnections),
  );
  if (!(namespaceMaxConnections >= 1)) throw new RangeError("namespaceMaxConnections must be at least 1");
  /** open connections per namespace (configured namespaces only) */
  const perNamespace = new Map<string, number>();
  let refusedLoggedAt = -Infinity;
  const refuse = (socket: Socket, why: Record<string, unknown>, message: string) => {
    socket.destroy();
    metrics.connectionsRefused.inc();
    // a flood of them must not become a flood of log lines
    if (performance.now() - refusedLoggedAt > 10_000) {
      refusedLoggedAt = performance.now();
      log.warn(why, message);
    }
  };

  // paused on connect: Connection may rebuild the socket around its handle to choose its read buffers
  // counted here, not by net.Server's maxConnections: Connection takes the accepted handle over, and the
  // server stops counting the socket it came in
  const accept = (socket: Socket, listenerNamespace: string, resp = false) => {
    if (live.size >= maxConnections)
      return refuse(socket, { maxConnections }, "connection refused: max connections open");
    // read before Connection may rebuild the socket around its handle
    const namespace = byAddress.lookup(socket.remoteAddress) ?? listenerNamespace;
    const open = perNamespace.get(namespace) ?? 0;
    if (open >= namespaceMaxConnections)
      return refuse(
        socket,
        { namespace: namespaceLabel(namespace), namespaceMaxConnections },
        "connection refused: the namespace has its most connections open",
      );
    perNamespace.set(namespace, open + 1);
    const conn = resp ? new RespConnection(socket, ctx, namespace) : new Connection(socket, ctx, namespace);
    live.add(conn);
    metrics.connectionsTotal.inc();
    metrics.namespaceConnection(namespaceLabel(namespace));
    log.debug({ peer: conn.peer, namespace: namespaceLabel(namespace) }, "client connected");
    void conn.done.then(() => {
      live.delete(conn);
      const left = (perNamespace.get(namespace) ?? 1) - 1;
      if (left > 0) perNamespace.set(namespace, left);
      else perNamespace.delete(namespace);
      log.debug({ peer: conn.peer }, "client disconnected");
    });
  };
  const servers: Server[] = [];
  const closeListeners = () =>
    Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  try {
    for (const l of listens) {
      const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) =>
        accept(socket, l.namespace),
      );
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(l.port, l.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      servers.push(server);
    }
    if (opts.respPort !== undefined) {
      const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) =>
        accept(socket, DEFAULT_NAMESPACE, true),
      );
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(opts.respPort, opts.host ?? "0.0.0.0", () => {
          server.off("error", reject);
          resolve();
        });
      });
      servers.push(server);
    }
  } catch (err) {
    await closeListeners();
    await disk?.flush();
    throw err;
  }
  let publisher: ZmqEventPublisher | undefined;
  let announcer: ChunkAnnouncer | undefined;
  let diskAnnounced = Promise.resolve();
  if (opts.kvEvents) {
    const ev = opts.kvEvents;
    try {
      // a wildcard endpoint bound on the server's own address (wildcardOnHost): --host 127.0.0.1 keeps
      // the events on loopback too
      publisher = await ZmqEventPublisher.create(
        {
          enabled: true,
          publisher: "zmq",
          endpoint: `tcp://*:${ev.port}`,
          replayEndpoint: ev.replayPort !== undefined ? `tcp://*:${ev.replayPort}` : null,
          topic: "",
          bufferSteps: ev.bufferSteps ?? 10_000,
          hwm: 100_000,
          maxQueueSize: 100_000,
        },
        { bindHost: opts.host ?? "0.0.0.0", curve: ev.curve ?? null },
      );
    } catch (err) {
      await closeListeners();
      await disk?.flush();
      throw err;
    }
    const a = (announcer = new ChunkAnnouncer({
      publisher,
      held: (key) => store.has(key),
      chunkTokens: eventChunkTokens,
      namespace: eventNamespace,
      maxKeys: ev.maxKeys,
    }));
    store.onKey = (key) => a.touched(key);
    // what the disk tier kept from an earlier run is held now: announced a slice per turn of the event
    // loop while the listeners already answer
    if (disk)
      diskAnnounced = a
        .announceAll(disk.keys())
        .catch((err: unknown) => log.error({ err: String(err) }, "announcing the disk tier's chunks failed"));
  }
  metrics.kvEvents(() => announcer);
  const ports = servers.slice(0, listens.length).map((srv) => (srv.address() as AddressInfo).port);
  const port = ports[0]!;
  const respPort =
    opts.respPort !== undefined ? (servers[listens.length]!.address() as AddressInfo).port : undefined;

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
      listeners: listens.map((l, i) => `${l.host}:${ports[i]}=${namespaceLabel(l.namespace)}`),
      namespaceRules: opts.namespaceByAddress?.length ?? 0,
      metricsPort,
      respPort,
      maxMemoryBytes: opts.maxMemoryBytes,
      maxObjectBytes: ctx.maxObjectBytes,
      diskDir: opts.diskDir,
      maxDiskBytes: disk?.maxBytes,
      kvEvents: publisher?.endpoint,
      kvEventsReplay: publisher?.replayEndpoint ?? undefined,
    },
    "cache server listening",
  );

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const closed = closeListeners();
      await Promise.all([...live].map((c) => c.stop()));
      await closed;
      if (http) {
        const h = http;
        h.closeAllConnections();
        await new Promise<void>((resolve) => h.close(() => resolve()));
      }
      await disk?.flush();
      announcer?.close();
      await publisher?.close();
      log.info("cache server stopped");
    })());

  return {
    port,
    ports,
    metricsPort,
    respPort,
    store,
    metrics,
    kvEventsEndpoint: publisher ? connectableEndpoint(publisher.endpoint) : undefined,
    kvEventsReplayEndpoint: publisher?.replayEndpoint
      ? connectableEndpoint(publisher.replayEndpoint)
      : undefined,
    kvEvents: announcer,
    diskAnnounced,
    connections: () => live.size,
    close,
  };
}
