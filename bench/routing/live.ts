// A live routing stack for the routing benchmarks: N `switchyard sim` engines publishing KV events, the
// router in front of them, and `switchyard bench` against it, as child processes of this one (their
// stderr kept in an output folder). Shared by bench/routing/compare.ts and bench/routing/range-live.ts.
// With `cacheServer` the engines share one `switchyard cache-server` as their LMCache remote (the tiered
// stack of bench/routing/vs-peers.ts --tiered), or one per group of engines (a server per node), and the
// router may subscribe to their KV events.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, freePortBlock } from "../support/cli.js";
import { startBalancer } from "../support/tcp-balancer.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const isTs = import.meta.url.endsWith(".ts");
const main = isTs ? join(here, "../../src/cli/main.ts") : join(here, "../../src/cli/main.js");
const pre = isTs ? ["--import", "tsx", main] : [main];

// children still running when this process is stopped (Ctrl-C, SIGTERM) are stopped with it
const children = new Set<ChildProcess>();
let hooked = false;
function track(c: ChildProcess): void {
  children.add(c);
  c.once("exit", () => children.delete(c));
  if (hooked) return;
  hooked = true;
  const stopAll = () => {
    for (const k of children) k.kill("SIGTERM");
  };
  process.once("exit", stopAll);
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.once(sig, () => {
      stopAll();
      process.exit(130);
    });
}

/** a CLI child; its stderr (warnings, errors) goes to `log` in `outDir` */
export function cli(
  outDir: string,
  args: string[],
  log?: string,
  inherit = false,
  level = "warn",
  env: Record<string, string> = {},
): ChildProcess {
  const c = spawn(process.execPath, [...pre, ...args], {
    stdio: ["ignore", inherit ? "inherit" : "ignore", inherit ? "inherit" : log ? "pipe" : "ignore"],
    env: { ...process.env, ...env, SWITCHYARD_LOG_LEVEL: level, SWITCHYARD_LOG_FORMAT: "json" },
  });
  if (log && c.stderr) c.stderr.pipe(createWriteStream(join(outDir, log)));
  track(c);
  return c;
}

/** a base port with base+i and base+1000+i (i < n) free: the KV-event and replay ports */
export function freeBase(n: number): Promise<number> {
  const offsets: number[] = [];
  for (let i = 0; i < n; i++) offsets.push(i, 1000 + i);
  return freePortBlock(offsets);
}

