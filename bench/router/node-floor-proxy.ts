// The least a Node proxy built on node:http and undici can do per request: read the body, one
// undici dispatch, relay status, headers and bytes. No routing, validation, limits, timeouts,
// failover or metrics. bench/router/overhead.ts measures it beside the router and nginx, so the report can
// tell the router's own cost from the cost of the HTTP stack it is built on. Not a product path.
// Each process listens on SOCKETS sockets of its own in the port's SO_REUSEPORT group, as the router
// does on an explicit port. With PROCESSES above 1 it runs as the router's workers do (node:cluster,
// upstreams taken in turn), so bench/router/vs-peers.ts can show what any Node process group pays
// beside a work-stealing router, apart from what the router adds; a worker that exits stops the group.
// The workers inherit this process's Node flags: vs-peers starts it with the router workers' own
// (their V8 pool) and passes the router's share of sockets, so the router's module graph is not
// loaded here.
// WORK_US above 0 spends that many microseconds on the event loop per request before dispatching it (a
// busy wait on the monotonic clock): a stand-in for a router's own work, so vs-peers can show how much
// of it a process group affords before its tail falls behind a peer's (`node-floor+N` targets).
//   node --import tsx bench/router/node-floor-proxy.ts PORT UPSTREAM_PORT[,UPSTREAM_PORT...] [PROCESSES [SOCKETS [WORK_US]]]
import cluster from "node:cluster";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { Pool, type Dispatcher } from "undici";

const [portArg, upstreamArg, processesArg, socketsArg, workArg] = process.argv.slice(2);
const port = Number(portArg);
const upstreams = (upstreamArg ?? "").split(",").map(Number);
const processes = Math.max(1, Number(processesArg ?? 1));
const sockets = Math.max(1, Number(socketsArg ?? 1));
const workMs = Math.max(0, Number(workArg ?? 0)) / 1000;
const SKIP = new Set(["connection", "keep-alive", "transfer-encoding"]);

if (processes > 1 && cluster.isPrimary) {
  for (let i = 0; i < processes; i++) cluster.fork();
  const stop = (code: number): never => {
    cluster.removeAllListeners("exit");
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    process.exit(code);
  };
  // a worker that could not listen, or died, would leave fewer processes measured than named
  cluster.on("exit", (_w, code) => {
    console.error(`node-floor-proxy: a worker exited (code ${code}): stopping`);
    stop(1);
  });
  process.on("SIGTERM", () => stop(0));
} else {
  serve();
}

function serve(): void {
  const pools = upstreams.map((u) => new Pool(`http://127.0.0.1:${u}`, { connections: 1024, pipelining: 1 }));
  let turn = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (workMs > 0) {
        const until = performance.now() + workMs;
        while (performance.now() < until);
      }
      const handler: Dispatcher.DispatchHandler = {
        onConnect() {},
        onHeaders(status, raw) {
          const h: string[] = [];
          for (let i = 0; i + 1 < raw.length; i += 2) {
            const name = raw[i]!.toString("latin1");
            if (!SKIP.has(name.toLowerCase())) h.push(name, raw[i + 1]!.toString("latin1"));
          }
          res.writeHead(status, h);
          return true;
        },
        onData(chunk) {
          res.write(chunk);
          return true;
        },
        onComplete() {
          res.end();
        },
        onError(err) {
          res.destroy(err);
        },
      };
      pools[turn++ % pools.length]!.dispatch(
        {
          path: req.url ?? "/",
          method: "POST",
          headers: ["content-type", "application/json"],
          body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
        },
        handler,
      );
    });
  });
  server.keepAliveTimeout = 65_000;
  // the router listens on several SO_REUSEPORT sockets on an explicit port, with one process or many
  if (processes === 1 && sockets === 1) {
    server.listen(port, "127.0.0.1");
  } else {
    const opts = { port, host: "127.0.0.1", reusePort: true };
    server.listen(opts);
    for (let i = 1; i < sockets; i++) createNetServer((s) => server.emit("connection", s)).listen(opts);
  }
  process.on("SIGTERM", () => process.exit(0));
}
