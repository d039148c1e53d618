// Whether one router process holds 10 000 concurrent streaming connections at 1 token/s each, and at
// what memory, with a minimal streaming server (bench/support/fakes/tenancy-upstream.ts) upstream in its own process.
// Reports the router's RSS idle and with every stream open, RSS per connection, and whether every
// stream got all its tokens. Not part of npm test.
//   node --import tsx bench/router/10k-streams.ts [--streams 10000] [--tokens 30] [--ramp 10]
//        [--upstream-protocol http1|h2c] [--h2c-streams 100]
// Over HTTP/1.1 (the default, and vLLM's own server) each stream costs the router two sockets (client
// and upstream): with a per-process descriptor limit of 20 000 (this dev VM's hard limit) the most
// that fits is ~9 900; the bench clamps to the limit and says so. With `--upstream-protocol h2c` the
// upstream serves cleartext HTTP/2 and the router's backend is `protocol: h2c`: the streams share
// upstream connections (`--h2c-streams` per connection), so 10 000 fit.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { stringify } from "yaml";
import { freePort } from "../support/cli.js";
import { waitHttp } from "../support/router-harness.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const wanted = Number(get("--streams", "10000"));
const tokens = Number(get("--tokens", "30"));
const rampSecs = Number(get("--ramp", "10"));
const protocol = get("--upstream-protocol", "http1");
const h2cStreams = Number(get("--h2c-streams", "100"));
if (protocol !== "http1" && protocol !== "h2c")
  throw new Error(`--upstream-protocol ${protocol}: http1 or h2c`);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function fdLimit(): number {
  const m = /Max open files\s+(\d+)/.exec(readFileSync("/proc/self/limits", "utf8"));
  return m ? Number(m[1]) : Infinity;
}

const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const script = (rel: string) => fileURLToPath(new URL(rel + ext, import.meta.url));

/** `switchyard router` with only the config file's backends (router-harness's adds an http1 --backend). */
function spawnRouterWithConfig(port: number, cfg: string): ChildProcess {
  const args = ["router", "--host", "127.0.0.1", "--port", String(port), "--config", cfg];
  return spawn(process.execPath, [...process.execArgv, script("../../src/cli/main"), ...args], {
    stdio: "ignore",
    env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" },
  });
}

/** Descriptors the router needs for n streams: a client socket each, plus upstream sockets. */
function descriptorsFor(n: number): number {
  return 200 + n + (protocol === "h2c" ? Math.ceil(n / h2cStreams) : n);
}

const cpus = availableParallelism();
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