export async function waitHttp(url: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} not ready`);
}

export async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    c.once("exit", () => resolve());
    c.kill("SIGTERM");
    setTimeout(() => c.kill("SIGKILL"), 5000).unref();
  });
}

/** the sum of a metric's samples on a Prometheus page */
export function metric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(name + "{") || line.startsWith(name + " "))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
  return sum;
}

/**
 * CPU seconds (user + system) a process and its live children (router workers) have used, from /proc
 * (Linux); NaN elsewhere
 */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    let s = (Number(rest[11]) + Number(rest[12])) / 100;
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/))
      if (c) s += cpuSeconds(Number(c)) || 0;
    return s;
  } catch {
    return NaN;
  }
}

export interface StackOptions {
  outDir: string;
  /** a name for the log files */
  tag: string;
  engines: number;
  model: string;
  /** `switchyard sim` flags besides the model, host, port and KV events (GPU, memory, time scale) */
  simArgs: string[];
  policy: string;
  /** router flags besides host, port, policy, backends and KV events */
  routerArgs?: string[];
  routerLogLevel?: string;
  /** the router's --workers (default 1: one process) */
  routerWorkers?: number;
  /** router replicas that exchange load and picks (peers), behind one balancer port (default 1) */
  replicas?: number;
  /** start no router: the caller puts another one (a peer) in front of the engines */
  noRouter?: boolean;
  /** one cache server every engine uses as its LMCache remote (the engines run LMCache), or one per group */
  cacheServer?: SharedTier;
}

/** A cache server shared by the engines, and whether the router is told what it holds. */
export interface SharedTier {
  /** Gbit/s of each engine's link to it: the sims load at this rate, the router prices loads by it */
  bandwidthGbps: number;
  /** the router subscribes to its KV events (tier-aware); false: it routes as if the tier were not there */
  routerSeesIt: boolean;
  /** a server per this many engines, in engine order (a server per node); absent: one for all */
  enginesPerServer?: number | undefined;
}

export interface Stack {
  urls: string[];
  /** engine i publishes KV events on kvPort + i, its replay on kvPort + 1000 + i */
  kvPort: number;
  routerUrl: string;
  /** the shared cache server's lm:// URL (with cacheServer) */
  lmUrl?: string;
  sims: ChildProcess[];
  /** the first router (none with noRouter) */
  router: ChildProcess | undefined;
  routers: ChildProcess[];
  close(): Promise<void>;
}

/** Starts the engines (KV events on, with replay), then the router subscribed to them; waits for both. */
export async function startStack(o: StackOptions): Promise<Stack> {
  const kvPort = await freeBase(o.engines);
  const tier = o.cacheServer ? await startSharedTier(o) : undefined;
  const sims: ChildProcess[] = [];
  const urls: string[] = [];
  for (let i = 0; i < o.engines; i++) {
    const port = await freePort();
    urls.push(`http://127.0.0.1:${port}`);
    const kv = JSON.stringify({
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${kvPort + i}`,
      replay_endpoint: `tcp://*:${kvPort + 1000 + i}`,
    });
    sims.push(
      cli(
        o.outDir,
        [
          "sim",
          o.model,
          "--host",
          "127.0.0.1",
          "--port",
          String(port),
          ...o.simArgs,
          ...(tier?.simArgs ?? []),
          "--kv-events-config",
          kv,
        ],
        `${o.tag}-sim${i}.log`,
        false,
        "warn",
        tier?.simEnv(i),
      ),
    );
  }
  const died = new Promise<never>((_, reject) =>
    sims.forEach((c, i) =>
      c.once("exit", (code) => reject(new Error(`sim ${i} exited (${code}); see ${o.tag}-sim${i}.log`))),
    ),
  );
  died.catch(() => undefined);
  await Promise.race([Promise.all(urls.map((u) => waitHttp(`${u}/health`))), died]);
  if (o.noRouter)
    return {
      urls,
      kvPort,
      routerUrl: "",
      sims,
      router: undefined,
      routers: [],
      ...(tier ? { lmUrl: tier.lmUrl } : {}),
      async close() {
        for (const p of sims) await stop(p);
        for (const p of tier?.servers ?? []) await stop(p);
      },
    };
  // a starved host (other work on its cores) delays the sims' health answers: patient probes, so that
  // a slow answer is not taken for a dead engine (the benchmark measures routing, not ejection)
  const config = join(o.outDir, `${o.tag}-router.yaml`);
  writeFileSync(config, "health: { timeout: 10s, failuresToEject: 10 }\n" + (tier?.routerConfig(urls) ?? ""));
  // one router, or replicas that tell each other their load and picks, behind one balancer port
  const replicas = o.replicas ?? 1;
  const rports: number[] = [];
  const peerPorts: number[] = [];
  for (let i = 0; i < replicas; i++) rports.push(await freePort());
  if (replicas > 1) for (let i = 0; i < replicas; i++) peerPorts.push(await freePort());
  const routers: ChildProcess[] = [];
  for (let i = 0; i < replicas; i++) {
    const rargs = ["router", "--config", config, "--host", "127.0.0.1", "--port", String(rports[i])];
    rargs.push("--policy", o.policy, "--workers", String(o.routerWorkers ?? 1));
    for (const u of urls) rargs.push("--backend", u);
    rargs.push(
      "--kv-events-port",
      String(kvPort),
      "--kv-events-replay-port",
      String(kvPort + 1000),
      "--kv-events-by-index",
      ...(tier?.routerArgs ?? []),
      ...(o.routerArgs ?? []),
    );
    if (replicas > 1) {
      rargs.push("--peers-bind", `tcp://127.0.0.1:${peerPorts[i]}`);
      peerPorts.forEach((p, j) => j !== i && rargs.push("--peer", `tcp://127.0.0.1:${p}`));
    }
    const log = `${o.tag}-router${replicas > 1 ? i : ""}.log`;
    routers.push(cli(o.outDir, rargs, log, false, o.routerLogLevel ?? "warn"));
  }
  for (const p of rports) await waitHttp(`http://127.0.0.1:${p}/ready`);
  const balancer =
    replicas > 1 ? await startBalancer(rports.map((port) => ({ host: "127.0.0.1", port }))) : undefined;
  const routerUrl = `http://127.0.0.1:${balancer ? balancer.port : rports[0]}`;
  await new Promise((r) => setTimeout(r, 1500)); // scrapes, subscriptions
  return {
    urls,
    kvPort,
    routerUrl,
    sims,
    router: routers[0]!,
    routers,
    ...(tier ? { lmUrl: tier.lmUrl } : {}),
    async close() {
      await balancer?.close();
      for (const p of [...sims, ...routers, ...(tier?.servers ?? [])]) await stop(p);
    },
  };
}

