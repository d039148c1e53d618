// Starting the real `switchyard` binary and waiting for it, for tests and benchmarks alike (kept with
// the benchmarks so that no benchmark imports the tests). Callers bind port 0 or ask freePort() so
// that files can run side by side; every child is killed when its caller ends.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, statSync, unlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = import.meta.url;
const fromSource = here.endsWith(".ts");

/** Command and leading args that run the CLI: compiled JS after `npm run build`, or TS under tsx. */
export function cliCommand(): { cmd: string; args: string[] } {
  if (fromSource) {
    return {
      cmd: process.execPath,
      args: ["--import", "tsx", fileURLToPath(new URL("../../src/cli/main.ts", here))],
    };
  }
  return { cmd: process.execPath, args: [fileURLToPath(new URL("../../src/cli/main.js", here))] };
}

export interface Spawned {
  child: ChildProcess;
  output: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export function spawnCli(args: string[], env: Record<string, string> = {}): Spawned {
  const { cmd, args: pre } = cliCommand();
  const child = spawn(cmd, [...pre, ...args], {
    env: { ...process.env, SWITCHYARD_LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (b: Buffer) => {
    out += b.toString("utf8");
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    output: () => out,
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      // a hang guard: a clean shutdown of a stack of processes can take seconds on a busy machine
      const t = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/**
 * The least time a test waits for something before calling it stuck. Waits in tests are hang guards,
 * never timings: a machine whose every core is busy can take many times what an idle one does, and a
 * wait that ends as soon as its condition holds costs nothing when the condition comes quickly.
 */
export const HANG_GUARD_MS = 30_000;

/** A deadline `timeoutMs` from now, but never sooner than HANG_GUARD_MS. */
export function hangGuardDeadline(timeoutMs: number): number {
  return Date.now() + Math.max(timeoutMs, HANG_GUARD_MS); // timing-ok: a hang guard, polled
}

/**
 * A port for a process to listen on later (a child we spawn, a server restarted on the same port, or
 * one where nothing must listen). Taken from below Linux's ephemeral range, like freePortBlock: a port
 * the kernel hands out for port 0 could go to another process's outgoing connection or listener in the
 * seconds a loaded machine takes to start the child.
 */
export async function freePort(): Promise<number> {
  return freePortBlock([0]);
}
/**
 * Polls an HTTP URL until it answers with the wanted status (default 200) or the timeout passes. Given the
 * process that should answer, it fails at once if that process exits, and says what it printed.
 */
export async function waitForHttp(
  url: string,
  timeoutMs = 20_000,
  status = 200,
  proc?: Spawned,
): Promise<void> {
  const deadline = hangGuardDeadline(timeoutMs);
  let last = "";
  const said = () => (proc ? `\n--- its output ---\n${proc.output().slice(-4000)}` : "");
  while (Date.now() < deadline) {
    if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      throw new Error(
        `the process for ${url} exited (${proc.child.exitCode ?? proc.child.signalCode})${said()}`,
      );
    }
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status === status) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${url}: ${last}${said()}`);
}

/** n distinct free ports (see freePort). */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  return ports;
}

/** ports freePortBlock gave this process, oldest first (a long test run forgets the oldest) */
const handedOut = new Set<number>();
const HANDED_OUT_CAP = 1024;

/**
 * Where processes running side by side (test files, a benchmark beside them) claim the ports they were
 * handed: one empty file per port, made with O_EXCL, so two processes never take the same port in the
 * seconds between its check and its bind. A claim older than CLAIM_MS is taken as left behind.
 */
const CLAIMS = join(tmpdir(), `switchyard-ports-${process.getuid?.() ?? "user"}`);
const CLAIM_MS = 10 * 60_000;

/** whether this process now holds `port`'s claim */
function claim(port: number): boolean {
  const file = join(CLAIMS, String(port));
  for (let tries = 0; tries < 2; tries++) {
    try {
      closeSync(openSync(file, "wx"));
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      try {
        if (code === "ENOENT") mkdirSync(CLAIMS, { recursive: true });
        else if (code !== "EEXIST")
          return true; // a folder we cannot write: the in-process set still guards
        else if (Date.now() - statSync(file).mtimeMs < CLAIM_MS)
          return false; // timing-ok: a claim's age
        else unlinkSync(file); // left behind: taken over on the next try
      } catch {
        // no folder to be had: the in-process set still guards; a claim that moved: another's now
        return code === "ENOENT";
      }
    }
  }
  return false;
}

/**
 * A base port with `base + o` free for every offset `o`, checked on all interfaces (the sim's ZMQ
 * sockets bind `*`) and taken from below Linux's ephemeral range (32768–60999), where neither
 * a listener on port 0 nor an outgoing connection's local port can land on it between the check and the bind.
 */
export async function freePortBlock(offsets: readonly number[]): Promise<number> {
  // a port handed out here is free until its user binds it, so a later call, or one running at the
  // same time in this process or another, could hand it out again (a benchmark's sim once failed to
  // start with EADDRINUSE): a block's ports are reserved before they are checked, in this process and
  // by a claim file for the others, and a block that is not taken gives back only this process's hold
  const isFree = (port: number): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once("error", () => resolve(false));
      srv.listen(port, "0.0.0.0", () => srv.close(() => resolve(true)));
    });
  const span = Math.max(0, ...offsets);
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (12_000 - span));
    const ports = offsets.map((o) => base + o);
    if (ports.some((p) => handedOut.has(p))) continue;
    for (const p of ports) handedOut.add(p);
    let ok = true;
    for (const p of ports) if (!(ok = claim(p) && (await isFree(p)))) break;
    if (ok) {
      while (handedOut.size > HANDED_OUT_CAP) handedOut.delete(handedOut.values().next().value!);
      return base;
    }
    for (const p of ports) handedOut.delete(p);
  }
  throw new Error(`no free block of ports at offsets ${offsets.join(", ")} below the ephemeral range`);
}

/**
 * Ports for `switchyard up --engines n`: engine i listens on `engineBase + i`, publishes KV events on
 * `kvBase + i` and serves replay on `kvBase + 1000 + i`.
 */
/**
 * `switchyard up` with `n` engines on free ports: the arguments (after the CLI command) and the router's
 * port. `extra` are more flags (any sim flag goes to every engine).
 */
export async function upArgs(
  n: number,
  extra: string[] = [],
): Promise<{ args: string[]; port: number; engineBase: number }> {
  const port = await freePort();
  const { engineBase, kvBase } = await freeUpPorts(n);
  const args = [
    "up",
    "--engines",
    String(n),
    "--port",
    String(port),
    "--engine-base-port",
    String(engineBase),
  ];
  args.push("--kv-events-base-port", String(kvBase), ...extra);
  return { args, port, engineBase };
}

export async function freeUpPorts(n: number): Promise<{ engineBase: number; kvBase: number }> {
  const offsets: number[] = [];
  for (let i = 0; i < n; i++) offsets.push(i, 100 + i, 1100 + i);
  const engineBase = await freePortBlock(offsets);
  return { engineBase, kvBase: engineBase + 100 };
}
