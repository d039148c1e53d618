// Throughput of `switchyard cache-server` next to redis-server, over loopback, through one harness:
// raw sockets, the same buffering for both (payload written as its own Buffer after the header in a
// corked pair; replies read into one preallocated Buffer per connection).
//   PUT phase: each connection pipelines its PUTs (Redis: SET) and is then fenced (lm://: an EXIST
//   reply; Redis: the SET replies); the phase ends when every connection's fence has answered.
//   GET phase: each connection fetches its objects one at a time (request, full reply, next).
// Both servers run as child processes. Besides wall-clock GiB/s it reports CPU seconds per GiB moved
// (server: every thread of the child, from /proc/PID/task/*/schedstat; client: this process), which
// stays meaningful when other work shares the machine. --repeat N runs the whole grid N times
// (lm:// and Redis alternating) and ends with the median of each cell. Usage:
//   node dist/bench/cacheserver/throughput.js [--size-mib 32] [--objects 64] [--conns 1,4,16]
//     [--repeat 1] [--redis redis-server]
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { percentile } from "../../src/workload/stats.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const SIZE = Number(arg("size-mib", "32")) * 2 ** 20;
const OBJECTS = Number(arg("objects", "64"));
const CONNS = arg("conns", "1,4,16").split(",").map(Number);
const REDIS = arg("redis", "redis-server");
const REPEAT = Number(arg("repeat", "1"));

