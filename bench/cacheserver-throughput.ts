// Throughput of `switchyard cache-server` next to redis-server, over loopback, through one harness:
// raw sockets, the same buffering for both (payload written as its own Buffer after the header in a
// corked pair; replies read into one preallocated Buffer per connection).
//   PUT phase: each connection pipelines its PUTs (Redis: SET) and is then fenced (lm://: an EXIST
//   reply; Redis: the SET replies); the phase ends when every connection's fence has answered.
//   GET phase: each connection fetches its objects one at a time (request, full reply, next).
// Both servers run as child processes. Usage:
//   node dist/bench/cacheserver-throughput.js [--size-mib 32] [--objects 64] [--conns 1,4,16] [--redis redis-server]
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { fileURLToPath } from "node:url";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const SIZE = Number(arg("size-mib", "32")) * 2 ** 20;
const OBJECTS = Number(arg("objects", "64"));
const CONNS = arg("conns", "1,4,16").split(",").map(Number);
const REDIS = arg("redis", "redis-server");

/** Reads exact byte counts and CRLF lines from a socket without re-joining large data. */
class Reader {
  private chunks: Buffer[] = [];
  private off = 0;
  private have = 0;
  private wake: (() => void) | undefined;
  constructor(readonly socket: Socket) {
    socket.on("data", (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      const w = this.wake;
      this.wake = undefined;
      w?.();
    });
  }
  private async need(n: number): Promise<void> {
    while (this.have < n) await new Promise<void>((r) => (this.wake = r));
  }
  /** copies exactly dest.length bytes into dest */
  async into(dest: Buffer, n = dest.length): Promise<void> {
    let filled = 0;
    while (filled < n) {
      await this.need(1);
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.off, n - filled);
      c.copy(dest, filled, this.off, this.off + k);
      filled += k;
      this.off += k;
      this.have -= k;
      if (this.off === c.length) {
        this.chunks.shift();
        this.off = 0;
      }
    }
  }
  async line(): Promise<string> {
    let s = "";
    const one = Buffer.allocUnsafe(1);
    for (;;) {
      await this.into(one);
      if (one[0] === 0x0a) return s.replace(/\r$/, "");
      s += String.fromCharCode(one[0]!);
    }
  }
}

function lmHeader(cmd: number, key: string, length = 0): Buffer {
  const b = Buffer.alloc(186, 0x20);
  [cmd, length, 4, 6, 0, length, 0, 0, 0].forEach((v, i) => b.writeInt32LE(v, i * 4));
  b.write(key, 36, "ascii");
  return b;
}

function writePair(s: Socket, head: Buffer, payload: Buffer, tail?: Buffer): Promise<void> {
  return new Promise((resolve) => {
    s.cork();
    s.write(head);
    s.write(payload);
    if (tail) s.write(tail);
    s.uncork();
    if (s.writableNeedDrain) s.once("drain", resolve);
    else resolve();
  });
}

interface Proto {
  put(r: Reader, key: string, payload: Buffer): Promise<void>;
  fence(r: Reader, count: number): Promise<void>;
  get(r: Reader, key: string, dest: Buffer): Promise<void>;
}

const lm: Proto = {
  put: (r, key, payload) => writePair(r.socket, lmHeader(1, key, payload.length), payload),
  async fence(r) {
    r.socket.write(lmHeader(3, "fence"));
    const h = Buffer.allocUnsafe(36);
    await r.into(h);
  },
  async get(r, key, dest) {
    r.socket.write(lmHeader(2, key));
    const h = Buffer.allocUnsafe(36);
    await r.into(h);
    if (h.readInt32LE(0) !== 200 || h.readInt32LE(4) !== dest.length) throw new Error(`lm GET ${key} failed`);
    await r.into(dest);
  },
};

