// Hostile clients against the live router, on raw sockets: oversized headers (431), slowloris on the
// headers (408 / closed at headersTimeout), a stalled body (408 at bodyIdleTimeout), a trickled body
// (closed at requestTimeout), malformed HTTP (400), response splitting via X-Request-Id, the
// connection cap (dropped, counted, logged), deep JSON. The router serves normally afterwards.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { routerFor, waitUntil } from "../helpers/router.js";

const MODEL = "fake/model-a";
const BODY = JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 });

interface RawResult {
  text: string;
  closedAfterMs: number;
  /** how many of the parts were written before the router closed the socket */
  sent: number;
}

/**
 * Writes `parts` (each after its delay) and collects everything until the router closes the socket;
 * `maxMs` is a hang guard.
 */
function raw(
  port: number,
  parts: Array<[delayMs: number, data: string | Buffer]>,
  maxMs = 60_000,
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect(port, "127.0.0.1");
    const t0 = performance.now();
    let text = "";
    let sent = 0;
    const timers: NodeJS.Timeout[] = [];
    const giveUp = setTimeout(() => {
      s.destroy();
      reject(new Error(`the router kept the connection open for ${maxMs} ms; got: ${text.slice(0, 200)}`));
    }, maxMs);
    s.on("data", (b: Buffer) => (text += b.toString("latin1")));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(giveUp);
      for (const t of timers) clearTimeout(t);
      resolve({ text, closedAfterMs: performance.now() - t0, sent });
    });
    s.on("connect", () => {
      let at = 0;
      for (const [delay, data] of parts) {
        at += delay;
        timers.push(
          setTimeout(() => {
            if (s.destroyed) return;
            s.write(data);
            sent++;
          }, at),
        );
      }
    });
  });
}

const status = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

test("header, slowloris, body and parser limits: each answered and closed in time", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], {
    limits: {
      maxHeaderBytes: 4096,
      headersTimeout: 1_000,
      requestTimeout: 2_000,
      bodyIdleTimeout: 500,
      maxBodyBytes: 4096,
    },
  });
  const port = Number(new URL(r.url).port);
  try {
    // headers over maxHeaderBytes
    const big = await raw(port, [
      [0, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(6000)}\r\n\r\n`],
    ]);
    assert.equal(status(big.text), 431);

    // slowloris on the headers: a byte every 200 ms for 20 s never completes them; the router closes the
    // connection while the client is still sending, and not before headersTimeout (a lower bound: a busy
    // machine can delay the close, never advance it)
    const slowParts: Array<[number, string]> = [[0, "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"]];
    for (let i = 0; i < 100; i++) slowParts.push([200, "X"]);
    const slow = await raw(port, slowParts);
    assert.ok(slow.sent < slowParts.length, `slow headers closed after ${slow.closedAfterMs.toFixed(0)} ms`);
    assert.ok(slow.closedAfterMs >= 900, "not before headersTimeout");
    assert.ok(slow.text === "" || status(slow.text) === 408, slow.text.slice(0, 80));

    // a body that stops: 408 after bodyIdleTimeout, connection closed
    const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
    const stalled = await raw(port, [
      [0, head],
      [50, '{"model":'],
    ]);
    assert.equal(status(stalled.text), 408);
    assert.match(stalled.text, /"type":"BadRequestError"/);
    assert.ok(stalled.closedAfterMs >= 450, "not before bodyIdleTimeout");

    // a body trickled a byte every 150 ms for 13.5 s (short of its length) is never idle but exceeds
    // requestTimeout: closed while the client is still sending, not before requestTimeout
    const trickle: Array<[number, string]> = [[0, head]];
    for (let i = 0; i < 90; i++) trickle.push([150, " "]);
    const trickled = await raw(port, trickle);
    assert.ok(
      trickled.sent < trickle.length,
      `trickled body closed after ${trickled.closedAfterMs.toFixed(0)} ms`,
    );
    assert.ok(trickled.closedAfterMs >= 1_900, "not before requestTimeout");

    // malformed HTTP
    for (const bad of [
      "GARBAGE\r\n\r\n",
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
      "GET /health HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
    ]) {
      const res = await raw(port, [[0, bad]]);
      assert.equal(status(res.text), 400, JSON.stringify(bad));
    }

    // JSON nesting beyond the limit and a body over maxBodyBytes
    const deep = "[".repeat(100) + "]".repeat(100);
    const d = await raw(port, [
      [
        0,
        `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${deep.length}\r\nConnection: close\r\n\r\n${deep}`,
      ],
    ]);
    assert.equal(status(d.text), 400);
    assert.match(d.text, /nesting deeper than/);
    const huge = `{"model":"${MODEL}","prompt":"${"p".repeat(5000)}"}`;
    const h = await raw(port, [
      [
        0,
        `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${huge.length}\r\nConnection: close\r\n\r\n${huge}`,
      ],
    ]);
    assert.equal(status(h.text), 413);

    // still serving
    const ok = await fetch(`${r.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 }),
    });
    assert.equal(ok.status, 200);
  } finally {
    await r.close(500);
    await eng.close();
  }
});

