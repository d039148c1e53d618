// The floor proxy that router/vs-peers measures beside the router (bench/router/node-floor-proxy.ts):
// it relays an engine's answer as the engine gave it, and with WORK_US it spends at least that long on
// each request before the engine sees it (a lower bound, which a busy machine cannot break).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { freePort, waitForHttp } from "../../bench/support/cli.js";

const script = fileURLToPath(new URL("../../bench/router/node-floor-proxy.js", import.meta.url));

async function withFloor(workUs: number, run: (url: string, seen: number[]) => Promise<void>): Promise<void> {
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
  const floor = spawn(process.execPath, [script, String(port), String(upstream), "1", "1", String(workUs)], {
    stdio: "ignore",
  });
  try {
    await waitForHttp(`http://127.0.0.1:${port}/health`);
    await run(`http://127.0.0.1:${port}/v1/completions`, seen);
  } finally {
    floor.kill("SIGTERM");
    engine.close();
    engine.closeAllConnections();
  }
}

test("the floor proxy relays the engine's status, headers and body as the engine sent them", async () => {
  await withFloor(0, async (url) => {
    const r = await fetch(url, {
      method: "POST",
      body: '{"model":"m"}',
      headers: { "content-type": "application/json" },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-engine"), "one");
    assert.deepEqual(await r.json(), { ok: true });
  });
});

test("the floor proxy with WORK_US spends at least that long on a request before its engine sees it", async () => {
  const workUs = 30_000;
  await withFloor(workUs, async (url, seen) => {
    const sent = performance.now();
    const r = await fetch(url, {
      method: "POST",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    // the engine's clock and ours are one process's performance.now()
    assert.ok(
      seen.at(-1)! - sent >= workUs / 1000,
      `engine saw it ${seen.at(-1)! - sent} ms after it was sent`,
    );
  });
});