/**
 * The shared cache servers, started and listening, and what the engines and the router are given for
 * them: as `switchyard up --cache-server` wires one (src/cli/up-cache-server.ts). With one server the
 * router is told of it by flags; with several, by `routing.cacheServers` in its config file, each server
 * naming its engines.
 */
async function startSharedTier(o: StackOptions): Promise<{
  servers: ChildProcess[];
  lmUrl: string;
  simArgs: string[];
  simEnv: (engine: number) => Record<string, string>;
  routerArgs: string[];
  routerConfig: (engineUrls: readonly string[]) => string;
}> {
  const t = o.cacheServer!;
  const per = t.enginesPerServer ?? o.engines;
  const count = Math.ceil(o.engines / per);
  const started: { server: ChildProcess; lmUrl: string; eventsPort: number }[] = [];
  for (let k = 0; k < count; k++)
    started.push(
      await startCacheServer(o.outDir, count > 1 ? `${o.tag}-cache-server${k}` : `${o.tag}-cache-server`),
    );
  const only = count === 1 && t.routerSeesIt;
  return {
    servers: started.map((x) => x.server),
    lmUrl: started[0]!.lmUrl,
    simArgs: [
      "--kv-offloading-backend",
      "lmcache",
      "--lmcache-remote-bandwidth",
      String(t.bandwidthGbps / 8),
    ],
    simEnv: (i) => ({
      LMCACHE_REMOTE_URL: started[Math.floor(i / per)]!.lmUrl,
      LMCACHE_PRE_CACHING_HASH_ALGORITHM: "sha256_cbor",
    }),
    routerArgs: only
      ? [
          "--cache-server-events",
          `tcp://127.0.0.1:${started[0]!.eventsPort}`,
          "--cache-server-bandwidth-gbps",
          String(t.bandwidthGbps),
        ]
      : [],
    routerConfig: (urls) =>
      count > 1 && t.routerSeesIt
        ? "routing:\n  cacheServers:\n" +
          started
            .map(
              (x, k) =>
                `    - name: node${k}\n      events: tcp://127.0.0.1:${x.eventsPort}\n` +
                `      bandwidthGbps: ${t.bandwidthGbps}\n` +
                `      engines: ${JSON.stringify(urls.slice(k * per, (k + 1) * per))}\n`,
            )
            .join("")
        : "",
  };
}

/** one `switchyard cache-server`, with its KV events, once it listens */
async function startCacheServer(
  outDir: string,
  tag: string,
): Promise<{ server: ChildProcess; lmUrl: string; eventsPort: number }> {
  const port = await freePort();
  const eventsPort = await freePort();
  const server = cli(
    outDir,
    ["cache-server", "--host", "127.0.0.1", "--port", String(port), "--kv-events-port", String(eventsPort)],
    `${tag}.log`,
  );
  const end = Date.now() + 60_000;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`the cache server exited; see ${tag}.log`);
    const up = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > end) throw new Error("the cache server did not listen in time");
    await new Promise((r) => setTimeout(r, 200));
  }
  return { server, lmUrl: `lm://127.0.0.1:${port}`, eventsPort };
}

/** Runs `switchyard bench` with `args` to completion; its JSON result goes to `file`. */
export async function runBench(outDir: string, tag: string, args: string[], file: string): Promise<void> {
  const bench = cli(outDir, ["bench", ...args, "--out", file], `${tag}-bench.log`);
  const code = await new Promise<number | null>((r) => bench.once("exit", r));
  if (code !== 0) throw new Error(`bench exited ${code}; see ${tag}-bench.log in ${outDir}`);
}
