// A PUT's declared length is reserved in the memory budget at its header, before any receive buffer
// exists: declarations cannot make the server allocate beyond its budget, a refused PUT costs
// nothing but reading its bytes, and an abandoned one gives its reservation back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startCacheServer, type CacheServer } from "../../src/cacheserver/server.js";
import { RawConn, clientHeader } from "./raw.js";

const MiB = 2 ** 20;

async function counter(srv: CacheServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await srv.metrics.registry.getSingleMetric(name)!.get();
  return m.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
}

/** Polls until `ok()` holds; the deadline only guards against a hang (no timing is asserted). */
async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 30_000; !(await ok());) {
    assert.ok(Date.now() < deadline, `never: ${what}`); // timing-ok: a hang guard
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("a PUT declaring more than a 64 MiB budget (up to the 2 GiB the int32 length can say) is refused at its header without allocating", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 64 * MiB });
  try {
    // 4 GiB cannot be declared: the length is a signed int32. Its bytes (0x1_0000_0000) do not fit;
    // 0xffffffff, what a client wrapping 4 GiB - 1 sends, reads as -1.
    const declared: [number, string][] = [
      [2 ** 31 - 1, "oversized_length"],
      [64 * MiB, "oversized_length"],
      [-1, "negative_length"],
    ];
    const before = process.memoryUsage().arrayBuffers;
    for (const [length, kind] of declared) {
      const n = await counter(srv, "switchyard_cache_protocol_errors_total", { kind });
      const c = await RawConn.open(srv.port);
      c.write(Buffer.concat([clientHeader(1, "huge", length), Buffer.alloc(4096, 1)]));
      await c.closedP;
      assert.equal(await counter(srv, "switchyard_cache_protocol_errors_total", { kind }), n + 1, kind);
    }
    const grew = process.memoryUsage().arrayBuffers - before;
    assert.ok(grew < 8 * MiB, `ArrayBuffer memory grew by ${grew} bytes`);
    assert.equal(srv.store.memory.reservedBytes, 0);
    assert.ok(srv.store.memory.usedBytes <= 64 * MiB);
  } finally {
    await srv.close();
  }
});

for (const directReads of [true, false]) {
  test(`many concurrent large PUT declarations reserve no more than the budget; refused ones are read and dropped on a usable connection (directReads ${directReads})`, async () => {
    const budget = 64 * MiB;
    const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: budget, directReads });
    const holders: RawConn[] = [];
    try {
      const honest = await RawConn.open(srv.port);
      // stored objects first: reservations evict them to make room, as PUTs do
      for (let i = 0; i < 40; i++) await honest.put(`old${i}`, Buffer.alloc(MiB, i));
      assert.equal(await honest.exist("old39"), true);
      const before = process.memoryUsage().arrayBuffers;
      // 16 peers each declare 30 MiB and send 1 byte: 480 MiB of receive buffers without reservations
      for (let i = 0; i < 16; i++) {
        const c = await RawConn.open(srv.port);
        c.write(Buffer.concat([clientHeader(1, `big${i}`, 30 * MiB), Buffer.alloc(1, 7)]));
        holders.push(c);
      }
      const refused = () => counter(srv, "switchyard_cache_put_refused_total");
      await until("16 declarations handled", async () => (await refused()) === 14);
      await until("2 reservations granted", () => srv.store.memory.reservedBytes > 60 * MiB);
      const m = srv.store.memory;
      assert.ok(m.usedBytes <= budget, `used ${m.usedBytes} > budget ${budget}`);
      assert.ok(m.stats().objects < 4, `${m.stats().objects} old objects left beside 60 MiB of reservations`);
      const grew = process.memoryUsage().arrayBuffers - before;
      // the two granted receive buffers (60 MiB) and the client's reads; the 14 refused allocate nothing
      assert.ok(grew < 96 * MiB, `ArrayBuffer memory grew by ${grew} bytes`);
      const text = await srv.metrics.registry.metrics();
      assert.match(text, new RegExp(`switchyard_cache_memory_reserved_bytes ${m.reservedBytes}`));
      // an honest PUT that does not fit beside the reservations is refused, its bytes read and dropped,
      // and its connection goes on
      await honest.put("later", Buffer.alloc(8 * MiB, 3));
      assert.equal(await honest.exist("later"), false);
      assert.equal(await refused(), 15);
      await honest.put("small", Buffer.alloc(MiB, 4));
      assert.ok((await honest.get("small"))?.equals(Buffer.alloc(MiB, 4)));
      // every declaring connection, refused or not, goes on once its bytes are in
      const h = holders[holders.length - 1]!;
      h.write(Buffer.alloc(30 * MiB - 1, 7));
      assert.equal(await h.exist("absent"), false);
      // the holders go away: their reservations come back, and the honest PUT fits
      for (const c of holders) c.socket.destroy();
      await until("reservations released", () => m.reservedBytes === 0);
      await honest.put("later", Buffer.alloc(8 * MiB, 3));
      assert.ok((await honest.get("later"))?.equals(Buffer.alloc(8 * MiB, 3)));
      assert.ok(m.usedBytes <= budget);
      await honest.close();
    } finally {
      for (const c of holders) c.socket.destroy();
      await srv.close();
    }
  });
}

for (const directReads of [true, false]) {
  test(`an abandoned, stalled or trickling PUT gives its reservation back (directReads ${directReads})`, async () => {
    const srv = await startCacheServer({
      host: "127.0.0.1",
      port: 0,
      maxMemoryBytes: 16 * MiB,
      // far apart, so that a busy machine delaying the drip below cannot turn slow_payload into a stall
      stallTimeoutMs: 2000,
      putTimeoutMs: 300,
      directReads,
    });
    const m = srv.store.memory;
    try {
      // abandoned: the peer goes away mid-payload
      const gone = await RawConn.open(srv.port);
      gone.write(Buffer.concat([clientHeader(1, "gone", 4 * MiB), Buffer.alloc(1000, 1)]));
      await until("reserved", () => m.reservedBytes > 4 * MiB);
      gone.socket.destroy();
      await until("released after disconnect", () => m.reservedBytes === 0);
      // stalled: no byte for the stall timeout
      const stalled = await RawConn.open(srv.port);
      stalled.write(Buffer.concat([clientHeader(1, "stalled", 4 * MiB), Buffer.alloc(1000, 1)]));
      await stalled.closedP;
      assert.equal(m.reservedBytes, 0);
      assert.equal(
        await counter(srv, "switchyard_cache_protocol_errors_total", { kind: "stalled_frame" }),
        1,
      );
      // trickling: a byte every 20 ms never stalls, but the PUT runs past --put-timeout
      const slow = await RawConn.open(srv.port);
      slow.write(clientHeader(1, "slow", 4 * MiB));
      const drip = setInterval(() => slow.write(Buffer.alloc(1, 1)), 20);
      try {
        await slow.closedP;
      } finally {
        clearInterval(drip);
      }
      assert.equal(await counter(srv, "switchyard_cache_protocol_errors_total", { kind: "slow_payload" }), 1);
      assert.equal(m.reservedBytes, 0);
      const c = await RawConn.open(srv.port);
      for (const k of ["gone", "stalled", "slow"]) assert.equal(await c.exist(k), false, k);
      await c.close();
    } finally {
      await srv.close();
    }
  });
}