const CRLF = Buffer.from("\r\n");
const redis: Proto = {
  put: (r, key, payload) =>
    writePair(
      r.socket,
      Buffer.from(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${payload.length}\r\n`),
      payload,
      CRLF,
    ),
  async fence(r, count) {
    for (let i = 0; i < count; i++) if ((await r.line()) !== "+OK") throw new Error("redis SET failed");
  },
  async get(r, key, dest) {
    r.socket.write(`*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`);
    const l = await r.line();
    if (l !== `$${dest.length}`) throw new Error(`redis GET ${key}: ${l}`);
    await r.into(dest);
    await r.into(Buffer.allocUnsafe(2));
  },
};

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function openConn(port: number): Promise<Reader> {
  for (let i = 0; i < 100; i++) {
    try {
      return await new Promise<Reader>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port }, () => {
          s.removeListener("error", reject);
          s.on("error", (e) => console.error(`connection error: ${e.message}`));
          resolve(new Reader(s));
        });
        s.setNoDelay(true);
        s.once("error", reject);
      });
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`cannot connect to ${port}`);
}

async function runPhase(proto: Proto, port: number, conns: number, payloads: Buffer[]) {
  const readers = await Promise.all(Array.from({ length: conns }, () => openConn(port)));
  const per = Math.ceil(OBJECTS / conns);
  // keys repeat across rounds (overwrites), so each server holds one round's objects at a time
  const keyOf = (c: number, i: number) => `bench@c${c}@${i}`;
  let t0 = performance.now();
  await Promise.all(
    readers.map(async (r, c) => {
      for (let i = 0; i < per; i++) await proto.put(r, keyOf(c, i), payloads[i % payloads.length]!);
      await proto.fence(r, per);
    }),
  );
  const putS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  await Promise.all(
    readers.map(async (r, c) => {
      const dest = Buffer.allocUnsafe(SIZE);
      for (let i = 0; i < per; i++) {
        await proto.get(r, keyOf(c, i), dest);
        if (i === 0 && !dest.equals(payloads[0]!)) throw new Error("payload mismatch");
      }
    }),
  );
  const getS = (performance.now() - t0) / 1000;
  for (const r of readers) r.socket.destroy();
  const gib = (per * conns * SIZE) / 2 ** 30;
  return { put: gib / putS, get: gib / getS };
}

function cli(): { cmd: string; args: string[] } {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".ts"))
    return {
      cmd: process.execPath,
      args: ["--import", "tsx", fileURLToPath(new URL("../src/cli/main.ts", import.meta.url))],
    };
  return { cmd: process.execPath, args: [fileURLToPath(new URL("../src/cli/main.js", import.meta.url))] };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await done;
}

async function main(): Promise<void> {
  const payloads = Array.from({ length: 4 }, () => randomBytes(SIZE));
  const haveRedis = spawnSync(REDIS, ["--version"]).status === 0;
  const memoryGiB = Math.ceil((OBJECTS * SIZE * 2) / 2 ** 30) + 1;
  const lmPort = await freePort();
  const { cmd, args } = cli();
  const lmChild = spawn(
    cmd,
    [
      ...args,
      "cache-server",
      "--host",
      "127.0.0.1",
      "--port",
      String(lmPort),
      "--max-memory",
      `${memoryGiB}GiB`,
    ],
    {
      stdio: "ignore",
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" },
    },
  );
  let redisChild: ChildProcess | undefined;
  let redisPort = 0;
  if (haveRedis) {
    redisPort = await freePort();
    redisChild = spawn(
      REDIS,
      ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      {
        stdio: "ignore",
      },
    );
  } else console.error(`${REDIS} not found: install it (apt-get install -y redis-server) for the comparison`);
  try {
    console.log(`objects: ${OBJECTS} x ${SIZE / 2 ** 20} MiB per run, loopback\n`);
    console.log(
      "| conns | lm PUT GiB/s | redis SET GiB/s | PUT ratio | lm GET GiB/s | redis GET GiB/s | GET ratio |",
    );
    console.log("|---:|---:|---:|---:|---:|---:|---:|");
    for (const conns of CONNS) {
      const a = await runPhase(lm, lmPort, conns, payloads);
      const b = redisChild ? await runPhase(redis, redisPort, conns, payloads) : undefined;
      const f = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(2));
      const row = `| ${conns} | ${f(a.put)} | ${f(b?.put)} | ${b ? (a.put / b.put).toFixed(2) + "x" : "-"} | ${f(a.get)} | ${f(b?.get)} | ${b ? (a.get / b.get).toFixed(2) + "x" : "-"} |`;
      console.log(row);
    }
  } finally {
    await stop(lmChild);
    if (redisChild) await stop(redisChild);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
