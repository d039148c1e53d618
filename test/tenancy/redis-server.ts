// Starts a throwaway redis-server on a free loopback port (no persistence). Under `npm test` or CI a
// missing binary is a failure (npm test installs it); a file run on its own skips the Redis tests.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { freePort } from "../../bench/support/cli.js";
import { missingTool } from "../deploy/tools.js";

export function redisAvailable(): boolean {
  const r = spawnSync("redis-server", ["--version"], { stdio: "ignore" });
  return r.status === 0;
}

/** Skip reason for node:test, or false to run; throws where tools are required and redis-server is missing. */
export function redisSkip(): string | false {
  if (redisAvailable()) return false;
  return missingTool("redis-server not installed");
}

export interface RedisProc {
  url: string;
  port: number;
  child: ChildProcess;
  stop: () => Promise<void>;
}

/** `args`: more server options (`--requirepass`, an ACL), appended to the defaults */
export async function startRedis(port?: number, args: readonly string[] = []): Promise<RedisProc> {
  const p = port ?? (await freePort());
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(p),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "yes",
      ...args,
    ],
    { stdio: "ignore" },
  );
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: p }, () => {
        s.write("PING\r\n");
      });
      s.once("data", (d) => {
        s.destroy();
        // a server with a password answers NOAUTH: up all the same
        resolve(d.toString().startsWith("+PONG") || d.toString().startsWith("-NOAUTH"));
      });
      s.once("error", () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill("SIGKILL");
      throw new Error(`redis-server did not start on port ${p}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
