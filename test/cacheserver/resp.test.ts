// The cache server's RESP listener: a real redis-cli against it, the exact byte sequences LMCache's
// native RESP connector sends and reads, pipelining and split reads, the bounds on what a peer may
// send, and the shared store, budget and metrics behind lm:// and RESP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { connect, type Socket } from "node:net";
import { promisify } from "node:util";
import { freePorts, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { startCacheServer, type CacheServer } from "../../src/cacheserver/server.js";
import { missingTool } from "../deploy/tools.js";
import { RawConn } from "./raw.js";

const run = promisify(execFile);

function redisCliSkip(): string | false {
  if (spawnSync("redis-cli", ["--version"], { stdio: "ignore" }).status === 0) return false;
  return missingTool("redis-cli not installed");
}

/** A socket and a reader of whole RESP replies, written from the protocol description. */
class Resp {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  readonly closedP: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on("error", () => {});
    this.closedP = new Promise((resolve) =>
      socket.on("close", () => {
        this.closed = true;
        for (const w of this.waiters.splice(0)) w();
        resolve();
      }),
    );
  }

  static open(port: number): Promise<Resp> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port }, () => resolve(new Resp(s)));
      s.once("error", reject);
    });
  }

  send(...args: (string | Buffer)[]): void {
    this.socket.write(encode(args));
  }

  /** The raw bytes of everything received so far, once at least `n` are in. */
  async bytes(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`closed with ${this.buf.length} of ${n} bytes`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** One reply: strings for simple strings and errors ("-ERR ..."), numbers, Buffers, null, arrays. */
  async reply(): Promise<unknown> {
    for (;;) {
      const parsed = parse(this.buf, 0);
      if (parsed) {
        this.buf = this.buf.subarray(parsed.end);
        return parsed.value;
      }
      if (this.closed) throw new Error("closed");
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  async call(...args: (string | Buffer)[]): Promise<unknown> {
    this.send(...args);
    return this.reply();
  }

  close(): Promise<void> {
    this.socket.end();
    return this.closedP;
  }
}

function encode(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(a);
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

function parse(b: Buffer, at: number): { value: unknown; end: number } | undefined {
  const nl = b.indexOf("\r\n", at);
  if (nl < 0) return undefined;
  const line = b.toString("latin1", at + 1, nl);
  switch (b[at]) {
    case 0x2b: // +
      return { value: line, end: nl + 2 };
    case 0x2d: // -
      return { value: `-${line}`, end: nl + 2 };
    case 0x3a: // :
      return { value: Number(line), end: nl + 2 };
    case 0x24: {
      const n = Number(line);
      if (n < 0) return { value: null, end: nl + 2 };
      if (b.length < nl + 2 + n + 2) return undefined;
      return { value: Buffer.from(b.subarray(nl + 2, nl + 2 + n)), end: nl + 2 + n + 2 };
    }
    case 0x2a: {
      const n = Number(line);
      const out: unknown[] = [];
      let end = nl + 2;
      for (let i = 0; i < n; i++) {
        const p = parse(b, end);
        if (!p) return undefined;
        out.push(p.value);
        end = p.end;
      }
      return { value: out, end };
    }
    default:
      throw new Error(`not a RESP reply: ${b.toString("latin1", at, at + 20)}`);
  }
}

async function metric(srv: CacheServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await srv.metrics.registry.getSingleMetric(name)!.get();
  const v = m.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

function start(extra: Partial<Parameters<typeof startCacheServer>[0]> = {}): Promise<CacheServer> {
  return startCacheServer({ host: "127.0.0.1", port: 0, respPort: 0, maxMemoryBytes: 2 ** 24, ...extra });
}

test(
  "redis-cli stores, reads, counts and deletes keys on the RESP port, binary values byte for byte",
  {
    skip: redisCliSkip(),
  },
  async () => {
    const srv = await start();
    try {
      const cli = (args: string[], input?: Buffer) =>
        new Promise<Buffer>((resolve, reject) => {
          const child = execFile(
            "redis-cli",
            ["-h", "127.0.0.1", "-p", String(srv.respPort), ...args],
            { encoding: "buffer", maxBuffer: 2 ** 24 },
            (err, stdout) => (err ? reject(err) : resolve(stdout)),
          );
          child.stdin!.end(input);
        });
      const text = async (...args: string[]) => (await cli(args)).toString().trim();
      assert.equal(await text("PING"), "PONG");
      assert.equal(await text("SET", "greeting", "hello world"), "OK");
      assert.equal(await text("GET", "greeting"), "hello world");
      assert.equal(await text("EXISTS", "greeting", "nope", "greeting"), "2");
      assert.equal(await text("MSET", "a", "1", "b", "2"), "OK");
      assert.equal(await text("MGET", "a", "missing", "b"), "1\n\n2");
      // a value of every byte, 3 MiB, through stdin (-x: the last argument) and back through stdout
      const value = Buffer.alloc(3 * 2 ** 20);
      for (let i = 0; i < value.length; i++) value[i] = (i * 31 + (i >> 11)) & 0xff;
      assert.equal((await cli(["-x", "SET", "blob"], value)).toString().trim(), "OK");
      const back = await cli(["GET", "blob"]);
      // redis-cli prints raw bytes when stdout is not a terminal, with a newline after
      assert.equal(back.length, value.length + 1);
      assert.ok(back.subarray(0, value.length).equals(value));
      assert.equal(await text("DEL", "greeting", "a", "nope"), "2");
      assert.equal(await text("EXISTS", "greeting"), "0");
      assert.match(await text("FLUSHALL"), /unknown command 'FLUSHALL'/);
      // the same object over lm://: RESP and lm:// share one store
      const lm = await RawConn.open(srv.port);
      assert.ok((await lm.get("blob"))!.equals(value));
      await lm.close();
      assert.equal(await metric(srv, "switchyard_cache_bytes_in_total"), 11 + 2 + 3 * 2 ** 20);
      assert.equal(await metric(srv, "switchyard_cache_requests_total", { command: "delete" }), 3);
    } finally {
      await srv.close();
    }
  },
);

test("answers LMCache's RESP connector's exact byte sequences with the exact bytes it reads back", async () => {
  const srv = await start();
  try {
    const c = await Resp.open(srv.respPort!);
    const key = "Qwen/Qwen3-0.6B@00000000@0@" + "ab".repeat(32);
    const chunk = Buffer.alloc(65536, 0x5a);
    // SET: one writev of prefix, key, size header, payload, CRLF; it reads exactly "+OK\r\n"
    c.socket.write(
      Buffer.concat([
        Buffer.from(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${chunk.length}\r\n`),
        chunk,
        Buffer.from("\r\n"),
      ]),
    );
    assert.equal((await c.bytes(5)).toString(), "+OK\r\n");
    // EXISTS: exactly ":1\r\n" or ":0\r\n"
    c.socket.write(`*2\r\n$6\r\nEXISTS\r\n$${key.length}\r\n${key}\r\n`);
    assert.equal((await c.bytes(4)).toString(), ":1\r\n");
    c.socket.write(`*2\r\n$6\r\nEXISTS\r\n$3\r\nabc\r\n`);
    assert.equal((await c.bytes(4)).toString(), ":0\r\n");
    // GET: "$<chunk size>\r\n", the payload, then CRLF
    c.socket.write(`*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`);
    const head = `$${chunk.length}\r\n`;
    assert.equal((await c.bytes(head.length)).toString(), head);
    assert.ok((await c.bytes(chunk.length)).equals(chunk));
    assert.equal((await c.bytes(2)).toString(), "\r\n");
    // a miss is RESP's nil
    c.socket.write(`*2\r\n$3\r\nGET\r\n$3\r\nabc\r\n`);
    assert.equal((await c.bytes(5)).toString(), "$-1\r\n");
    // DEL: ":1\r\n" then ":0\r\n"
    c.socket.write(`*2\r\n$3\r\nDEL\r\n$${key.length}\r\n${key}\r\n`);
    assert.equal((await c.bytes(4)).toString(), ":1\r\n");
    c.socket.write(`*2\r\n$3\r\nDEL\r\n$${key.length}\r\n${key}\r\n`);
    assert.equal((await c.bytes(4)).toString(), ":0\r\n");
    // AUTH with no password configured is Redis's own error, so a misconfigured client says why
    assert.match(
      String(await c.call("AUTH", "user", "secret")),
      /^-ERR AUTH .*without any password configured/,
    );
    await c.close();
  } finally {
    await srv.close();
  }
});

test("pipelined commands, sent whole or one byte at a time, are answered in order", async () => {
  const srv = await start();
  try {
    const value = Buffer.alloc(100_000, 7);
    const cmds: (string | Buffer)[][] = [
      ["SET", "k1", value],
      ["GET", "k1"],
      ["EXISTS", "k1", "k2"],
      ["SET", "k2", ""],
      ["GET", "k2"],
      ["PING"],
      ["ECHO", "hi"],
      ["DEL", "k1", "k2"],
      ["GET", "k1"],
    ];
    const expected = ["OK", value, 1, "OK", Buffer.alloc(0), "PONG", Buffer.from("hi"), 2, null];
    const wire = Buffer.concat(cmds.map(encode));
    for (const split of ["whole", "bytes"]) {
      const c = await Resp.open(srv.respPort!);
      if (split === "whole") c.socket.write(wire);
      else {
        // every byte its own write: frames split at every possible place
        c.socket.setNoDelay(true);
        for (let i = 0; i < wire.length; i += i < 200 ? 1 : 4096)
          c.socket.write(wire.subarray(i, i < 200 ? i + 1 : i + 4096));
      }
      for (const e of expected) assert.deepEqual(await c.reply(), e, split);
      await c.close();
    }
  } finally {
    await srv.close();
  }
});

test("inline commands work, as they do for telnet and health probes", async () => {
  const srv = await start();
  try {
    const c = await Resp.open(srv.respPort!);
    c.socket.write("PING\r\nSET  plain   value\r\nGET plain\nEXISTS plain\r\n\r\n");
    assert.equal(await c.reply(), "PONG");
    assert.equal(await c.reply(), "OK");
    assert.deepEqual(await c.reply(), Buffer.from("value"));
    assert.equal(await c.reply(), 1);
    await c.close();
  } finally {
    await srv.close();
  }
});

test("command errors are answered and the connection goes on; bad keys and options are refused", async () => {
  const srv = await start();
  try {
    const c = await Resp.open(srv.respPort!);
    assert.match(
      String(await c.call("NOSUCH", "x")),
      /^-ERR unknown command 'NOSUCH', with args beginning with: 'x'/,
    );
    assert.match(String(await c.call("GET")), /^-ERR wrong number of arguments for 'get'/);
    assert.match(String(await c.call("GET", "a\r\nb")), /^-ERR keys are 1-512 bytes of printable ASCII/);
    assert.match(String(await c.call("GET", "")), /^-ERR keys/);
    assert.match(String(await c.call("SET", "k".repeat(513), "v")), /^-ERR keys/);
    assert.match(String(await c.call("SET", "k", "v", "EX", "10")), /^-ERR syntax error/);
    assert.match(String(await c.call("SELECT", "1")), /^-ERR DB index is out of range/);
    assert.match(String(await c.call("HELLO", "3")), /^-NOPROTO/);
    assert.equal(await c.call("SELECT", "0"), "OK");
    assert.equal(await c.call("CLIENT", "SETINFO", "LIB-NAME", "x"), "OK");
    assert.equal(await c.call("SET", "k", "v", "NX"), "OK");
    assert.equal(await c.call("SET", "k", "w", "NX"), null);
    assert.equal(await c.call("SET", "absent", "w", "XX"), null);
    assert.deepEqual(await c.call("GET", "k"), Buffer.from("v"));
    const hello = (await c.call("HELLO", "2")) as unknown[];
    const proto = hello.findIndex((v) => Buffer.isBuffer(v) && v.toString() === "proto");
    assert.equal(hello[proto + 1], 2);
    // nothing the refused commands sent was stored
    assert.equal(await c.call("EXISTS", "absent"), 0);
    await c.close();
  } finally {
    await srv.close();
  }
});

test("framing errors and oversized requests are answered with a protocol error and close only that connection", async () => {
  const srv = await start({ maxObjectBytes: 2 ** 20 });
  try {
    const good = await Resp.open(srv.respPort!);
    assert.equal(await good.call("SET", "keep", "yes"), "OK");
    const cases: { kind: string; bytes: string | Buffer; reply: RegExp }[] = [
      { kind: "bad_frame", bytes: "*2\r\n+GET\r\n", reply: /expected '\$'/ },
      { kind: "bad_frame", bytes: "*x\r\n", reply: /invalid multibulk length/ },
      { kind: "bad_frame", bytes: "*2\r\n$-1\r\n", reply: /invalid bulk length/ },
      { kind: "bad_frame", bytes: "*2\r\n$3\r\nGETxx", reply: /expected CRLF/ },
      { kind: "bad_frame", bytes: "*1025\r\n", reply: /more than 1024 arguments/ },
      { kind: "bad_frame", bytes: `*2\r\n$3\r\nGET\r\n$${2 ** 20 + 1}\r\n`, reply: /arguments longer than/ },
      { kind: "bad_frame", bytes: "A".repeat(70_000), reply: /line longer than 65536/ },
      {
        kind: "oversized_length",
        bytes: `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${2 ** 20 + 1}\r\n`,
        reply: /exceeds the max object size/,
      },
    ];
    for (const c of cases) {
      const before = await metric(srv, "switchyard_cache_protocol_errors_total", { kind: c.kind });
      const bad = await Resp.open(srv.respPort!);
      bad.socket.write(c.bytes);
      assert.match(String(await bad.reply()), c.reply);
      await bad.closedP;
      assert.equal(
        await metric(srv, "switchyard_cache_protocol_errors_total", { kind: c.kind }),
        before + 1,
        c.kind,
      );
      assert.deepEqual(await good.call("GET", "keep"), Buffer.from("yes"));
    }
    // a command cut off by the peer's close never stores anything
    const cut = await Resp.open(srv.respPort!);
    cut.socket.end("*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$100\r\nabc");
    await cut.closedP;
    assert.equal(await good.call("EXISTS", "half"), 0);
    assert.equal(srv.store.memory.reservedBytes, 0);
    await good.close();
  } finally {
    await srv.close();
  }
});

test("RESP values are evicted least recently used within the memory budget, and the metrics count them", async () => {
  const budget = 2 ** 22;
  const srv = await start({ maxMemoryBytes: budget });
  try {
    const c = await Resp.open(srv.respPort!);
    const size = 256 * 1024;
    const value = (i: number) => Buffer.alloc(size, i & 0xff);
    for (let i = 0; i < 40; i++) assert.equal(await c.call("SET", `chunk-${i}`, value(i)), "OK");
    assert.ok(srv.store.memory.usedBytes <= budget);
    assert.equal(await c.call("EXISTS", "chunk-0"), 0);
    assert.deepEqual(await c.call("GET", "chunk-39"), value(39));
    let present = 0;
    for (let i = 0; i < 40; i++) present += (await c.call("EXISTS", `chunk-${i}`)) as number;
    assert.ok(present > 0 && present < 40);
    assert.equal(
      await metric(srv, "switchyard_cache_evictions_total", { tier: "memory", outcome: "dropped" }),
      40 - present,
    );
    assert.equal(await metric(srv, "switchyard_cache_requests_total", { command: "put" }), 40);
    assert.equal(await metric(srv, "switchyard_cache_hits_total", { tier: "memory" }), 1);
    await c.close();
  } finally {
    await srv.close();
  }
});

test("a SET the budget cannot reserve is read, dropped and still answered +OK, and the key is gone", async () => {
  // two clients each start a value larger than half the budget: the second cannot be reserved
  const budget = 2 ** 21;
  const srv = await start({ maxMemoryBytes: budget });
  try {
    const a = await Resp.open(srv.respPort!);
    const b = await Resp.open(srv.respPort!);
    assert.equal(await b.call("SET", "second", "old"), "OK");
    const big = Math.floor(budget * 0.6);
    a.socket.write(`*3\r\n$3\r\nSET\r\n$5\r\nfirst\r\n$${big}\r\n`);
    a.socket.write(Buffer.alloc(1000));
    // wait until the first value's reservation is held
    while (srv.store.memory.reservedBytes === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(await b.call("SET", "second", Buffer.alloc(big, 2)), "OK");
    assert.equal(await b.call("EXISTS", "second"), 0);
    assert.equal(await metric(srv, "switchyard_cache_put_refused_total"), 1);
    a.socket.write(Buffer.concat([Buffer.alloc(big - 1000, 1), Buffer.from("\r\n")]));
    assert.equal(await a.reply(), "OK");
    assert.equal(((await a.call("GET", "first")) as Buffer).length, big);
    assert.equal(srv.store.memory.reservedBytes, 0);
    await a.close();
    await b.close();
  } finally {
    await srv.close();
  }
});

test("`switchyard cache-server --resp-port` serves RESP beside lm://", { skip: redisCliSkip() }, async () => {
  const [port, respPort, metricsPort] = (await freePorts(3)) as [number, number, number];
  const p = spawnCli([
    "cache-server",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--resp-port",
    String(respPort),
    "--max-memory",
    "16MiB",
    "--metrics-port",
    String(metricsPort),
  ]);
  try {
    await waitForHttp(`http://127.0.0.1:${metricsPort}/health`, 30_000, 200, p);
    const cli = async (...args: string[]) =>
      (await run("redis-cli", ["-h", "127.0.0.1", "-p", String(respPort), ...args])).stdout.trim();
    assert.equal(await cli("SET", "k", "from-resp"), "OK");
    const lm = await RawConn.open(port);
    assert.equal((await lm.get("k"))?.toString(), "from-resp");
    await lm.close();
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.ok(text.includes('switchyard_cache_requests_total{command="put"} 1'), text);
    assert.equal(await p.stop("SIGTERM"), 0, p.output());
  } finally {
    await p.stop("SIGKILL");
  }
});
