// A local stand-in for the Kubernetes API server's pod list/watch: real PodList JSON with a
// resourceVersion and `continue` paging, and a chunked watch stream of newline-delimited
// ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events. Test controls mutate pods (with or without an
// event, to play history lost during a reconnect), drop watch connections, refuse watches for a
// while, and expire the next watch with a 410 Status, as etcd compaction does.
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Pod } from "../../src/discovery/kubernetes.js";

export interface FakePodInit {
  name: string;
  ip: string;
  port?: number;
  ready?: boolean;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface FakeApiServer {
  url: string;
  namespace: string;
  token: string;
  /** requests seen, by kind */
  seen: { lists: number; watches: number; unauthorized: number };
  /** watch streams open now */
  openWatches(): number;
  add(p: FakePodInit, opts?: { silent?: boolean }): void;
  setReady(name: string, ready: boolean): void;
  terminate(name: string): void;
  delete(name: string, opts?: { silent?: boolean }): void;
  /** cuts every open watch connection */
  dropWatches(): void;
  /** answers watch requests with 503 while true */
  refuseWatches: boolean;
  /** the next watch gets `ERROR 410 Expired` (as after etcd compaction) instead of events */
  expireNextWatch(): void;
  close(): Promise<void>;
}

const BASE_LABELS = { "switchyard.dev/engine": "true", "app.kubernetes.io/instance": "test" };

export async function startFakeApiServer(namespace = "llm", token = "t0ken"): Promise<FakeApiServer> {
  const pods = new Map<string, Pod>();
  let rv = 1000;
  let uid = 0;
  const watchers = new Set<{ res: ServerResponse; selector: Map<string, string> }>();
  const sockets = new Set<Socket>();
  let expireNext = false;

  const selectorOf = (s: string | null): Map<string, string> =>
    new Map(
      (s ?? "")
        .split(",")
        .filter(Boolean)
        .map((kv) => kv.split("=") as [string, string]),
    );
  const matches = (p: Pod, sel: Map<string, string>) =>
    [...sel].every(([k, v]) => p.metadata?.labels?.[k] === v);

  const emit = (type: string, p: Pod) => {
    for (const w of watchers) {
      if (matches(p, w.selector)) w.res.write(JSON.stringify({ type, object: p }) + "\n");
    }
  };
  const bump = (p: Pod) => {
    p.metadata!.resourceVersion = String(++rv);
    return p;
  };

  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    if (req.headers.authorization !== `Bearer ${token}`) {
      api.seen.unauthorized++;
      res.writeHead(401, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ kind: "Status", code: 401, message: "Unauthorized" }));
    }
    if (u.pathname !== `/api/v1/namespaces/${namespace}/pods`) {
      res.writeHead(404, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ kind: "Status", code: 404, message: "not found" }));
    }
    const sel = selectorOf(u.searchParams.get("labelSelector"));
    if (u.searchParams.get("watch") === "true") {
      api.seen.watches++;
      if (api.refuseWatches) {
        res.writeHead(503, { "content-type": "application/json" });
        return void res.end(JSON.stringify({ kind: "Status", code: 503, message: "unavailable" }));
      }
      res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
      if (expireNext) {
        expireNext = false;
        res.end(
          JSON.stringify({
            type: "ERROR",
            object: {
              kind: "Status",
              apiVersion: "v1",
              status: "Failure",
              message: "too old resource version",
              reason: "Expired",
              code: 410,
            },
          }) + "\n",
        );
        return;
      }
      // a bookmark first, as the API server sends with allowWatchBookmarks
      res.write(
        JSON.stringify({
          type: "BOOKMARK",
          object: { kind: "Pod", metadata: { resourceVersion: String(rv) } },
        }) + "\n",
      );
      const w = { res, selector: sel };
      watchers.add(w);
      res.on("close", () => watchers.delete(w));
      return;
    }
    api.seen.lists++;
    const all = [...pods.values()].filter((p) => matches(p, sel));
    const limit = Number(u.searchParams.get("limit") ?? 0) || all.length;
    const from = Number(u.searchParams.get("continue") ?? 0);
    const page = all.slice(from, from + limit);
    const next = from + limit < all.length ? String(from + limit) : undefined;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        kind: "PodList",
        apiVersion: "v1",
        metadata: { resourceVersion: String(rv), ...(next ? { continue: next } : {}) },
        items: page,
      }),
    );
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;

  const setCondition = (p: Pod, ready: boolean) => {
    p.status!.conditions = [
      { type: "PodScheduled", status: "True" },
      { type: "Ready", status: ready ? "True" : "False" },
    ];
  };

  const api: FakeApiServer = {
    url: `http://127.0.0.1:${port}`,
    namespace,
    token,
    seen: { lists: 0, watches: 0, unauthorized: 0 },
    refuseWatches: false,
    openWatches: () => watchers.size,
    add(init, opts = {}) {
      const p: Pod = {
        metadata: {
          name: init.name,
          namespace,
          uid: `uid-${++uid}`,
          labels: { ...BASE_LABELS, ...init.labels },
          annotations: {
            ...(init.port ? { "switchyard.dev/port": String(init.port) } : {}),
            ...init.annotations,
          },
        },
        spec: { containers: [{ ports: [{ name: "http", containerPort: 8000 }] }] },
        status: { phase: "Running", podIP: init.ip },
      };
      setCondition(p, init.ready ?? true);
      pods.set(init.name, bump(p));
      if (!opts.silent) emit("ADDED", p);
    },
    setReady(name, ready) {
      const p = pods.get(name)!;
      setCondition(p, ready);
      emit("MODIFIED", bump(p));
    },
    terminate(name) {
      const p = pods.get(name)!;
      p.metadata!.deletionTimestamp = new Date().toISOString();
      emit("MODIFIED", bump(p));
    },
    delete(name, opts = {}) {
      const p = pods.get(name)!;
      pods.delete(name);
      bump(p);
      if (!opts.silent) emit("DELETED", p);
    },
    dropWatches() {
      for (const w of watchers) w.res.socket?.destroy();
      watchers.clear();
    },
    expireNextWatch() {
      expireNext = true;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return api;
}
