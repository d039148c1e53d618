// Floors below node:http and undici, measured by bench/router/overhead.ts only. Never a product path: this
// relay understands nothing but Content-Length framing on both sides (no chunked bodies, no Expect,
// no limits, no validation of what it relays), which is exactly what a front door must not be. It
// exists to answer one question with a measurement: how much of the router-overhead budget is left
// once a JavaScript proxy has done the least per request, with no HTTP library at all?
//   bare        read a request, write it to a pooled upstream socket, relay the response bytes
//   min-router  the same, plus the least the router issue asks of every request: parse the JSON body
//               and check `model`, pick the least-loaded engine serving it, strip hop-by-hop headers
//               both ways, add a request id, and record in-flight, TTFT, end-to-end and a request
//               counter in prom-client
//   node --import tsx bench/router/raw-relay-proxy.ts PORT UPSTREAM_PORT bare|min-router
import { connect, createServer, type Socket } from "node:net";
import { Counter, Gauge, Histogram } from "prom-client";

const [port, upstreamPort] = process.argv.slice(2, 4).map(Number) as [number, number];
const minRouter = process.argv[4] === "min-router";
const EMPTY = Buffer.alloc(0);
const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"]);

interface Engine {
  url: string;
  inflight: number;
}
const engines = new Map<string, Engine[]>([["bench/m", [{ url: `127.0.0.1:${upstreamPort}`, inflight: 0 }]]]);
const requests = new Counter({
  name: "r_requests_total",
  help: "-",
  labelNames: ["model", "engine", "status"],
});
const e2e = new Histogram({ name: "r_e2e_seconds", help: "-", labelNames: ["model", "engine"] });
const ttft = new Histogram({ name: "r_ttft_seconds", help: "-", labelNames: ["model", "engine"] });
const inflight = new Gauge({ name: "r_in_flight", help: "-", labelNames: ["engine"] });
let seq = 0;

/** Header block split into lower-cased names and values, hop-by-hop removed; content-length apart. */
function headers(head: string): { lines: string[]; names: string[]; values: string[]; length: number } {
  const lines = head.split("\r\n");
  const names: string[] = [];
  const values: string[] = [];
  let length = 0;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    const k = l.indexOf(":");
    const n = l.slice(0, k).toLowerCase();
    const v = l.slice(k + 1).trim();
    if (n === "content-length") length = Number(v);
    else if (n !== "host" && !HOP.has(n)) {
      names.push(n);
      values.push(v);
    }
  }
  return { lines, names, values, length };
}

function contentLength(head: string): number {
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return m ? Number(m[1]) : 0;
}

class EngineSocket {
  readonly sock: Socket;
  buf: Buffer | null = null;
  need = -1;
  headEnd = 0;
  outHead = "";
  client: Client | null = null;
  engine: Engine | null = null;
  started = 0;
  id = "";
  constructor() {
    this.sock = connect(upstreamPort, "127.0.0.1");
    this.sock.setNoDelay(true);
    this.sock.on("data", (d: Buffer) => this.onData(d));
    this.sock.on("error", () => this.client?.sock.destroy());
  }
  onData(d: Buffer): void {
    this.buf = this.buf ? Buffer.concat([this.buf, d]) : d;
    if (this.need < 0) {
      const he = this.buf.indexOf("\r\n\r\n");
      if (he < 0) return;
      const head = this.buf.toString("latin1", 0, he);
      this.headEnd = he + 4;
      if (minRouter) {
        const h = headers(head);
        let out = `HTTP/1.1 ${h.lines[0]!.slice(9)}\r\n`;
        for (let i = 0; i < h.names.length; i++) out += `${h.names[i]}: ${h.values[i]}\r\n`;
        this.outHead = `${out}content-length: ${h.length}\r\nx-request-id: ${this.id}\r\n\r\n`;
        this.need = this.headEnd + h.length;
        ttft.labels("bench/m", this.engine!.url).observe((performance.now() - this.started) / 1000);
      } else this.need = this.headEnd + contentLength(head);
    }
    if (this.buf.length < this.need) return;
    const client = this.client!;
    if (minRouter) {
      client.sock.write(this.outHead + this.buf.toString("latin1", this.headEnd, this.need));
      const engine = this.engine!;
      engine.inflight--;
      inflight.labels(engine.url).dec();
      e2e.labels("bench/m", engine.url).observe((performance.now() - this.started) / 1000);
      requests.labels("bench/m", engine.url, "200").inc();
    } else client.sock.write(this.buf.subarray(0, this.need));
    this.buf = null;
    this.need = -1;
    this.client = null;
    idle.push(this);
    client.busy = false;
    if (client.buf) client.onData(EMPTY);
  }
}
const idle: EngineSocket[] = [];

class Client {
  buf: Buffer | null = null;
  busy = false;
  constructor(readonly sock: Socket) {
    sock.setNoDelay(true);
    sock.on("data", (d: Buffer) => this.onData(d));
    sock.on("error", () => undefined);
  }
  onData(d: Buffer): void {
    const buf = d.length === 0 ? this.buf! : this.buf ? Buffer.concat([this.buf, d]) : d;
    this.buf = buf;
    if (this.busy) return;
    const he = buf.indexOf("\r\n\r\n");
    if (he < 0) return;
    const head = buf.toString("latin1", 0, he);
    const h = minRouter ? headers(head) : undefined;
    const end = he + 4 + (h ? h.length : contentLength(head));
    if (buf.length < end) return;
    this.buf = buf.length > end ? buf.subarray(end) : null;
    if (head.startsWith("GET ")) {
      // readiness for the harness, answered here: the upstream's /health is chunked, which this relay
      // does not frame
      this.sock.write("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
      if (this.buf) this.onData(EMPTY);
      return;
    }
    const up = idle.pop() ?? new EngineSocket();
    up.client = this;
    this.busy = true;
    if (!h) return void up.sock.write(buf.subarray(0, end));
    up.started = performance.now();
    const body = buf.subarray(he + 4, end);
    const parsed = JSON.parse(body.toString()) as unknown;
    if (
      typeof parsed !== "object" ||
      parsed === null ||
      typeof (parsed as { model?: unknown }).model !== "string"
    )
      throw new Error("the bench client sends a model");
    const list = engines.get((parsed as { model: string }).model)!;
    let engine = list[0]!;
    for (const e of list) if (e.inflight < engine.inflight) engine = e;
    engine.inflight++;
    inflight.labels(engine.url).inc();
    up.engine = engine;
    up.id = `sy-${(++seq).toString(36)}`;
    let out = `${h.lines[0]}\r\nhost: ${engine.url}\r\n`;
    for (let i = 0; i < h.names.length; i++) out += `${h.names[i]}: ${h.values[i]}\r\n`;
    up.sock.write(`${out}x-request-id: ${up.id}\r\ncontent-length: ${body.length}\r\n\r\n`);
    up.sock.write(body);
  }
}

createServer((sock) => void new Client(sock)).listen(port, "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
