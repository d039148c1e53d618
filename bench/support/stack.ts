// `switchyard up` as the containment benchmarks start it: the whole stack in child processes on free
// ports, the router's process found for RSS, its /metrics read as numbers, and a clean stop.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { upArgs } from "./cli.js";
import { waitHttp } from "./router-harness.js";

const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const main = fileURLToPath(new URL(`../../src/cli/main${ext}`, import.meta.url));

export interface Stack {
  url: string;
  up: ChildProcess;
  /** the router's process id (for RSS), found by its port */
  routerPid: number | undefined;
  stop(): Promise<void>;
}

/** Starts `switchyard up --engines n` plus `args`, and waits until the router is ready. */
export async function startStack(n: number, args: string[]): Promise<Stack> {
  const stackArgs = await upArgs(n, args);
  const port = stackArgs.port;
  const up = spawn(
    process.execPath,
    [...process.execArgv, main, ...stackArgs.args],
    // its own process group, so the stop below reaches the stack and not this process
    {
      stdio: ["ignore", "ignore", "inherit"],
      detached: true,
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" },
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/ready`).catch(async () => {
    // engines take longer to start on a loaded box: one more wait
    await waitHttp(`${url}/ready`);
  });
  return {
    url,
    up,
    routerPid: findPid(String(port)),
    stop: async () => {
      if (up.exitCode !== null) return;
      const exited = new Promise<void>((r) => up.once("exit", () => r()));
      up.kill("SIGTERM");
      const t = setTimeout(() => up.kill("SIGKILL"), 60_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The pid of the `switchyard router` listening on `port` (its command line says so). */
function findPid(port: string): number | undefined {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      const i = argv.indexOf("--port");
      if (argv.includes("router") && i >= 0 && argv[i + 1] === port) return Number(name);
    } catch {
      // gone
    }
  }
  return undefined;
}

export function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Sum of every sample of a metric family on a Prometheus page (0 when absent). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, "gm");
  for (const m of text.matchAll(re)) sum += Number(m[1]);
  return sum;
}

export async function metrics(url: string): Promise<string> {
  const r = await fetch(`${url}/metrics`);
  return r.text();
}

/** CPU ms (user + system) a process and its direct children have used so far; Linux /proc only. */
export function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const one = (p: string): number => {
    const f = readFileSync(`/proc/${p}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100; // utime, stime in 100 Hz ticks
  };
  try {
    let total = one(String(pid));
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)) {
      if (c) total += one(c);
    }
    return total;
  } catch {
    return undefined;
  }
}
