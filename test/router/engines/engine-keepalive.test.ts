// The router lets go of an idle connection to an engine before the engine would: vLLM's API server
// (uvicorn) closes a connection idle for 5 s without saying so in a Keep-Alive header, and a request
// sent on one as it closes fails with "other side closed" against an engine that is fine
// (src/router/engines/engine-record.ts). When it happens anyway, the request goes to that engine again
// on another connection (src/router/dataplane/attempt.ts, `sendAgain`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { ENGINE_IDLE_KEEPALIVE_MS } from "../../../src/router/engines/engine-record.js";
import { startRouter } from "../../../src/router/index.js";

const MODELS = JSON.stringify({ object: "list", data: [{ id: "fake/m", object: "model" }] });
const ANSWER = JSON.stringify({
  id: "cmpl-1",
  object: "text_completion",
  model: "fake/m",
  choices: [{ index: 0, text: "ok", finish_reason: "length" }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});

/** A round-robin router in front of `server`, listening here, once the engine is in rotation. */
async function routerInFront(server: Server | NetServer) {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const r = await startRouter({
    host: "127.0.0.1",
    port: 0,
    backends: [`http://127.0.0.1:${port}`],
    policy: "round-robin",
  });
  try {
    // its probes answered
    for (let waited = 0; (await fetch(`${r.url}/ready`)).status !== 200; waited += 50) {
      assert.ok(waited < 10_000, "the engine never came into rotation");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return r;
  } catch (err) {
    await r.close(0);
    throw err;
  }
}

test("an idle connection to an engine is closed by the router well before the engines' 5 s", () => {
  // undici's idle timer is a plain Node timer, which a busy loop fires late: 2 s of room for that
  assert.ok(ENGINE_IDLE_KEEPALIVE_MS + 1500 <= 5000, `${ENGINE_IDLE_KEEPALIVE_MS} ms`);
});

test("the router, not the engine, ends the connections its requests left idle", async () => {
  /** each connection that carried a completion: when the router ended it */
  const carried = new Map<Socket, { endedByRouter?: number }>();
  /** when each connection's last answer went, whatever it answered (probes reuse connections too) */
  const lastAnswer = new Map<Socket, number>();
  const server: Server = createServer((req, res) => {
    const sock = req.socket;
    if (req.url === "/v1/completions") {
      req.resume();
      // the answers overlap, so the router opens a connection for each
      setTimeout(() => {
        res.setHeader("content-type", "application/json");
        res.end(ANSWER, () => {
          lastAnswer.set(sock, performance.now());
          if (!carried.has(sock)) carried.set(sock, {});
        });
      }, 100);
      return;
    }
    res.setHeader("content-type", "application/json");
    res.end(req.url === "/v1/models" ? MODELS : req.url === "/metrics" ? "" : "{}", () =>
      lastAnswer.set(sock, performance.now()),
    );
  });
  // as vLLM's API server (uvicorn) answers: no Keep-Alive hint, so the router's own idle time applies
  // (a Node server's "Keep-Alive: timeout=5" would set it); and this one never closes first, so a
  // connection that ends here was ended by the router
  server.keepAliveTimeout = 0;
  server.on("connection", (sock: Socket) =>
    sock.on("end", () => {
      const c = carried.get(sock);
      if (c) c.endedByRouter = performance.now();
    }),
  );
  const r = await routerInFront(server);
  try {
    const send = () =>
      fetch(`${r.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "fake/m", prompt: "hi", max_tokens: 1 }),
      }).then((res) => res.status);
    assert.deepEqual(await Promise.all([send(), send(), send(), send()]), [200, 200, 200, 200]);
    assert.ok(carried.size >= 3, `${carried.size} connections carried the answers`);
    // the health probes (/health and /metrics at once) may keep two of them in use; the rest go idle
    // and must be ended by the router
    const ended = () => [...carried.values()].filter((c) => c.endedByRouter !== undefined);
    for (let waited = 0; ended().length < carried.size - 2; waited += 100) {
      assert.ok(waited < 15_000, `the router ended ${ended().length} of ${carried.size} idle connections`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // not at once: each connection was kept for the next request a while after its last answer (less a
    // second of slack: the two ends see an answer finish at slightly different times)
    for (const [sock, c] of carried) {
      if (c.endedByRouter === undefined) continue;
      const idle = c.endedByRouter - lastAnswer.get(sock)!;
      assert.ok(idle >= ENGINE_IDLE_KEEPALIVE_MS - 1000, `ended ${idle} ms after its last answer`);
    }
  } finally {
    await r.close(0);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/**
 * An engine that closes a connection which carried a completion before when another comes on it,
 * without answering (the race of an idle close with a request going out, every time; the router's
 * probes may share connections, which this engine does not count): with a FIN, or `how` "reset" with
 * an RST as a kernel does when data comes after the server closed. `freshToo`: it also closes every
 * other connection under each completion after its first.
 */
async function closingEngine(freshToo: boolean, how: "end" | "reset" = "end") {
  let completions = 0;
  let closedUnder = 0;
  const server = createNetServer((sock) => {
    let carried = 0;
    let buf = "";
    sock.on("error", () => {});
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.slice(0, end);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        buf = buf.slice(end + 4 + len);
        const path = head.split(" ")[1] ?? "";
        if (path === "/v1/completions" && (carried > 0 || (freshToo && completions > 0))) {
          completions++;
          closedUnder++;
          if (how === "end") sock.end();
          else sock.resetAndDestroy();
          return;
        }
        if (path === "/v1/completions") {
          completions++;
          carried++;
        }
        const body = path === "/v1/models" ? MODELS : path === "/v1/completions" ? ANSWER : "";
        const type = path === "/metrics" ? "text/plain" : "application/json";
        sock.write(
          `HTTP/1.1 200 OK\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      }
    });
  });
  const r = await routerInFront(server);
  const send = async () => {
    const res = await fetch(`${r.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "fake/m", prompt: "hi", max_tokens: 1 }),
    });
    return { status: res.status, body: await res.text() };
  };
  const sentAgain = async () => {
    const text = await (await fetch(`${r.url}/metrics`)).text();
    const line = text
      .split("\n")
      .find((l) => l.startsWith("switchyard_retries_total{") && l.includes("closed the connection under"));
    return line === undefined ? 0 : Number(line.split(" ").at(-1));
  };
  const close = async () => {
    await r.close(0);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { r, send, sentAgain, close, counts: () => ({ completions, closedUnder }) };
}

test("a request whose kept-alive connection the engine closes under it is answered by that engine", async () => {
  const e = await closingEngine(false);
  try {
    // one engine: before, each request after the first was a 502 and counted against it
    for (let i = 0; i < 4; i++) {
      const { status, body } = await e.send();
      assert.equal(status, 200, body);
      assert.equal(JSON.parse(body).choices[0].text, "ok");
    }
    const { completions, closedUnder } = e.counts();
    assert.ok(closedUnder >= 1, "no connection was closed under a request");
    assert.equal(completions, 4 + closedUnder, "each request closed under was sent again once");
    assert.equal(await e.sentAgain(), closedUnder);
    assert.equal((await fetch(`${e.r.url}/ready`)).status, 200, "the engine left rotation");
  } finally {
    await e.close();
  }
});

test("a request whose connection the engine resets under it is answered by that engine", async () => {
  const e = await closingEngine(false, "reset");
  try {
    for (let i = 0; i < 4; i++) assert.equal((await e.send()).status, 200);
    const { completions, closedUnder } = e.counts();
    assert.ok(closedUnder >= 1, "no connection was reset under a request");
    assert.equal(completions, 4 + closedUnder);
    assert.equal(await e.sentAgain(), closedUnder);
  } finally {
    await e.close();
  }
});

test("a request is sent again only once, and a fresh connection closed under it is the engine's failure", async () => {
  const e = await closingEngine(true);
  try {
    assert.equal((await e.send()).status, 200);
    const { status, body } = await e.send();
    assert.equal(status, 502, body);
    // the second request: closed under on a used connection, sent again, closed under again
    assert.deepEqual(e.counts(), { completions: 3, closedUnder: 2 });
    assert.equal(await e.sentAgain(), 1);
  } finally {
    await e.close();
  }
});
