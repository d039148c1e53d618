// The floor proxy that router/vs-peers measures beside the router (bench/router/node-floor-proxy.ts):
// it relays an engine's answer as the engine gave it; with WORK_US it spends at least that long on each
// request before the engine sees it (a lower bound, which a busy machine cannot break, and long enough
// that a warm request on loopback does not take it without the work); as a process group it answers on
// its workers' sockets, stops when a worker dies, and leaves no worker behind when stopped.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { freePort, waitForHttp } from "../../bench/support/cli.js";

const script = fileURLToPath(new URL("../../bench/router/node-floor-proxy.js", import.meta.url));

/** the pids of a process's children (Linux) */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const exited = (p: ChildProcess): Promise<number | null> =>
  p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once("exit", (code) => r(code)));

async function withFloor(
  args: { workUs?: number; processes?: number; sockets?: number },
  run: (url: string, seen: number[], floor: ChildProcess) => Promise<void>,
): Promise<void> {
  const seen: number[] = [];
  const engine = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      seen.push(performance.now());
      if (req.url === "/health") return res.end();
      res.writeHead(200, { "content-type": "application/json", "x-engine": "one" });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => engine.listen(0, "127.0.0.1", r));
  const port = await freePort();
  const upstream = (engine.address() as AddressInfo).port;
  const argv = [String(port), String(upstream), String(args.processes ?? 1), String(args.sockets ?? 1)];
  const floor = spawn(process.execPath, [script, ...argv, String(args.workUs ?? 0)], { stdio: "ignore" });
  try {
    await waitForHttp(`http://127.0.0.1:${port}/health`);
    await run(`http://127.0.0.1:${port}/v1/completions`, seen, floor);
  } finally {
    floor.kill("SIGTERM");
    await exited(floor);
    engine.close();
    engine.closeAllConnections();
  }
}

const post = (url: string) =>
  fetch(url, { method: "POST", body: '{"model":"m"}', headers: { "content-type": "application/json" } });

test("the floor proxy relays the engine's status, headers and body as the engine sent them", async () => {
  await withFloor({}, async (url) => {
    const r = await post(url);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-engine"), "one");
    assert.deepEqual(await r.json(), { ok: true });
  });
});

test("the floor proxy with WORK_US spends at least that long on a request before its engine sees it", async () => {
  const workUs = 200_000;
  await withFloor({ workUs }, async (url, seen) => {
    // the connection is open and the code warm: only the work stands between the two clocks
    await (await post(url)).arrayBuffer();
    const sent = performance.now();
    const r = await post(url);
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    // the engine's clock and ours are one process's performance.now()
    const waited = seen.at(-1)! - sent;
    assert.ok(waited >= workUs / 1000, `the engine saw it ${waited} ms after it was sent`);
  });
});

test(
  "the floor proxy as a process group answers on its workers' sockets, and stopping it stops them all",
  { timeout: 60_000 },
  async () => {
    let workers: number[] = [];
    await withFloor({ processes: 2, sockets: 2 }, async (url, _seen, floor) => {
      for (let i = 0; i < 8; i++) assert.equal((await post(url)).status, 200);
      workers = childrenOf(floor.pid!);
      assert.equal(workers.length, 2);
    });
    for (let i = 0; i < 50 && workers.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(workers.filter(alive), []);
  },
);

test(
  "the floor proxy's group stops, with an error, when one of its workers dies",
  { timeout: 60_000 },
  async () => {
    await withFloor({ processes: 2, sockets: 2 }, async (_url, _seen, floor) => {
      const [first] = childrenOf(floor.pid!);
      assert.ok(first !== undefined);
      process.kill(first, "SIGKILL");
      assert.equal(await exited(floor), 1);
    });
  },
);