async function main(): Promise<void> {
  const limit = fdLimit();
  let streams = wanted;
  while (streams > 0 && descriptorsFor(streams) > limit) streams--;
  if (streams < wanted)
    console.log(
      `note: ${wanted} streams need ~${descriptorsFor(wanted)} descriptors in the router; the limit is ${limit}: running ${streams}`,
    );
  const upPort = await freePort();
  const up = spawn(
    process.execPath,
    [
      ...process.execArgv,
      script("../support/fakes/tenancy-upstream"),
      String(upPort),
      "1000",
      ...(protocol === "h2c" ? ["--h2c"] : []),
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const dir = mkdtempSync(join(tmpdir(), "sy-10k-"));
  const cfg = join(dir, "router.yaml");
  const upUrl = `http://127.0.0.1:${upPort}`;
  const backend =
    protocol === "h2c" ? { url: upUrl, protocol: "h2c", maxConcurrentStreams: h2cStreams } : upUrl;
  writeFileSync(
    cfg,
    stringify({ backends: [backend], limits: { maxConnections: 0 }, timeouts: { idle: "30s" } }),
  );
  const port = await freePort();
  const router = spawnRouterWithConfig(port, cfg);
  const url = `http://127.0.0.1:${port}`;
  const agent = new Agent({ connections: null, pipelining: 1, keepAliveTimeout: 120_000 });
  try {
    // an h2c-only upstream refuses HTTP/1.1 probes: readiness through the router says it is up
    if (protocol === "http1") await waitHttp(`${upUrl}/health`);
    await waitHttp(`${url}/ready`);
    const loadBefore = load();
    // warm-up so the idle figure includes JIT and pools
    for (let i = 0; i < 200; i++) {
      const r = await request(`${url}/v1/completions`, {
        method: "POST",
        dispatcher: agent,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "bench/m", prompt: "x", max_tokens: 1 }),
      });
      await r.body.text();
    }
    await new Promise((r) => setTimeout(r, 1000));
    const idle = rssMiB(router.pid!);
    const body = JSON.stringify({ model: "bench/m", prompt: "x", max_tokens: tokens, stream: true });
    let open = 0;
    let complete = 0;
    let short = 0;
    let failed = 0;
    const errors = new Map<string, number>();
    const one = async () => {
      try {
        const r = await request(`${url}/v1/completions`, {
          method: "POST",
          dispatcher: agent,
          headers: { "content-type": "application/json" },
          body,
          headersTimeout: 120_000,
          bodyTimeout: 60_000,
        });
        if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
        open++;
        let chunks = 0;
        let done = false;
        for await (const c of r.body) {
          const s = (c as Buffer).toString("latin1");
          for (let i = s.indexOf('"text"'); i >= 0; i = s.indexOf('"text"', i + 1)) chunks++;
          if (s.includes("[DONE]")) done = true;
        }
        open--;
        if (done && chunks === tokens) complete++;
        else short++;
      } catch (err) {
        failed++;
        const k = (err as { code?: string }).code ?? (err as Error).message;
        errors.set(k, (errors.get(k) ?? 0) + 1);
      }
    };
    const t0 = performance.now();
    const all: Promise<void>[] = [];
    const samples: Array<{ t: number; open: number; rss: number; fds: number }> = [];
    const sampler = setInterval(() => {
      samples.push({
        t: (performance.now() - t0) / 1000,
        open,
        rss: rssMiB(router.pid!),
        fds: fdCount(router.pid!),
      });
    }, 1000);
    for (let i = 0; i < streams; i++) {
      all.push(one());
      const due = t0 + ((i + 1) * rampSecs * 1000) / streams;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    }
    await Promise.all(all);
    clearInterval(sampler);
    const maxOpen = Math.max(...samples.map((s) => s.open));
    // RSS while (nearly) every stream is open gives the per-connection figure; the overall peak comes
    // later (garbage is collected lazily as streams end)
    const full = samples.filter((s) => s.open >= 0.99 * maxOpen);
    const atFull = full.reduce((m, s) => (s.rss > m.rss ? s : m), full[0]!);
    const peak = Math.max(...samples.map((s) => s.rss));
    const upstreamSide =
      protocol === "h2c" ? `h2c upstream, ${h2cStreams} streams per connection` : "HTTP/1.1 upstream";
    console.log(
      `streams    ${streams} at 1 token/s, ${tokens} tokens each, opened over ${rampSecs} s, ${upstreamSide}`,
    );
    console.log(
      `result     complete ${complete}, short ${short}, failed ${failed} ${JSON.stringify(Object.fromEntries(errors))}`,
    );
    console.log(`open       max ${maxOpen} concurrently`);
    console.log(
      `router RSS idle ${idle.toFixed(0)} MiB, ${atFull.rss.toFixed(0)} MiB with ${atFull.open} open, peak ${peak.toFixed(0)} MiB`,
    );
    const perStream = protocol === "h2c" ? "client socket + upstream h2 stream" : "client + upstream socket";
    console.log(
      `per conn   ${(((atFull.rss - idle) * 1024) / Math.max(1, atFull.open)).toFixed(1)} KiB RSS per open stream (${perStream})`,
    );
    console.log(
      `router fds ${atFull.fds} with ${atFull.open} open (max ${Math.max(...samples.map((s) => s.fds))})`,
    );
    console.log(`load avg   ${loadBefore} before, ${load()} after (1/5/15 min, ${cpus} cores)`);
    console.log(
      `samples    ${samples.map((s) => `${s.t.toFixed(0)}s:${s.open}/${s.rss.toFixed(0)}`).join(" ")}`,
    );
    if (failed > 0 || short > 0) process.exitCode = 1;
  } finally {
    await agent.close().catch(() => undefined);
    router.kill("SIGKILL");
    up.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
