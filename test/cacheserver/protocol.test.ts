import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { RawConn, clientHeader } from "./raw.js";
import { readVectors } from "../helpers/vectors.js";

interface Exchange {
  name: string;
  client_hex: string;
  payload_hex?: string;
  server_hex: string | null;
}
const vectors = readVectors<{ exchanges: Exchange[] }>("lmcache-lm-protocol.json");

test("the LMCache vectors pass byte for byte, in order, on one connection", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 24 });
  try {
    const c = await RawConn.open(srv.port);
    for (const ex of vectors.exchanges) {
      c.write(Buffer.from(ex.client_hex, "hex"));
      if (ex.name === "put") c.write(Buffer.from(ex.payload_hex!, "hex"));
      if (ex.server_hex === null) continue;
      const head = await c.read(36);
      assert.equal(head.toString("hex"), ex.server_hex, ex.name);
      if (ex.name === "get_hit") {
        const body = await c.read(head.readInt32LE(4));
        assert.equal(body.toString("hex"), ex.payload_hex, "get_hit payload");
      }
    }
    await c.close();
  } finally {
    await srv.close();
  }
});

test("PUT/GET/EXIST/HEALTH round trips, misses, overwrite and a 32 MiB object", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 27 });
  try {
    const c = await RawConn.open(srv.port);
    c.write(clientHeader(5, ""));
    assert.deepEqual(await c.reply(), [200, 0, 1, 2, 0, 0, 0, 0, 0]);
    assert.equal(await c.exist("k1"), false);
    assert.deepEqual(
      await (async () => (c.write(clientHeader(2, "k1")), c.reply()))(),
      [400, 0, 1, 2, 0, 0, 0, 0, 0],
    );
    const small = randomBytes(1000);
    await c.put("k1", small, 1, 3);
    // a GET right after a PUT on the same connection sees it, and echoes fmt/dtype/shape
    c.write(clientHeader(2, "k1"));
    assert.deepEqual(await c.reply(), [200, 1000, 1, 3, 1000, 0, 0, 0, 0]);
    assert.deepEqual(await c.read(1000), small);
    const big = randomBytes(32 * 2 ** 20);
    await c.put("big", big);
    assert.equal(await c.exist("big"), true);
    assert.ok((await c.get("big"))!.equals(big));
    const replaced = randomBytes(10);
    await c.put("k1", replaced);
    assert.deepEqual(await c.get("k1"), replaced);
    await c.put("empty", Buffer.alloc(0));
    assert.deepEqual(await c.get("empty"), Buffer.alloc(0));
    // another connection sees the same store
    const d = await RawConn.open(srv.port);
    assert.ok((await d.get("big"))!.equals(big));
    assert.equal(await d.get("nope"), undefined);
    await Promise.all([c.close(), d.close()]);
  } finally {
    await srv.close();
  }
});

test("pipelined requests are answered in order; LIST returns newline-separated keys", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 24 });
  try {
    const c = await RawConn.open(srv.port);
    const batch: Buffer[] = [];
    for (let i = 0; i < 50; i++) {
      const p = Buffer.alloc(100 + i, i);
      batch.push(clientHeader(1, `key-${i}`, p.length, 4, 6, 0, [p.length, 0, 0, 0]), p);
      batch.push(clientHeader(2, `key-${i}`), clientHeader(3, `absent-${i}`));
    }
    c.write(Buffer.concat(batch)); // one write: the server sees many frames per chunk and split frames
    for (let i = 0; i < 50; i++) {
      const h = await c.reply();
      assert.deepEqual(h, [200, 100 + i, 4, 6, 100 + i, 0, 0, 0, 0]);
      assert.deepEqual(await c.read(100 + i), Buffer.alloc(100 + i, i));
      assert.equal((await c.reply())[0], 400);
    }
    c.write(clientHeader(4, ""));
    const h = await c.reply();
    assert.equal(h[0], 200);
    const keys = (await c.read(h[1]!)).toString("ascii").split("\n").sort();
    assert.deepEqual(keys, Array.from({ length: 50 }, (_, i) => `key-${i}`).sort());
    await c.close();
  } finally {
    await srv.close();
  }
});
