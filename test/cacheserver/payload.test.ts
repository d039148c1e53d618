import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { randomBytes } from "node:crypto";
import {
  ADOPT_MIN_BYTES,
  COPY_BLOCK_BYTES,
  DirectPayload,
  PER_CHUNK_OVERHEAD,
  PayloadBuilder,
  joinPayload,
} from "../../src/cacheserver/payload.js";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { RawConn, clientHeader } from "./raw.js";

const KiB = 1024;

/** A socket-read-like Buffer: owns its whole ArrayBuffer. */
const read = (n: number, fill: number) => Buffer.alloc(n, fill);

test("PayloadBuilder adopts whole large reads, copies slices to their exact size, gathers small pieces", () => {
  const first = read(64 * KiB, 1); // header in front: only a slice of it is payload
  const whole = read(64 * KiB, 2);
  const small = Array.from({ length: 40 }, (_, i) => read(1000, 10 + i));
  const total = 64 * KiB - 186 + 64 * KiB + 40 * 1000 + 50 * KiB;
  const last = read(64 * KiB, 3); // the payload ends inside it, the next request follows
  const b = new PayloadBuilder(total);
  assert.equal(b.take(first, 186, first.length), 64 * KiB - 186);
  assert.equal(b.take(whole, 0, whole.length), 64 * KiB);
  for (const s of small) b.take(s, 0, s.length);
  assert.equal(b.take(last, 0, last.length), 50 * KiB, "takes only what the payload still needs");
  assert.equal(b.missing, 0);
  const p = b.finish();
  assert.deepEqual(
    joinPayload(p),
    Buffer.concat([first.subarray(186), whole, ...small, last.subarray(0, 50 * KiB)]),
  );
  assert.ok(p.chunks.includes(whole), "the whole read is kept as is");
  assert.ok(!p.chunks.includes(first) && !p.chunks.includes(last), "shared reads are not pinned");
  for (const c of p.chunks) assert.equal(c.buffer.byteLength, c.length, "no chunk pins more than itself");
  assert.equal(p.heldBytes, total + p.chunks.length * PER_CHUNK_OVERHEAD);
  // 40 small reads went into blocks of up to COPY_BLOCK_BYTES, not 40 chunks
  assert.ok(
    p.chunks.length <= 3 + Math.ceil((40 * 1000) / COPY_BLOCK_BYTES) + 1,
    `${p.chunks.length} chunks`,
  );
});

test("PayloadBuilder copies a small read even when it owns its memory, and a block cut short by an adopted read", () => {
  const b = new PayloadBuilder(ADOPT_MIN_BYTES + 100);
  const tiny = read(100, 7);
  const big = read(ADOPT_MIN_BYTES, 8);
  b.take(tiny, 0, 100);
  b.take(big, 0, big.length);
  const p = b.finish();
  assert.equal(p.chunks.length, 2);
  assert.notEqual(p.chunks[0], tiny);
  assert.equal(p.chunks[0]!.buffer.byteLength, 100, "the part-filled block was cut to its bytes");
  assert.equal(p.chunks[1], big);
  assert.throws(() => new PayloadBuilder(10).finish(), /short/);
});

test("DirectPayload fills one Buffer from copied bytes and direct reads into its view", () => {
  const d = new DirectPayload(1000);
  assert.equal(d.take(Buffer.alloc(300, 1), 0, 300), 300);
  const v = d.view();
  assert.equal(v.length, 700);
  v.fill(2, 0, 500);
  d.advance(500);
  assert.equal(d.view().length, 200);
  d.view().fill(3);
  d.advance(200);
  const p = d.finish();
  assert.equal(p.chunks.length, 1);
  assert.deepEqual(
    p.chunks[0],
    Buffer.concat([Buffer.alloc(300, 1), Buffer.alloc(500, 2), Buffer.alloc(200, 3)]),
  );
  assert.equal(p.heldBytes, 1000 + PER_CHUNK_OVERHEAD);
});

/** Writes `bytes` in random-sized slices with pauses, so reads split anywhere. */
async function dribble(port: number, bytes: Buffer, seed: number): Promise<void> {
  let x = seed;
  const next = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x);
  const s = connect({ host: "127.0.0.1", port });
  await new Promise((r) => s.once("connect", r));
  s.setNoDelay(true);
  for (let off = 0; off < bytes.length;) {
    const n = Math.min(bytes.length - off, 1 + (next() % 100_000));
    if (!s.write(bytes.subarray(off, off + n))) await new Promise((r) => s.once("drain", r));
    off += n;
    if (next() % 4 === 0) await new Promise((r) => setImmediate(r));
  }
  s.end();
  await new Promise((r) => s.once("close", r));
}

