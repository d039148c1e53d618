// Switchyard's router beside the peer users compare it with, on one tiny upstream, loaded by wrk:
// vllm-router 0.1.17 (the Rust router, from PyPI into the peers cache folder) with round_robin and
// cache_aware, Switchyard with round-robin and hybrid, each with its defaults alone (`vr-default`,
// `sy-default`: no flag but the engines and the port), and nginx proxy_pass as the reference. Every
// proxy runs as a new user would start it (defaults, logs to a file), in front of the same two
// "engines": two ports of one nginx answering a tiny completion (the upstream costs next to nothing,
// so the proxies are what is measured). Rounds are interleaved (each round starts with the next
// target) and each figure is the median over rounds; ratios are against vllm-router in the same run.
// `node-floor` (not run by default) is bench/router/node-floor-proxy.ts in as many processes as
// round-robin's workers: what a Node process group costs before any of the router's own work.
// `node-floor+N` is the same spending N µs of its event loop's time on each request: how much work a
// request may cost a Node router before its tail falls behind vllm-router's.
//   node --import tsx bench/router/vs-peers.ts [--rounds 5] [--duration 8] [--concurrency 64,256]
//     [--targets nginx,vr-rr,vr-ca,sy-rr,sy-hybrid,vr-default,sy-default,node-floor,node-floor+N]
//     [--workers N]
//     [--hybrid-workers N]
//     [--listen-sockets N] [--switchyard-log-level info|warn] [--noisy-neighbour]
// --noisy-neighbour keeps one core busy with a background busy loop while every cell is measured.
//     [--out-dir DIR] [--json FILE]
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn, spawnSync } from "node:child_process";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { freePorts } from "../support/cli.js";
import { ensureBenchTools, startLogged, stopAll, vllmRouterBin } from "../support/peer-tools.js";
import { waitHttp } from "../support/router-harness.js";
import { percentile } from "../../src/workload/stats.js";
import { autoListenSockets, usableCores, workerExecArgv } from "../../src/router/index.js";

const specs: FlagSpecs = {
  rounds: { type: "int", default: 5, min: 1, help: "interleaved rounds (the median is reported)" },
  duration: { type: "int", default: 8, min: 1, help: "seconds per measurement" },
  concurrency: { type: "string", default: "64,256", help: "wrk connections, comma-separated" },
  targets: {
    type: "string",
    default: "nginx,vr-rr,vr-ca,sy-rr,sy-hybrid,vr-default,sy-default",
    help: "which proxies (vr-default, sy-default: each router with no flag but its engines and port; node-floor: node:http and undici alone, in as many processes as round-robin's workers; node-floor+N: the same spending N µs per request)",
  },
  "noisy-neighbour": {
    type: "boolean",
    default: false,
    help: "keep one core busy with a background busy-loop process during the measurements",
  },
  workers: { type: "int", min: 1, help: "Switchyard round-robin's --workers (default: one per core)" },
  "hybrid-workers": {
    type: "int",
    default: 1,
    min: 1,
    help: "Switchyard hybrid's --workers (a load-aware pick is confirmed by the primary: see docs/router.md)",
  },
  "listen-sockets": {
    type: "int",
    min: 1,
    help: "Switchyard's --listen-sockets, each process's (default: the router's auto, 64 shared among its workers; more than 1 needs Node 22.12+)",
  },
  "switchyard-log-level": {
    type: "string",
    default: "info",
    help: "Switchyard's SWITCHYARD_LOG_LEVEL (info, the default, writes an access line per request; warn does not)",
  },
  "wrk-threads": { type: "int", default: 2, min: 1, help: "wrk threads" },
  "out-dir": { type: "string", help: "logs and results (default: a temporary folder)" },
  json: { type: "string", help: "also write the results here" },
};
const { flags } = benchFlags(specs);
const wantTargets = (flags.targets as string).split(",").map((t) => t.trim());
const KNOWN_TARGETS = ["nginx", "vr-rr", "vr-ca", "vr-default", "sy-rr", "sy-hybrid", "sy-default"];
/** node-floor, and node-floor+N: the floor spending N µs of its event loop's time per request */
const FLOOR_TARGET = /^node-floor(?:\+(\d+))?$/;
for (const [i, t] of wantTargets.entries()) {
  const why =
    !KNOWN_TARGETS.includes(t) && !FLOOR_TARGET.test(t)
      ? `unknown target '${t}' (known: ${KNOWN_TARGETS.join(", ")}, node-floor, node-floor+N)`
      : wantTargets.indexOf(t) !== i
        ? `'${t}' named twice`
        : undefined;
  if (why !== undefined) {
    console.error(`router/vs-peers: --targets: ${why}`);
    process.exit(2);
  }
}
const outDir = (flags["out-dir"] as string | undefined) ?? mkdtempSync(join(tmpdir(), "router-vs-peers-"));
mkdirSync(outDir, { recursive: true });
const rounds = flags.rounds as number;
const duration = flags.duration as number;
const concs = (flags.concurrency as string).split(",").map(Number);
const here = fileURLToPath(new URL(".", import.meta.url));
const isTs = import.meta.url.endsWith(".ts");
const cliMain = isTs ? join(here, "../../src/cli/main.ts") : join(here, "../../src/cli/main.js");
const cliPre = isTs ? ["--import", "tsx", cliMain] : [cliMain];

