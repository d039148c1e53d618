// Client connections at limits.maxConnections: idle ones give way. Keep-alive connections that each
// send one cheap request now and then, or connections that never send anything, used to hold every
// slot of the cap; a new client then got nothing. Real router, raw sockets over loopback.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { routerFor, waitUntil } from "../../helpers/router.js";

const HEALTH = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/** A client socket that knows whether the router closed it. */
type Held = Socket & { gone: boolean };

/** A keep-alive connection that has been answered once and is now idle. */
async function idleConnection(port: number): Promise<Held> {
  const s = connect(port, "127.0.0.1") as Held;
  s.gone = false;
  s.on("error", () => undefined);
  s.on("close", () => (s.gone = true));
  await new Promise((res) => s.once("connect", res));
  await new Promise<void>((resolve) => {
    s.once("data", () => resolve());
    s.write(HEALTH);
  });
  return s;
}

test("200 idle keep-alive connections at a cap of 200 do not stop a new client: the one idle longest is closed and counted", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], { limits: { maxConnections: 200 } });
  const port = Number(new URL(r.url).port);
  const held: Held[] = [];
  try {
    for (let i = 0; i < 200; i++) held.push(await idleConnection(port));
    assert.equal(r.router.connections.count, 200);
    // a new client, on a new connection, is served
    const res = await fetch(`${r.url}/health`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.ok(r.router.metrics.connectionsReclaimed.child().value >= 1);
    assert.equal(r.router.metrics.connectionsDropped.child().value, 0);
    // the first connection made, idle longest, is the one that gave way
    await waitUntil(() => held[0]!.gone, 30_000, "the oldest idle connection to be closed");
    assert.equal(held.filter((s) => s.gone).length, r.router.metrics.connectionsReclaimed.child().value);
    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    assert.match(metrics, /switchyard_connections_reclaimed_total [1-9]/);
  } finally {
    for (const s of held) s.destroy();
    await r.close(500);
    await eng.close();
  }
});

test("a connection with a request in progress is never the one closed; an idle one is, even if newer", async () => {
  const eng = await startFakeEngine({ tokenDelayMs: 50 });
  const r = await routerFor([eng.url], { limits: { maxConnections: 2 } });
  const port = Number(new URL(r.url).port);
  const busy = connect(port, "127.0.0.1");
  busy.on("error", () => undefined);
  let idle: Held | undefined;
  try {
    await new Promise((res) => busy.once("connect", res));
    // a streamed completion of 40 tokens: in progress for a while
    const body = JSON.stringify({ model: "fake/model-a", prompt: "x", max_tokens: 40, stream: true });
    let streamed = "";
    busy.on("data", (b: Buffer) => (streamed += b.toString("latin1")));
    busy.write(
      `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    await waitUntil(() => r.router.connections.busy === 1, 30_000, "the stream in progress");
    idle = await idleConnection(port);
    const res = await fetch(`${r.url}/health`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    await waitUntil(() => idle!.gone, 30_000, "the idle connection to give way");
    // the stream finishes whole
    await waitUntil(() => streamed.includes("data: [DONE]"), 30_000, "the stream to end");
    assert.equal(r.router.metrics.connectionsReclaimed.child().value, 1);
  } finally {
    busy.destroy();
    idle?.destroy();
    await r.close(500);
    await eng.close();
  }
});

test("a connection that never sends a request is closed after limits.headersTimeout", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], { limits: { headersTimeout: 300 } });
  const port = Number(new URL(r.url).port);
  const s = connect(port, "127.0.0.1");
  s.on("error", () => undefined);
  // whichever timer closes it first, the router's own (closed silently) or Node's headers check (a 408,
  // then closed): the client reads what comes, or a 408 left unread would keep its 'close' from firing
  let answer = "";
  s.on("data", (b: Buffer) => (answer += b.toString("latin1")));
  try {
    let closed = false;
    s.once("close", () => (closed = true));
    await new Promise((res) => s.once("connect", res));
    await waitUntil(() => r.router.connections.count === 1, 30_000, "the connection counted");
    await waitUntil(() => closed, 30_000, "the silent connection to be closed");
    assert.ok(answer === "" || answer.startsWith("HTTP/1.1 408 "), answer.slice(0, 80));
    await waitUntil(() => r.router.connections.count === 0, 30_000, "the connection uncounted");
  } finally {
    s.destroy();
    await r.close(500);
    await eng.close();
  }
});

test("at the cap a client still sending its request's headers is not closed while an idle keep-alive connection can give way", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], { limits: { maxConnections: 2 } });
  const port = Number(new URL(r.url).port);
  // the oldest connection: its headers arrive slowly (the last line still to come)
  const slow = connect(port, "127.0.0.1") as Held;
  slow.gone = false;
  slow.on("error", () => undefined);
  slow.on("close", () => (slow.gone = true));
  let answer = "";
  slow.on("data", (b: Buffer) => (answer += b.toString("latin1")));
  let idle: Held | undefined;
  try {
    await new Promise((res) => slow.once("connect", res));
    slow.write("GET /health HTTP/1.1\r\nHost: x\r\n");
    // newer, answered and idle between requests
    idle = await idleConnection(port);
    const res = await fetch(`${r.url}/health`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    await waitUntil(() => idle!.gone, 30_000, "the idle keep-alive connection to give way");
    assert.equal(slow.gone, false, "the connection sending headers is still open");
    slow.write("\r\n");
    await waitUntil(() => answer.startsWith("HTTP/1.1 200"), 30_000, "the slow request answered");
  } finally {
    slow.destroy();
    idle?.destroy();
    await r.close(500);
    await eng.close();
  }
});