test("no response splitting: an unsafe X-Request-Id is replaced, header injection stays a separate header", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url]);
  const port = Number(new URL(r.url).port);
  try {
    const body = JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 1 });
    const req = (id: Buffer) =>
      raw(port, [
        [
          0,
          Buffer.concat([
            Buffer.from(
              `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nX-Request-Id: `,
            ),
            id,
            Buffer.from(`\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
          ]),
        ],
      ]);
    // a latin-1 byte and a space: echoed values must be visible ASCII, so a fresh id is used
    for (const id of [Buffer.from([0x61, 0xe9, 0x62]), Buffer.from("a b"), Buffer.from("x".repeat(300))]) {
      const res = await req(id);
      assert.equal(status(res.text), 200);
      const echoed = /\r\nx-request-id: ([^\r\n]*)\r\n/i.exec(res.text)?.[1];
      assert.match(echoed ?? "", /^[0-9a-f-]{36}$/, `replaced by a UUID, got ${echoed}`);
    }
    const safe = await req(Buffer.from("trace-42.a:b"));
    assert.match(safe.text, /\r\nx-request-id: trace-42\.a:b\r\n/i, "a safe id is echoed as is");
    // an attempt to inject a header is just another request header: never reflected
    const inj = await req(Buffer.from("abc\r\nSet-Cookie: evil=1"));
    assert.ok(!/set-cookie/i.test(inj.text.split("\r\n\r\n")[0]!));
  } finally {
    await r.close(500);
    await eng.close();
  }
});

test("connection cap: with every open connection mid-request, one beyond limits.maxConnections is refused and counted; the rest keep working", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], { limits: { maxConnections: 4 } });
  const port = Number(new URL(r.url).port);
  const held: Socket[] = [];
  // headers of a request whose body has not come yet: the request is in progress
  const started = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n`;
  try {
    for (let i = 0; i < 4; i++) {
      const s = connect(port, "127.0.0.1");
      await new Promise((res) => s.once("connect", res));
      s.write(started);
      held.push(s);
    }
    await waitUntil(() => r.router.connections.busy === 4, 30_000, "four requests in progress");
    const dropped = await raw(port, [[0, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"]]);
    assert.equal(dropped.text, "", "the fifth connection is closed without an answer");
    assert.equal(r.router.metrics.connectionsDropped.child().value >= 1, true);
    assert.equal(r.router.metrics.connectionsReclaimed.child().value, 0, "no request in progress was cut");
    // an already open connection still works: its request completes
    const s = held[0]!;
    const answer = await new Promise<string>((resolve) => {
      s.once("data", (b: Buffer) => resolve(b.toString("latin1")));
      s.write(BODY);
    });
    assert.equal(status(answer), 200);
    for (const h of held) h.destroy();
    held.length = 0;
    await waitUntil(() => r.router.connections.count === 0, 30_000, "the held connections to close");
    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    assert.match(metrics, /switchyard_connections_dropped_total [1-9]/);
  } finally {
    for (const h of held) h.destroy();
    await r.close(500);
    await eng.close();
  }
});
