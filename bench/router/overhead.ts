// Router overhead benchmark: latency the router adds over calling the engine directly, for tiny
// non-streaming requests and 256-chunk streams at several concurrencies, side by side with nginx
// `proxy_pass` (one worker, keep-alive upstream) when nginx is installed; and tiny-request throughput.
// A fourth target, `node-floor` (bench/router/node-floor-proxy.ts), is the least a proxy on node:http and
// undici can do: the gap router − node-floor is the router's own work, node-floor − nginx the stack's.
// Two more floors for tiny requests, below any HTTP library (bench/router/raw-relay-proxy.ts): `raw`, a bare
// socket relay, and `raw-min`, the same relay plus the least per-request work the router issue asks
// (JSON body, engine pick, hop-by-hop headers, request id, four metrics): they bound what any
// JavaScript router could reach on the machine the bench runs on.
// The upstream is bench/support/fakes/fast-upstream.ts (not the sim) and the load client runs in its own process.
//   npm run bench -- router/overhead --floors [--duration 5] [--concurrency 1,64,512] [--policy NAME]
//     [--workers N] (the router's --workers; default: its own, auto)
// Without --floors the same name measures routing cost at fixed rates (bench/router/overhead-at-rate.ts):
//   npm run bench -- router/overhead [--rates 100,250,500,1000] [--prompt-tokens 1024,4096,16384]
//     [--policies round-robin,predictive] [--duration 4] [--warmup 1] [--engines 4] [--groups 16]
//     [--workers N (default 1)] [--router-args "--no-prompt-thread"] [--json FILE] [--cpu-prof DIR]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { freePort } from "../support/cli.js";
import {
  completionBody,
  postAndDrain,
  spawnRouter,
  spawnUpstream,
  waitHttp,
} from "../support/router-harness.js";
import { cpuMs } from "../support/stack.js";

const self = fileURLToPath(import.meta.url);
const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const role = process.argv[2];

async function client(url: string, concurrency: number, durationS: number, stream: boolean): Promise<void> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const body = completionBody(stream);
  const lat: number[] = [];
  let errors = 0;
  const one = async () => {
    const t = performance.now();
    if ((await postAndDrain(pool, u.pathname, body)) !== 200) errors++;
    return performance.now() - t;
  };
  // warm-up: open connections
  await Promise.all(Array.from({ length: concurrency }, () => one().catch(() => 0)));
  const end = performance.now() + durationS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        try {
          lat.push(await one());
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  process.stdout.write(
    JSON.stringify({ n: lat.length, errors, rps: lat.length / elapsed, p50: q(0.5), p99: q(0.99) }) + "\n",
  );
  await pool.close();
}

function runChild(args: string[]): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, self, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
}