const TINY = JSON.stringify({
  id: "cmpl-1",
  object: "text_completion",
  created: 1,
  model: "bench/m",
  choices: [{ index: 0, text: "ok", logprobs: null, finish_reason: "length", stop_reason: null }],
  usage: { prompt_tokens: 1, total_tokens: 2, completion_tokens: 1 },
});
const MODELS = JSON.stringify({ object: "list", data: [{ id: "bench/m", object: "model", parent: null }] });
const BODY = JSON.stringify({ model: "bench/m", prompt: "hi", max_tokens: 1 });

/** nginx config: `servers` are whole `server {}` blocks. */
function nginxConf(dir: string, workers: string, servers: string): string {
  return `worker_processes ${workers}; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
${servers}
}`;
}

/** Two tiny engines: the routes a router needs (/health, /v1/models, /metrics) and a fixed completion. */
function upstreamServer(port: number): string {
  const q = (s: string) => `'${s.replace(/'/g, "\\'")}'`;
  return `  server { listen 127.0.0.1:${port};
    location = /health { return 200 ''; }
    location = /v1/models { default_type application/json; return 200 ${q(MODELS)}; }
    location = /metrics { default_type text/plain; return 200 'vllm:num_requests_running 0\\nvllm:num_requests_waiting 0\\n'; }
    location / { default_type application/json; return 200 ${q(TINY)}; }
  }`;
}

interface Cell {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  socketErrors: number;
  cpuUsPerReq: number;
  requests: number;
}

/** wrk's duration text (e.g. 812.00us, 1.20ms, 2.01s) in ms */
function ms(text: string): number {
  const m = /^([0-9.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "ms" ? v : m[2] === "s" ? v * 1000 : v * 60_000;
}

/** CPU ticks (user + system, all threads) of a process and its children. */
function cpuTicks(pid: number): number {
  const ofProc = (p: number): number => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, "utf8");
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
      return Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
    } catch {
      return 0;
    }
  };
  let total = ofProc(pid);
  try {
    for (const t of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/))
      if (t) total += cpuTicks(Number(t));
  } catch {
    // gone
  }
  return total;
}

function luaScript(): string {
  const path = join(outDir, "post.lua");
  writeFileSync(
    path,
    `wrk.method = "POST"\nwrk.body = '${BODY}'\nwrk.headers["Content-Type"] = "application/json"\n`,
  );
  return path;
}

