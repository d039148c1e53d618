import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { mulberry32 as rng } from "../../src/random/rng.js";
import { RawConn, clientHeader } from "./raw.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20240917);

/** Sends bytes on a fresh connection, half-closes, and waits (bounded) for the server to be done with it. */
function blast(port: number, parts: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port }, () => {
      for (const p of parts) s.write(p);
      s.end();
    });
    s.on("data", () => {});
    s.on("error", () => {});
    const t = setTimeout(() => s.destroy(), 3000);
    s.on("close", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

test("malformed frames never crash the server nor corrupt stored objects", async () => {
  const rand = rng(SEED);
  const int = (n: number) => Math.floor(rand() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const srv = await startCacheServer({
    host: "127.0.0.1",
    port: 0,
    maxMemoryBytes: 2 ** 26,
    maxObjectBytes: 2 ** 21,
  });
  try {
    const good = await RawConn.open(srv.port);
    const originals = new Map<string, Buffer>();
    for (let i = 0; i < 20; i++) {
      const p = bytes(1 + int(20000));
      originals.set(`orig@${i}`, p);
      await good.put(`orig@${i}`, p);
    }
    const makers: (() => Buffer[])[] = [
      () => [bytes(1 + int(3000))], // random bytes
      () => [clientHeader(1 + int(5), `orig@${int(20)}`).subarray(0, int(186))], // truncated header
      () => [clientHeader(1, `fz@${int(1e6)}`, 1000 + int(5000)), bytes(int(999))], // truncated payload
      () => [clientHeader(1, "fz@neg", -1 - int(2 ** 30))], // negative length
      () => [clientHeader(1, "fz@big", 2 ** 21 + 1 + int(2 ** 30))], // oversized
      () => {
        const h = clientHeader(2 + int(2), "k" + "x".repeat(int(100)));
        h[36 + int(150)] = int(2) ? 0x80 + int(128) : int(32); // non-ASCII or control byte in the key
        return [h];
      },
      () => [clientHeader(int(2) ? 6 + int(1000) : -int(1000), "k")], // unknown command
      () => {
        // valid traffic, then a corrupted header with its bytes flipped at random
        const p = bytes(int(3000));
        const h = clientHeader(1 + int(5), `orig@${int(20)}`, int(100));
        for (let i = 0; i < 4; i++) h[int(186)] = int(256);
        return [
          clientHeader(1, `fz@ok${int(1e6)}`, p.length),
          p,
          clientHeader(3, "fz@x"),
          h,
          bytes(int(200)),
        ];
      },
    ];
    const ROUNDS = 300;
    for (let round = 0; round < ROUNDS; round += 10) {
      // ten bad connections at once, with valid traffic interleaved on the good connection
      const bad = Array.from({ length: 10 }, () => blast(srv.port, makers[int(makers.length)]!()));
      const k = `orig@${int(20)}`;
      const fresh = bytes(1 + int(5000));
      await good.put(k, fresh);
      originals.set(k, fresh);
      assert.deepEqual(await good.get(k), fresh);
      await Promise.all(bad);
    }
    for (const [k, v] of originals) assert.deepEqual(await good.get(k), v, k);
    good.write(clientHeader(5, ""));
    assert.equal((await good.reply())[0], 200);
    const m = await srv.metrics.registry.getSingleMetric("switchyard_cache_protocol_errors_total")!.get();
    assert.ok(m.values.reduce((a, v) => a + v.value, 0) > ROUNDS / 2, "the bad frames were seen as errors");
    await good.close();
  } finally {
    await srv.close();
  }
});
