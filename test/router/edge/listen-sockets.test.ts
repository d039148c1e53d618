// A burst of new connections must not queue behind one accept per event-loop turn: where Node can
// share a port between sockets (reusePort, Node 22.12+ on Linux) and the router is asked to, it
// listens on several, all feeding one HTTP server; elsewhere on one, as before. Sharing must never
// hide a port already in use: a second router on it fails with EADDRINUSE as a plain one would.
// The several-socket paths run where Node supports them (Node 22.12+, the floor, on Linux).
import { test } from "node:test";
import assert from "node:assert/strict";
import { get, request } from "node:http";
import {
  AUTO_LISTEN_SOCKETS,
  autoListenSockets,
  reusePortSupported,
  socketShare,
} from "../../../src/router/edge/accept.js";
import { startRouter } from "../../../src/router/index.js";
import { freePort, waitForHttp } from "../../../bench/support/cli.js";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";

function status(url: string): Promise<number> {
  return new Promise<number>((resolve, reject) =>
    // agent: false: a new connection per request
    get(url, { agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    }).on("error", reject),
  );
}

test("reusePort is used only where Node has it and the kernel spreads connections", () => {
  assert.equal(reusePortSupported("20.20.2", "linux"), false);
  assert.equal(reusePortSupported("22.11.0", "linux"), false);
  assert.equal(reusePortSupported("22.12.0", "linux"), true);
  assert.equal(reusePortSupported("23.0.0", "linux"), false);
  assert.equal(reusePortSupported("23.1.0", "linux"), true);
  assert.equal(reusePortSupported("24.0.0", "linux"), true);
  assert.equal(reusePortSupported("24.0.0", "darwin"), false);
});

test("auto is 64 sockets for the port's group, shared out between the workers listening on it", () => {
  assert.equal(autoListenSockets(1), 64);
  assert.equal(autoListenSockets(2), 32);
  assert.equal(autoListenSockets(3), 22);
  assert.equal(autoListenSockets(100), 1);
  assert.equal(autoListenSockets(0), 64);
});

test("each listening socket's own cap leaves room for the kernel's uneven spread of connections", () => {
  assert.equal(AUTO_LISTEN_SOCKETS, 64);
  // one socket, or no cap: Node's own cap is left as the server has it
  assert.equal(socketShare(0, 64), 0);
  assert.equal(socketShare(32_768, 1), 0);
  // the default cap's backstop (34,816) over 64 sockets: 544 each on average; a hash spreads 34,816
  // connections with a standard deviation of about 23 a socket, so an equal share would refuse some
  const share = socketShare(34_816, 64);
  assert.ok(share >= 544 + 4 * 23 && share < 544 * 1.25, `share ${share}`);
  // small caps still let every socket take a few
  assert.ok(socketShare(100, 64) >= 7);
  // together they still bound the total: the router's own count is the cap, this the backstop
  assert.ok(socketShare(4096, 8) * 8 < 4096 * 1.25);
});

test("a burst of 200 new connections is served whole, on several listening sockets where Node can", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const port = await freePort();
  const r = await startRouter({ host: "127.0.0.1", port, backends: [e.url], limits: { listenSockets: 4 } });
  try {
    assert.equal(r.router.listenSockets, reusePortSupported() ? 4 : 1);
    const answers = await Promise.all(Array.from({ length: 200 }, () => status(`${r.url}/v1/models`)));
    assert.deepEqual(new Set(answers), new Set([200]));
    // a second router on the same port is refused, several sockets or not: it never joins the group
    await assert.rejects(
      startRouter({ host: "127.0.0.1", port, backends: [e.url], limits: { listenSockets: 4 } }),
      /EADDRINUSE/,
    );
  } finally {
    await r.close(1000);
  }
  // every socket let go of the port: a plain listener can bind it again at once
  const again = await startRouter({
    host: "127.0.0.1",
    port,
    backends: [e.url],
    limits: { listenSockets: 1 },
  });
  assert.equal(again.router.listenSockets, 1);
  await again.close(0);
  await e.close();
});

test("an ephemeral port gets one listening socket; an explicit one gets sixty-four by default where Node shares ports", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const a = await startRouter({
    host: "127.0.0.1",
    port: 0,
    backends: [e.url],
    limits: { listenSockets: 4 },
  });
  const b = await startRouter({ host: "127.0.0.1", port: await freePort(), backends: [e.url] });
  try {
    assert.equal(a.router.listenSockets, 1, "port 0 could be one another reuse-port process holds");
    assert.equal(
      b.router.listenSockets,
      reusePortSupported() ? AUTO_LISTEN_SOCKETS : 1,
      "auto: sixty-four where the port can be shared",
    );
  } finally {
    await a.close(0);
    await b.close(0);
    await e.close();
  }
});

/** one streamed completion on a connection of its own: its whole body, or the error that cut it */
function stream(url: string, maxTokens: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const body = JSON.stringify({ model: "fake/m", prompt: "x", max_tokens: maxTokens, stream: true });
    const req = request(
      `${url}/v1/completions`,
      { method: "POST", agent: false, headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve(text));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

test(
  "a drain waits for the streams that every listening socket accepted, not only the server's own",
  { timeout: 60_000 },
  async () => {
    const e = await startFakeEngine({ models: ["fake/m"], tokenDelayMs: 20 });
    const port = await freePort();
    const r = await startRouter({ host: "127.0.0.1", port, backends: [e.url], limits: { listenSockets: 4 } });
    await waitForHttp(`${r.url}/ready`, 30_000);
    // 16 connections of their own: the kernel spreads them over the sockets, most on the extra ones
    const streams = Array.from({ length: 16 }, () => stream(r.url, 20));
    while (e.active < 16) await new Promise((resolve) => setTimeout(resolve, 10));
    await r.close(30_000);
    // close() resolving is what lets a router process exit: every stream must be over by then
    assert.equal(e.active, 0, "close() resolved while the engine was still streaming");
    const bodies = await Promise.all(streams);
    await e.close();
    for (const b of bodies)
      assert.ok(b.trimEnd().endsWith("data: [DONE]"), `a stream was cut: ${b.slice(-80)}`);
  },
);
