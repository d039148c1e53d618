// The processes both router benchmarks start: the fast upstream and a router in front of it, each its own
// process (so the load client's CPU does not mix with theirs), and the wait until each answers HTTP.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Pool } from "undici";

// run from source under tsx (.ts) or compiled under dist/bench (.js): children must use the same form
const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const script = (rel: string) => fileURLToPath(new URL(rel + ext, import.meta.url));

/** The minimal fast engine stand-in of fast-upstream.ts on 127.0.0.1:port. */
export function spawnUpstream(port: number): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, script("./fakes/fast-upstream"), String(port)], {
    stdio: ["ignore", "ignore", "inherit"],
  });
}

/** `switchyard router` on 127.0.0.1:port with one backend; logs at warn so its output costs nothing. */
export function spawnRouter(port: number, upstreamPort: number, extraArgs: string[] = []): ChildProcess {
  const args = ["router", "--host", "127.0.0.1", "--port", String(port)];
  args.push("--backend", `http://127.0.0.1:${upstreamPort}`, ...extraArgs);
  return spawn(process.execPath, [...process.execArgv, script("../../src/cli/main"), ...args], {
    stdio: "ignore",
    env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" },
  });
}

/** Resolves once url answers 2xx; throws after 20 s. */
export async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never came up`);
}

/** The completion both router benchmarks send: one token, or a stream of 256 chunks. */
export function completionBody(stream: boolean): string {
  return JSON.stringify({ model: "bench/m", prompt: "hi", max_tokens: stream ? 256 : 1, stream });
}

/** POSTs `body` as JSON on `pool`, reads the answer to its end, and gives its status. */
export async function postAndDrain(pool: Pool, path: string, body: string): Promise<number> {
  const r = await pool.request({
    path,
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  for await (const _ of r.body) void _;
  return r.statusCode;
}