interface Result {
  n: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

function measure(url: string, c: number, d: number, stream: boolean): Promise<Result> {
  return new Promise((resolve, reject) => {
    const ch = runChild(["client", url, String(c), String(d), String(stream)]);
    let out = "";
    ch.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    ch.on("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out) as Result) : reject(new Error(`client exit ${code}`)),
    );
  });
}

function startNginx(upPort: number, port: number): { stop: () => void; pid: number | undefined } | undefined {
  const bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "bench-nginx-"));
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  upstream engine { server 127.0.0.1:${upPort}; keepalive 1024; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://engine; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off; }
  }
}`,
  );
  const ch = spawn(bin, ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" });
  return { stop: () => ch.kill("SIGTERM"), pid: ch.pid };
}

async function mainBench(): Promise<void> {
  const argv = process.argv.slice(2);
  const get = (f: string, d: string) => {
    const i = argv.indexOf(f);
    return i >= 0 ? argv[i + 1]! : d;
  };
  const duration = Number(get("--duration", "5"));
  const conc = get("--concurrency", "1,64,512").split(",").map(Number);
  const policy = get("--policy", "");
  const workers = get("--workers", "");
  const upPort = await freePort();
  const routerPort = await freePort();
  const nginxPort = await freePort();
  const floorPort = await freePort();
  const rawPort = await freePort();
  const rawMinPort = await freePort();
  const up = spawnUpstream(upPort);
  await waitHttp(`http://127.0.0.1:${upPort}/health`);
  const router = spawnRouter(routerPort, upPort, [
    ...(policy ? ["--policy", policy] : []),
    ...(workers ? ["--workers", workers] : []),
  ]);
  await waitHttp(`http://127.0.0.1:${routerPort}/ready`);
  // the floors, each a script beside this one in its own process
  const spawnFloor = (script: string, ...args: string[]) =>
    spawn(
      process.execPath,
      [...process.execArgv, fileURLToPath(new URL(`./${script}${ext}`, import.meta.url)), ...args],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
  const floor = spawnFloor("node-floor-proxy", String(floorPort), String(upPort));
  const raw = spawnFloor("raw-relay-proxy", String(rawPort), String(upPort), "bare");
  const rawMin = spawnFloor("raw-relay-proxy", String(rawMinPort), String(upPort), "min-router");
  const nginx = startNginx(upPort, nginxPort);
  const stopNginx = nginx?.stop;
  await waitHttp(`http://127.0.0.1:${floorPort}/health`).catch(() => undefined);
  await waitHttp(`http://127.0.0.1:${rawPort}/health`).catch(() => undefined);
  await waitHttp(`http://127.0.0.1:${rawMinPort}/health`).catch(() => undefined);
  if (stopNginx) await waitHttp(`http://127.0.0.1:${nginxPort}/health`);
  else
    console.log(
      "nginx not found: install with `apt-get install -y nginx-light` for the side-by-side figures",
    );
  // the process whose CPU time per request is reported for each target (the proxy's own cost)
  const targets: [string, string, number | undefined][] = [
    ["direct", `http://127.0.0.1:${upPort}/v1/completions`, up.pid],
    ["router", `http://127.0.0.1:${routerPort}/v1/completions`, router.pid],
  ];
  if (stopNginx) targets.push(["nginx", `http://127.0.0.1:${nginxPort}/v1/completions`, nginx?.pid]);
  targets.push(["floor", `http://127.0.0.1:${floorPort}/v1/completions`, floor.pid]);
  // Content-Length framing only: tiny requests, not streams
  const tinyOnly = new Set(["raw", "raw-min"]);
  targets.push(["raw", `http://127.0.0.1:${rawPort}/v1/completions`, raw.pid]);
  targets.push(["raw-min", `http://127.0.0.1:${rawMinPort}/v1/completions`, rawMin.pid]);
  const f = (x: number) => x.toFixed(2).padStart(8);
  console.log(
    `duration ${duration}s per cell; router policy ${policy || "(default)"}, workers ${workers || "(default)"}; load ${loadavg()[0]!.toFixed(2)}; latencies in ms; added = target − direct`,
  );
  console.log(
    "workload      conc  target     rps        p50      p99   added p50  added p99  errors  cpu µs/req",
  );
  try {
    for (const stream of [false, true]) {
      for (const c of conc) {
        if (stream && c > 64) continue;
        const res: Record<string, Result> = {};
        for (const [name, url, pid] of targets) {
          if (stream && tinyOnly.has(name)) continue;
          const cpu0 = cpuMs(pid);
          res[name] = await measure(url, c, duration, stream);
          const cpu1 = cpuMs(pid);
          const r = res[name]!;
          // includes the warm-up round (one request per connection), so slightly high at c = 512
          const perReq =
            cpu0 !== undefined && cpu1 !== undefined ? (((cpu1 - cpu0) * 1000) / (r.n + c)).toFixed(0) : "-";
          const d = res.direct!;
          console.log(
            `${(stream ? "stream-256" : "tiny").padEnd(12)} ${String(c).padStart(5)}  ${name.padEnd(7)} ${r.rps.toFixed(0).padStart(7)} ${f(r.p50)} ${f(r.p99)} ${name === "direct" ? "         -          -" : `${f(r.p50 - d.p50)}   ${f(r.p99 - d.p99)}`}  ${String(r.errors).padStart(6)}  ${perReq.padStart(10)}`,
          );
        }
        if (res.nginx && res.router) {
          const d = res.direct!;
          console.log(
            `  router/nginx: throughput ${(res.router.rps / res.nginx.rps).toFixed(2)}x, added p50 ${((res.router.p50 - d.p50) / Math.max(1e-3, res.nginx.p50 - d.p50)).toFixed(2)}x, added p99 ${((res.router.p99 - d.p99) / Math.max(1e-3, res.nginx.p99 - d.p99)).toFixed(2)}x`,
          );
          for (const floorName of ["floor", "raw", "raw-min"]) {
            const fl = res[floorName];
            if (fl)
              console.log(
                `  ${`${floorName}/nginx:`.padEnd(14)}throughput ${(fl.rps / res.nginx.rps).toFixed(2)}x, added p50 ${((fl.p50 - d.p50) / Math.max(1e-3, res.nginx.p50 - d.p50)).toFixed(2)}x, added p99 ${((fl.p99 - d.p99) / Math.max(1e-3, res.nginx.p99 - d.p99)).toFixed(2)}x`,
              );
          }
        }
      }
    }
  } finally {
    stopNginx?.();
    floor.kill("SIGTERM");
    raw.kill("SIGTERM");
    rawMin.kill("SIGTERM");
    router.kill("SIGTERM");
    up.kill("SIGTERM");
  }
}

const fail = (err: unknown) => {
  console.error(err);
  process.exit(1);
};
if (role === "client") {
  void client(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), process.argv[6] === "true");
} else if (role === "rate-client") {
  const atRate = (await import(`./overhead-at-rate${ext}`)) as typeof import("./overhead-at-rate.js");
  void atRate
    .client(JSON.parse(process.argv[3]!) as Parameters<typeof atRate.client>[0])
    .then((r) => process.stdout.write(JSON.stringify(r) + "\n"))
    .catch(fail);
} else if (process.argv.includes("--floors")) void mainBench().catch(fail);
else {
  const atRate = (await import(`./overhead-at-rate${ext}`)) as typeof import("./overhead-at-rate.js");
  void atRate.main(process.argv.slice(2)).catch(fail);
}