function wrk(url: string, c: number, seconds: number, pid: number, script: string): Cell {
  const t0 = cpuTicks(pid);
  const r = spawnSync(
    "wrk",
    [
      "-t",
      String(flags["wrk-threads"]),
      "-c",
      String(c),
      "-d",
      `${seconds}s`,
      "--latency",
      "-s",
      script,
      url,
    ],
    { encoding: "utf8", timeout: (seconds + 30) * 1000 },
  );
  const t1 = cpuTicks(pid);
  const out = r.stdout ?? "";
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const requests = num(/(\d+) requests in/);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: num(/Requests\/sec:\s+([0-9.]+)/),
    p50: ms(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    p99: ms(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
    socketErrors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    // clock ticks are 1/100 s on Linux
    cpuUsPerReq: requests > 0 ? ((t1 - t0) * 10_000) / requests : NaN,
    requests,
  };
}

/** the median of the finite figures (a cell that failed has none) */
const median = (xs: number[]): number => percentile(xs.filter(Number.isFinite), 50);

interface Target {
  name: string;
  label: string;
  url: string;
  pid: number;
}

export interface PeersResult {
  load: { before: number; after: number };
  rounds: number;
  duration: number;
  /** one core was kept busy by a background busy loop */
  noisyNeighbour?: boolean;
  /** concurrency → target → per-round cells */
  cells: Record<string, Record<string, Cell[]>>;
}

async function main(): Promise<void> {
  const tools = ensureBenchTools();
  const vr = wantTargets.some((t) => t.startsWith("vr-")) ? vllmRouterBin() : "";
  const floors = wantTargets.flatMap((t) => {
    const m = FLOOR_TARGET.exec(t);
    return m ? [{ name: t, workUs: Number(m[1] ?? 0) }] : [];
  });
  const [
    upA,
    upB,
    pNginx,
    pVrRr,
    pVrCa,
    pVrProm1,
    pVrProm2,
    pSyRr,
    pSyHy,
    pVrDef,
    pVrProm3,
    pSyDef,
    ...floorPorts
  ] = await freePorts(12 + floors.length);
  const engines = [`http://127.0.0.1:${upA}`, `http://127.0.0.1:${upB}`];
  const upDir = mkdtempSync(join(outDir, "upstream-"));
  writeFileSync(
    join(upDir, "nginx.conf"),
    nginxConf(upDir, "1", upstreamServer(upA!) + "\n" + upstreamServer(upB!)),
  );
  startLogged(tools.nginx, ["-c", join(upDir, "nginx.conf"), "-p", upDir], join(outDir, "upstream.log"));
  await waitHttp(`${engines[0]}/health`);
  await waitHttp(`${engines[1]}/health`);

  const targets: Target[] = [];
  const add = (name: string, label: string, port: number, pid: number | undefined) =>
    targets.push({ name, label, url: `http://127.0.0.1:${port}/v1/completions`, pid: pid ?? -1 });
  if (wantTargets.includes("nginx")) {
    const dir = mkdtempSync(join(outDir, "nginx-"));
    const server = `  upstream engines { server 127.0.0.1:${upA}; server 127.0.0.1:${upB}; keepalive 1024; }
  server { listen 127.0.0.1:${pNginx};
    location / { proxy_pass http://engines; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off; }
  }`;
    writeFileSync(join(dir, "nginx.conf"), nginxConf(dir, "auto", server));
    const c = startLogged(tools.nginx, ["-c", join(dir, "nginx.conf"), "-p", dir], join(outDir, "nginx.log"));
    add("nginx", "nginx proxy_pass (worker_processes auto)", pNginx!, c.pid);
  }
  const vrArgs = (port: number, policy: string | undefined, prom: number) => [
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    ...(policy !== undefined ? ["--policy", policy] : []),
    "--worker-urls",
    ...engines,
    "--worker-startup-check-interval",
    "1",
    "--prometheus-port",
    String(prom),
  ];
  if (wantTargets.includes("vr-rr")) {
    const c = startLogged(vr, vrArgs(pVrRr!, "round_robin", pVrProm1!), join(outDir, "vllm-router-rr.log"));
    add("vr-rr", "vllm-router 0.1.17 round_robin", pVrRr!, c.pid);
  }
  if (wantTargets.includes("vr-ca")) {
    const c = startLogged(vr, vrArgs(pVrCa!, "cache_aware", pVrProm2!), join(outDir, "vllm-router-ca.log"));
    add("vr-ca", "vllm-router 0.1.17 cache_aware", pVrCa!, c.pid);
  }
  if (wantTargets.includes("vr-default")) {
    // its default policy is cache_aware (vllm-router --help)
    const c = startLogged(vr, vrArgs(pVrDef!, undefined, pVrProm3!), join(outDir, "vllm-router-default.log"));
    add("vr-default", "vllm-router 0.1.17 defaults (cache_aware)", pVrDef!, c.pid);
  }
  const syWorkers = (flags.workers as number | undefined) ?? availableParallelism();
  const hyWorkers = flags["hybrid-workers"] as number;
  // warn drops the access line per request (info), which vllm-router does not write by default
  const syEnv = { SWITCHYARD_LOG_LEVEL: flags["switchyard-log-level"] as string };
  const syArgs = (port: number, policy: string, n: number) => [
    ...cliPre,
    "router",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--policy",
    policy,
    ...engines.flatMap((e) => ["--backend", e]),
    "--workers",
    String(n),
    ...(flags["listen-sockets"] !== undefined ? ["--listen-sockets", String(flags["listen-sockets"])] : []),
  ];
  if (wantTargets.includes("sy-rr")) {
    const c = startLogged(
      process.execPath,
      syArgs(pSyRr!, "round-robin", syWorkers),
      join(outDir, "switchyard-rr.log"),
      syEnv,
    );
    add(
      "sy-rr",
      `Switchyard round-robin (${syWorkers} ${syWorkers === 1 ? "process" : "workers"})`,
      pSyRr!,
      c.pid,
    );
  }
  if (wantTargets.includes("sy-hybrid")) {
    const c = startLogged(
      process.execPath,
      syArgs(pSyHy!, "hybrid", hyWorkers),
      join(outDir, "switchyard-hybrid.log"),
      syEnv,
    );
    add(
      "sy-hybrid",
      `Switchyard hybrid (${hyWorkers} ${hyWorkers === 1 ? "process" : "workers"})`,
      pSyHy!,
      c.pid,
    );
  }
  for (const [i, f] of floors.entries()) {
    const script = join(here, `node-floor-proxy.${isTs ? "ts" : "js"}`);
    const c = startLogged(
      process.execPath,
      [
        ...(isTs ? ["--import", "tsx"] : []),
        // the flags round-robin's workers start with (their V8 pool; a lone router process adds
        // none); the floor's workers inherit them
        ...(syWorkers > 1 ? workerExecArgv([], process.env, usableCores(), syWorkers, "round-robin") : []),
        script,
        String(floorPorts[i]),
        `${upA},${upB}`,
        String(syWorkers),
        // each process's sockets, as the router's: --listen-sockets, else auto's share
        String((flags["listen-sockets"] as number | undefined) ?? autoListenSockets(syWorkers)),
        String(f.workUs),
      ],
      join(outDir, `${f.name}.log`),
    );
    const work = f.workUs > 0 ? `, plus ${f.workUs} µs of work a request` : "";
    add(
      f.name,
      `node:http + undici doing the least${work} (${syWorkers} ${syWorkers === 1 ? "process" : "processes"}, as round-robin's workers)`,
      floorPorts[i]!,
      c.pid,
    );
  }
  if (wantTargets.includes("sy-default")) {
    const args = [...cliPre, "router", "--host", "127.0.0.1", "--port", String(pSyDef)];
    args.push(...engines.flatMap((e) => ["--backend", e]));
    const c = startLogged(process.execPath, args, join(outDir, "switchyard-default.log"), syEnv);
    add("sy-default", "Switchyard defaults (predictive, workers auto)", pSyDef!, c.pid);
  }
  // every proxy answers a completion before the clock starts
  for (const t of targets) {
    for (let i = 0; ; i++) {
      try {
        const r = await fetch(t.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: BODY,
        });
        await r.arrayBuffer();
        if (r.ok) break;
      } catch {
        // not up yet
      }
      if (i > 600) throw new Error(`${t.name} never answered at ${t.url}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const script = luaScript();
  // a background process that keeps one core busy (a noisy neighbour), for as long as the cells run
  const noisy = flags["noisy-neighbour"]
    ? spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" })
    : undefined;
  try {
    await measureAll(targets, script, noisy !== undefined);
  } finally {
    noisy?.kill("SIGKILL");
  }
}

async function measureAll(targets: Target[], script: string, noisy: boolean): Promise<void> {
  const result: PeersResult = {
    load: { before: loadavg()[0]!, after: 0 },
    rounds,
    duration,
    noisyNeighbour: noisy,
    cells: {},
  };
  console.log(
    `router vs peers: ${rounds} interleaved rounds of ${duration} s per cell, wrk -t${flags["wrk-threads"]}, ` +
      `load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(
          " ",
        )}, ${availableParallelism()} cores${noisy ? ", one kept busy by a background busy loop" : ""}, Switchyard on Node ${process.versions.node}; logs in ${outDir}`,
  );
  for (const t of targets) console.log(`  ${t.name.padEnd(13)} ${t.label}`);
  // warm-up: connections open, JITs warm
  for (const c of concs) for (const t of targets) wrk(t.url, c, 2, t.pid, script);
  for (const c of concs) result.cells[String(c)] = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const c of concs) {
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(r + k) % targets.length]!;
        const cell = wrk(t.url, c, duration, t.pid, script);
        result.cells[String(c)]![t.name]!.push(cell);
        console.log(
          `round ${r + 1} c=${String(c).padEnd(4)} ${t.name.padEnd(13)} ${cell.rps.toFixed(0).padStart(7)} req/s  p50 ${cell.p50.toFixed(2).padStart(7)} ms  p99 ${cell.p99.toFixed(2).padStart(7)} ms  cpu ${cell.cpuUsPerReq.toFixed(0).padStart(4)} µs/req${cell.non2xx || cell.socketErrors ? `  non-2xx ${cell.non2xx} socket errors ${cell.socketErrors}` : ""}  load ${loadavg()[0]!.toFixed(1)}`,
        );
      }
    }
  }
  result.load.after = loadavg()[0]!;
  printSummary(result, targets);
  if (flags.json) writeFileSync(flags.json as string, JSON.stringify(result, null, 2));
}

export function summarize(cells: Cell[]): Cell {
  return {
    rps: median(cells.map((c) => c.rps)),
    p50: median(cells.map((c) => c.p50)),
    p99: median(cells.map((c) => c.p99)),
    cpuUsPerReq: median(cells.map((c) => c.cpuUsPerReq)),
    non2xx: cells.reduce((a, c) => a + c.non2xx, 0),
    socketErrors: cells.reduce((a, c) => a + c.socketErrors, 0),
    requests: cells.reduce((a, c) => a + c.requests, 0),
  };
}

function printSummary(res: PeersResult, targets: Target[]): void {
  console.log(
    `\nmedians over ${res.rounds} rounds (load average ${res.load.before.toFixed(1)} → ${res.load.after.toFixed(1)})`,
  );
  console.log(
    "| conc | target | req/s | p50 ms | p99 ms | CPU µs/req | non-2xx / socket errors | against | req/s vs it | p99 vs it |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const [c, byTarget] of Object.entries(res.cells)) {
    for (const t of targets) {
      // each policy against its counterpart: cache-aware routing against vllm-router's cache_aware
      const refName =
        t.name === "sy-default" || t.name === "vr-default"
          ? "vr-default"
          : t.name === "sy-hybrid" || t.name === "vr-ca"
            ? "vr-ca"
            : "vr-rr";
      const ref = byTarget[refName] ? summarize(byTarget[refName]) : undefined;
      const s = summarize(byTarget[t.name]!);
      const vs = (x: number | undefined) =>
        x !== undefined && Number.isFinite(x) ? `${x.toFixed(2)}×` : "—";
      console.log(
        `| ${c} | ${t.label} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.cpuUsPerReq.toFixed(0)} | ${s.non2xx} / ${s.socketErrors} | ${refName} | ${vs(ref && s.rps / ref.rps)} | ${vs(ref && s.p99 / ref.p99)} |`,
      );
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main()
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    })
    .finally(() => void stopAll());
}
