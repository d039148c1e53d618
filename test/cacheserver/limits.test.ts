import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { RawConn, clientHeader } from "./raw.js";

async function errorCount(srv: Awaited<ReturnType<typeof startCacheServer>>, kind: string): Promise<number> {
  const m = await srv.metrics.registry.getSingleMetric("switchyard_cache_protocol_errors_total")!.get();
  return m.values.find((v) => v.labels.kind === kind)?.value ?? 0;
}

test("each kind of bad frame closes only its own connection; half-received PUTs never become visible", async () => {
  const srv = await startCacheServer({
    host: "127.0.0.1",
    port: 0,
    maxMemoryBytes: 2 ** 24,
    maxObjectBytes: 2 ** 20,
  });
  try {
    const good = await RawConn.open(srv.port);
    await good.put("keep", Buffer.alloc(5000, 7));
    assert.equal(await good.exist("keep"), true);
    const nonAscii = clientHeader(2, "abc");
    nonAscii[37] = 0xc3;
    const cases: { kind: string; bytes: Buffer[]; end?: boolean }[] = [
      { kind: "unknown_command", bytes: [clientHeader(9, "k")] },
      { kind: "unknown_command", bytes: [clientHeader(0, "k")] },
      { kind: "negative_length", bytes: [clientHeader(1, "k", -5)] },
      { kind: "oversized_length", bytes: [clientHeader(1, "k", 2 ** 20 + 1)] },
      { kind: "empty_key", bytes: [clientHeader(2, "")] },
      { kind: "empty_key", bytes: [clientHeader(1, "   ", 10)] },
      { kind: "bad_key", bytes: [nonAscii] },
      { kind: "bad_key", bytes: [Buffer.concat([clientHeader(3, "a"), Buffer.alloc(0)]).fill(0, 40, 41)] },
      { kind: "truncated_header", bytes: [clientHeader(2, "k").subarray(0, 100)], end: true },
      { kind: "truncated_payload", bytes: [clientHeader(1, "half", 1000), Buffer.alloc(500, 1)], end: true },
    ];
    for (const c of cases) {
      const before = await errorCount(srv, c.kind);
      const bad = await RawConn.open(srv.port);
      for (const b of c.bytes) bad.write(b);
      if (c.end) bad.socket.end();
      await bad.closedP; // the server closed it
      assert.equal(await errorCount(srv, c.kind), before + 1, c.kind);
      // the server and the other connection are unharmed
      assert.deepEqual(await good.get("keep"), Buffer.alloc(5000, 7), `after ${c.kind}`);
    }
    assert.equal(await good.exist("half"), false);
    assert.equal(await good.exist("k"), false);
    // a PUT of exactly the max object size is fine
    await good.put("max", Buffer.alloc(2 ** 20, 3));
    assert.equal(await good.exist("max"), true);
    // lengths on commands without payloads are ignored, as the reference server does
    good.write(clientHeader(5, "", 123));
    assert.equal((await good.reply())[0], 200);
    await good.close();
  } finally {
    await srv.close();
  }
});

test("an idle persistent connection is not dropped and a client that disconnects cleanly is no error", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 20 });
  try {
    const c = await RawConn.open(srv.port);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await c.exist("x"), false);
    assert.equal(srv.connections(), 1);
    await c.close();
    const m = await srv.metrics.registry.getSingleMetric("switchyard_cache_protocol_errors_total")!.get();
    assert.equal(
      m.values.reduce((a, v) => a + v.value, 0),
      0,
    );
  } finally {
    await srv.close();
  }
});

for (const directReads of [true, false]) {
  test(
    `a peer stalled inside a request is closed after the stall timeout; idle between requests is not (directReads ${directReads})`,
    { timeout: 60_000 },
    async () => {
      const srv = await startCacheServer({
        host: "127.0.0.1",
        port: 0,
        maxMemoryBytes: 2 ** 24,
        stallTimeoutMs: 150,
        directReads,
      });
      try {
        const idle = await RawConn.open(srv.port);
        await idle.put("keep", Buffer.alloc(1000, 5));
        const midHeader = await RawConn.open(srv.port);
        midHeader.write(clientHeader(3, "k").subarray(0, 90));
        const midPut = await RawConn.open(srv.port);
        midPut.write(Buffer.concat([clientHeader(1, "half", 100_000), Buffer.alloc(4000, 1)]));
        await Promise.all([midHeader.closedP, midPut.closedP]);
        assert.equal(await errorCount(srv, "stalled_frame"), 2);
        await new Promise((r) => setTimeout(r, 300)); // twice the timeout, idle
        assert.equal(idle.closed, false);
        assert.deepEqual(await idle.get("keep"), Buffer.alloc(1000, 5));
        assert.equal(await idle.exist("half"), false);
        await idle.close();
      } finally {
        await srv.close();
      }
    },
  );
}

test(
  "a peer that sends GETs but never reads the replies is closed once nothing moves for the stall timeout",
  { timeout: 60_000 },
  async () => {
    const srv = await startCacheServer({
      host: "127.0.0.1",
      port: 0,
      maxMemoryBytes: 2 ** 26,
      stallTimeoutMs: 200,
    });
    try {
      const good = await RawConn.open(srv.port);
      await good.put("big", Buffer.alloc(4 << 20, 9));
      assert.equal(await good.exist("big"), true);
      const deaf = connect({ host: "127.0.0.1", port: srv.port });
      deaf.on("error", () => {});
      await new Promise((r) => deaf.once("connect", r));
      deaf.pause(); // reads nothing: replies pile up in the kernel, then in the server
      for (let i = 0; i < 40; i++) deaf.write(clientHeader(2, "big"));
      // a paused socket does not see its close: watch the server's count instead
      for (const deadline = Date.now() + 30_000; (await errorCount(srv, "stalled_reader")) === 0;) {
        assert.ok(Date.now() < deadline, "the deaf peer was never closed"); // timing-ok: a hang guard
        await new Promise((r) => setTimeout(r, 25));
      }
      deaf.destroy();
      assert.deepEqual(await good.get("big"), Buffer.alloc(4 << 20, 9));
      await good.close();
    } finally {
      await srv.close();
    }
  },
);

test(
  "connections beyond maxConnections are closed at accept and counted; a freed slot is used again",
  { timeout: 60_000 },
  async () => {
    const srv = await startCacheServer({
      host: "127.0.0.1",
      port: 0,
      maxMemoryBytes: 2 ** 20,
      maxConnections: 2,
    });
    const refused = async () =>
      (await srv.metrics.registry.getSingleMetric("switchyard_cache_connections_refused_total")!.get())
        .values[0]?.value ?? 0;
    try {
      const a = await RawConn.open(srv.port);
      const b = await RawConn.open(srv.port);
      assert.equal(await a.exist("x"), false);
      assert.equal(await b.exist("x"), false);
      const c = await RawConn.open(srv.port);
      await c.closedP;
      await assert.rejects(c.exist("x"));
      assert.equal(await refused(), 1);
      assert.equal(await a.exist("x"), false, "the open ones are unharmed");
      await a.close();
      for (const deadline = Date.now() + 30_000; srv.connections() > 1;) {
        assert.ok(Date.now() < deadline, "the server never saw the close"); // timing-ok: a hang guard
        await new Promise((r) => setTimeout(r, 10));
      }
      const d = await RawConn.open(srv.port);
      assert.equal(await d.exist("x"), false);
      assert.equal(await refused(), 1);
      await Promise.all([b.close(), d.close()]);
    } finally {
      await srv.close();
    }
  },
);