for (const directReads of [true, false]) {
  test(`pipelined PUTs split at random points are stored exactly (directReads=${directReads})`, async () => {
    const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 28, directReads });
    try {
      const sizes = [1, 185, 186, 187, 4096, 65_349, 65_536, 65_537, 300_000, 2_000_003, 0, 17];
      const objects = sizes.map((n, i) => ({ key: `p@${i}`, payload: randomBytes(n) }));
      const wire = Buffer.concat(
        objects.flatMap((o) => [clientHeader(1, o.key, o.payload.length), o.payload]),
      );
      await dribble(srv.port, wire, directReads ? 1 : 2);
      const c = await RawConn.open(srv.port);
      for (const o of objects) assert.deepEqual(await c.get(o.key), o.payload, o.key);
      const big = srv.store.memory.get("p@9")!.payload;
      if (directReads) assert.equal(big.chunks.length, 1, "read straight into one Buffer");
      else assert.ok(big.chunks.length > 1, "kept as the reads it arrived in");
      for (const o of objects) {
        const p = srv.store.memory.get(o.key)!.payload;
        for (const ch of p.chunks)
          assert.equal(ch.buffer.byteLength, ch.length, `${o.key} pins no extra memory`);
      }
      await c.close();
    } finally {
      await srv.close();
    }
  });
}

test("a receive buffer is reused only after every GET reply holding it has been written", async () => {
  const SIZE = 24 * 2 ** 20; // larger than loopback socket buffers: the reply stays in flight
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 29 });
  try {
    assert.ok(srv.store.pool.maxBytes >= SIZE);
    const x = randomBytes(SIZE);
    const writer = await RawConn.open(srv.port);
    await writer.put("k", x);
    assert.equal(await writer.exist("k"), true);
    // a reader asks for k and does not read the reply yet
    const reader = await RawConn.open(srv.port);
    reader.socket.pause();
    const gets = async () =>
      (await srv.metrics.registry.getSingleMetric("switchyard_cache_requests_total")!.get()).values
        .filter((v) => v.labels.command === "get")
        .reduce((a, v) => a + v.value, 0);
    const getsBefore = await gets();
    reader.write(clientHeader(2, "k"));
    // the server has taken the GET (and k's buffer for its reply) before k is replaced: polled, not slept
    for (const deadline = Date.now() + 30_000; (await gets()) === getsBefore;) {
      assert.ok(Date.now() < deadline, "the server never took the GET"); // timing-ok: a hang guard
      await new Promise((r) => setTimeout(r, 10));
    }
    // k is replaced, and a PUT of the same size follows: it must not be handed k's old buffer
    const y = randomBytes(SIZE);
    const z = randomBytes(SIZE);
    await writer.put("k", y);
    await writer.put("k2", z);
    assert.equal(await writer.exist("k2"), true);
    assert.equal(srv.store.pool.heldBytes, 0, "the old buffer is still being sent");
    reader.socket.resume();
    const h = await reader.reply();
    assert.equal(h[1], SIZE);
    assert.ok((await reader.read(SIZE)).equals(x), "the reply carries the bytes it had when asked");
    // the server's write callback, which returns the buffer, can run after the client has read it all
    for (const deadline = Date.now() + 30_000; srv.store.pool.heldBytes !== SIZE;) {
      assert.ok(Date.now() < deadline, "once written, the old buffer went back to the pool"); // timing-ok: a hang guard
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.match(
      await srv.metrics.registry.metrics(),
      new RegExp(`switchyard_cache_buffer_pool_bytes ${SIZE}`),
    );
    await writer.put("k3", x);
    assert.equal(await writer.exist("k3"), true);
    assert.equal(srv.store.pool.heldBytes, 0, "and the next PUT of that size took it");
    assert.ok((await writer.get("k3"))!.equals(x));
    assert.ok((await writer.get("k"))!.equals(y));
    assert.ok((await writer.get("k2"))!.equals(z));
    await reader.close();
    await writer.close();
  } finally {
    await srv.close();
  }
});
