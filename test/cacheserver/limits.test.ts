import { test } from "node:test";
import assert from "node:assert/strict";
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
