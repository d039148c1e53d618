// The least a Node proxy built on node:http and undici can do per request: read the body, one
// undici dispatch, relay status, headers and bytes. No routing, validation, limits, timeouts,
// failover or metrics. bench/router/overhead.ts measures it beside the router and nginx, so the report can
// tell the router's own cost from the cost of the HTTP stack it is built on. Not a product path.
//   node --import tsx bench/router/node-floor-proxy.ts PORT UPSTREAM_PORT
import { createServer } from "node:http";
import { Pool, type Dispatcher } from "undici";

const [port, upstream] = process.argv.slice(2).map(Number);
const pool = new Pool(`http://127.0.0.1:${upstream}`, { connections: 1024, pipelining: 1 });
const SKIP = new Set(["connection", "keep-alive", "transfer-encoding"]);

createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
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
    pool.dispatch(
      {
        path: req.url ?? "/",
        method: "POST",
        headers: ["content-type", "application/json"],
        body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
      },
      handler,
    );
  });
}).listen(port, "127.0.0.1").keepAliveTimeout = 65_000;

process.on("SIGTERM", () => process.exit(0));