/** CPU time of every thread of a process, in seconds (Linux); NaN where /proc cannot tell. */
function processCpuS(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`))
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "latin1").split(" ")[0]);
    return ns / 1e9;
  } catch {
    return NaN;
  }
}

const clientCpuS = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** 'data' events and bytes seen by every Reader: how the server's replies arrive (same for both servers) */
const received = { reads: 0, bytes: 0 };

/** Reads exact byte counts and CRLF lines from a socket without re-joining large data. */
class Reader {
  private chunks: Buffer[] = [];
  private off = 0;
  private have = 0;
  private wake: (() => void) | undefined;
  constructor(readonly socket: Socket) {
    socket.on("data", (c: Buffer) => {
      received.reads++;
      received.bytes += c.length;
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

interface PhaseResult {
  /** GiB/s */
  put: number;
  get: number;
  /** server and client CPU seconds per GiB */
  putCpu: number;
  getCpu: number;
  putClientCpu: number;
  getClientCpu: number;
  /** GET phase: mean KiB per client 'data' event */
  getReadKiB: number;
  /** GET phase: the client's minor page faults per GiB received */
  getFaultsPerGiB: number;
}

async function runPhase(
  proto: Proto,
  port: number,
  serverPid: number | undefined,
  conns: number,
  payloads: Buffer[],
  dests: Buffer[],
): Promise<PhaseResult> {
  const readers = await Promise.all(Array.from({ length: conns }, () => openConn(port)));
  const per = Math.ceil(OBJECTS / conns);
  // keys repeat across rounds (overwrites), so each server holds one round's objects at a time
  const keyOf = (c: number, i: number) => `bench@c${c}@${i}`;
  let t0 = performance.now();
  let cpu0 = processCpuS(serverPid);
  let client0 = clientCpuS();
  await Promise.all(
    readers.map(async (r, c) => {
      for (let i = 0; i < per; i++) await proto.put(r, keyOf(c, i), payloads[i % payloads.length]!);
      await proto.fence(r, per);
    }),
  );
  const putS = (performance.now() - t0) / 1000;
  const putCpuS = processCpuS(serverPid) - cpu0;
  const putClientS = clientCpuS() - client0;
  t0 = performance.now();
  cpu0 = processCpuS(serverPid);
  client0 = clientCpuS();
  const faults0 = process.resourceUsage().minorPageFault;
  const reads0 = received.reads;
  const bytes0 = received.bytes;
  await Promise.all(
    readers.map(async (r, c) => {
      const dest = dests[c]!;
      for (let i = 0; i < per; i++) {
        await proto.get(r, keyOf(c, i), dest);
        if (i === 0 && !dest.equals(payloads[0]!)) throw new Error("payload mismatch");
      }
    }),
  );
  const getS = (performance.now() - t0) / 1000;
  const getCpuS = processCpuS(serverPid) - cpu0;
  const getClientS = clientCpuS() - client0;
  const getFaults = process.resourceUsage().minorPageFault - faults0;
  const getReads = received.reads - reads0;
  const getReadKiB = (received.bytes - bytes0) / 1024 / getReads;
  for (const r of readers) r.socket.destroy();
  const gib = (per * conns * SIZE) / 2 ** 30;
  return {
    put: gib / putS,
    get: gib / getS,
    putCpu: putCpuS / gib,
    getCpu: getCpuS / gib,
    putClientCpu: putClientS / gib,
    getClientCpu: getClientS / gib,
    getReadKiB,
    getFaultsPerGiB: getFaults / gib,
  };
}

/** the median of the runs that measured the figure (NaN: a run that did not) */
function median(xs: number[]): number {
  return percentile(
    xs.filter((x) => !Number.isNaN(x)),
    50,
  );
}

const f2 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "-" : x.toFixed(2));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) ? "-" : `${(a / b).toFixed(2)}x`;

interface Row {
  conns: number;
  lm: PhaseResult;
  redis: PhaseResult | undefined;
  putRatio: number;
  getRatio: number;
}

function printThroughput(rows: Row[]): void {
  console.log(
    "| conns | lm PUT GiB/s | redis SET GiB/s | PUT ratio | lm GET GiB/s | redis GET GiB/s | GET ratio |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|");
  for (const { conns, lm: a, redis: b, putRatio, getRatio } of rows)
    console.log(
      `| ${conns} | ${f2(a.put)} | ${f2(b?.put)} | ${Number.isNaN(putRatio) ? "-" : putRatio.toFixed(2) + "x"} | ${f2(a.get)} | ${f2(b?.get)} | ${Number.isNaN(getRatio) ? "-" : getRatio.toFixed(2) + "x"} |`,
    );
}

function printCpu(rows: Row[]): void {
  console.log("CPU seconds per GiB (server: all threads of the child; client: this harness)\n");
  console.log(
    "| conns | lm PUT | redis SET | lm/redis | lm GET | redis GET | lm/redis | client PUT lm / redis | client GET lm / redis | GET KiB/read lm / redis | GET faults/GiB lm / redis |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const { conns, lm: a, redis: b } of rows)
    console.log(
      `| ${conns} | ${f2(a.putCpu)} | ${f2(b?.putCpu)} | ${ratio(a.putCpu, b?.putCpu)} | ${f2(a.getCpu)} | ${f2(b?.getCpu)} | ${ratio(a.getCpu, b?.getCpu)} | ${f2(a.putClientCpu)} / ${f2(b?.putClientCpu)} | ${f2(a.getClientCpu)} / ${f2(b?.getClientCpu)} | ${a.getReadKiB.toFixed(0)} / ${b ? b.getReadKiB.toFixed(0) : "-"} | ${a.getFaultsPerGiB.toFixed(0)} / ${b ? b.getFaultsPerGiB.toFixed(0) : "-"} |`,
    );
}

/** Cell-wise median of several runs of the same grid (ratios: the median of each run's ratio). */
function medianRows(runs: Row[][]): Row[] {
  return runs[0]!.map((first, i) => {
    const pick = (f: (r: Row) => number) => median(runs.map((run) => f(run[i]!)));
    const phase = (side: (r: Row) => PhaseResult | undefined): PhaseResult | undefined =>
      side(first) === undefined
        ? undefined
        : {
            put: pick((r) => side(r)!.put),
            get: pick((r) => side(r)!.get),
            putCpu: pick((r) => side(r)!.putCpu),
            getCpu: pick((r) => side(r)!.getCpu),
            putClientCpu: pick((r) => side(r)!.putClientCpu),
            getClientCpu: pick((r) => side(r)!.getClientCpu),
            getReadKiB: pick((r) => side(r)!.getReadKiB),
            getFaultsPerGiB: pick((r) => side(r)!.getFaultsPerGiB),
          };
    return {
      conns: first.conns,
      lm: phase((r) => r.lm)!,
      redis: phase((r) => r.redis),
      putRatio: pick((r) => r.putRatio),
      getRatio: pick((r) => r.getRatio),
    };
  });
}

function cli(): { cmd: string; args: string[] } {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".ts"))
    return {
      cmd: process.execPath,
      args: ["--import", "tsx", fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url))],
    };
  return { cmd: process.execPath, args: [fileURLToPath(new URL("../../src/cli/main.js", import.meta.url))] };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await done;
}

async function main(): Promise<void> {
  const payloads = Array.from({ length: 4 }, () => randomBytes(SIZE));
  // GET destinations, one per connection, allocated and touched once and shared by both servers: with a
  // fresh 32 MiB Buffer per phase the client page-faulted them in during the timed GETs, unevenly (the
  // lm:// phase, which runs first, took ~2.5x Redis' faults), which cost it ~0.5 s/GiB at 16 connections
  const dests = Array.from({ length: Math.max(...CONNS) }, () => Buffer.alloc(SIZE, 1));
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
    console.log(`objects: ${OBJECTS} x ${SIZE / 2 ** 20} MiB per run, loopback, ${REPEAT} run(s)\n`);
    const runs: Row[][] = [];
    for (let rep = 0; rep < REPEAT; rep++) {
      const rows: Row[] = [];
      for (const conns of CONNS) {
        const a = await runPhase(lm, lmPort, lmChild.pid, conns, payloads, dests);
        const b = redisChild
          ? await runPhase(redis, redisPort, redisChild.pid, conns, payloads, dests)
          : undefined;
        rows.push({
          conns,
          lm: a,
          redis: b,
          putRatio: b ? a.put / b.put : NaN,
          getRatio: b ? a.get / b.get : NaN,
        });
      }
      runs.push(rows);
      if (REPEAT > 1) {
        console.log(`run ${rep + 1}:\n`);
        printThroughput(rows);
        console.log("");
      }
    }
    const med = REPEAT > 1 ? medianRows(runs) : runs[0]!;
    if (REPEAT > 1) console.log(`median of ${REPEAT} runs:\n`);
    printThroughput(med);
    console.log("");
    printCpu(med);
  } finally {
    await stop(lmChild);
    if (redisChild) await stop(redisChild);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
