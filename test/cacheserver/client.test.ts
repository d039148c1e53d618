import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { ListUnsupportedError, LmClient, PROBE_KEY } from "../../src/cacheserver/client.js";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { parsesAsLmcacheKey, startFakeLmcache } from "./fake-lmcache.js";

test("LmClient: put/get/exist/health/list, pipelined replies resolve in request order", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 26 });
  const c = await LmClient.connectUrl(`lm://127.0.0.1:${srv.port}`);
  try {
    assert.equal(await c.health(), true);
    assert.equal(await c.get("nope"), undefined);
    const meta = { fmt: 1, dtype: 3, shape: [2, 32, 256, 8] as [number, number, number, number] };
    await c.put("a", Buffer.from("alpha"), meta);
    const got = await c.get("a");
    assert.deepEqual(got, { payload: Buffer.from("alpha"), meta });
    // pipeline: fire many requests without awaiting, check each answer belongs to its request
    const puts = Array.from({ length: 100 }, (_, i) => c.put(`p${i}`, Buffer.alloc(i * 100, i)));
    const gets = Array.from({ length: 100 }, (_, i) => c.get(i % 3 === 0 ? `absent${i}` : `p${i}`));
    const exists = Array.from({ length: 100 }, (_, i) => c.exist(i % 2 ? `p${i}` : `absent${i}`));
    await Promise.all(puts);
    const g = await Promise.all(gets);
    g.forEach((o, i) => {
      if (i % 3 === 0) assert.equal(o, undefined);
      else assert.deepEqual(o!.payload, Buffer.alloc(i * 100, i));
    });
    assert.deepEqual(
      await Promise.all(exists),
      Array.from({ length: 100 }, (_, i) => i % 2 === 1),
    );
    assert.equal((await c.list()).length, 101);
    assert.equal(c.pending, 0);
  } finally {
    await c.close();
    await srv.close();
  }
});

test("LmClient rejects pending requests when the server goes away", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 20 });
  const c = await LmClient.connect("127.0.0.1", srv.port);
  assert.equal(await c.health(), true);
  await srv.close(); // graceful: the server ends the idle connection
  await assert.rejects(c.exist("x"));
  await assert.rejects(LmClient.connect("127.0.0.1", srv.port));
});

test("LmClient: a key that cannot be sent rejects that call and leaves the reply order intact", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 20 });
  const c = await LmClient.connect("127.0.0.1", srv.port);
  try {
    await c.put("a", Buffer.from("alpha"));
    await assert.rejects(c.get("caf\u00e9"), RangeError);
    await assert.rejects(c.exist("k".repeat(1000)), RangeError);
    await assert.rejects(c.put("caf\u00e9", Buffer.from("x")), RangeError);
    // each reply still goes to its own request
    assert.equal(await c.exist("a"), true);
    assert.equal(await c.exist("b"), false);
    assert.deepEqual((await c.get("a"))?.payload, Buffer.from("alpha"));
    assert.equal(c.pending, 0);
  } finally {
    await c.close();
    await srv.close();
  }
});

test("LmClient.destroy closes at once against a server that never answers; close would wait", async () => {
  const sockets: Socket[] = [];
  const mute = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.resume(); // reads everything, answers nothing, never ends its side
  });
  await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
  const port = (mute.address() as AddressInfo).port;
  try {
    const a = await LmClient.connect("127.0.0.1", port);
    const pendingExist = a.exist("x");
    const closing = a.close();
    const stillOpen = await Promise.race([
      closing.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), 200)),
    ]);
    assert.equal(stillOpen, true, "close() waits for the server's side");
    const existRejects = assert.rejects(pendingExist, /destroyed/);
    a.destroy();
    await closing;
    await existRejects;

    const b = await LmClient.connect("127.0.0.1", port);
    // more than the kernel buffers take, so part of it is still queued in the client
    const bigRejects = assert.rejects(b.put("big", Buffer.alloc(64 << 20)));
    const existRejects2 = assert.rejects(b.exist("big"), /destroyed/);
    b.destroy();
    await existRejects2;
    await bigRejects;
    await assert.rejects(b.health(), /destroyed/);
    assert.equal(b.pending, 0);
    b.destroy(); // twice is harmless
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => mute.close(r));
  }
});

test(
  "LmClient refuses a reply length beyond maxReplyBytes (or negative) before allocating, failing only that client",
  { timeout: 60_000 },
  async () => {
    let announced = 0;
    const liar = createServer((s) => {
      s.once("data", () => {
        // a GET hit announcing `announced` bytes, then nothing
        const h = Buffer.alloc(36);
        h.writeInt32LE(200, 0);
        h.writeInt32LE(announced, 4);
        s.write(h);
      });
      s.on("error", () => {});
    });
    await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
    const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 2 ** 20 });
    try {
      const port = (liar.address() as AddressInfo).port;
      for (announced of [2 ** 30, -5]) {
        const c = await LmClient.connect("127.0.0.1", port, 10_000, 2 ** 20);
        await assert.rejects(c.get("k"), new RegExp(`reply length ${announced} outside 0\\.\\.1048576`));
        await assert.rejects(c.exist("k"));
      }
      const ok = await LmClient.connect("127.0.0.1", srv.port, 10_000, 2 ** 20);
      await ok.put("k", Buffer.alloc(2 ** 19, 1));
      assert.equal((await ok.get("k"))?.payload.length, 2 ** 19);
      await ok.close();
    } finally {
      await srv.close();
      await new Promise((r) => liar.close(r));
    }
  },
);

const KEY = (h: string) => `Qwen/Qwen2.5-0.5B-Instruct@1@0@${h}@bfloat16`;

test("health() sends a key LMCache's server can parse, and answers true against it", async () => {
  assert.ok(parsesAsLmcacheKey(PROBE_KEY));
  assert.ok(!parsesAsLmcacheKey(""), "the fake refuses what LMCache refuses");
  assert.ok(!parsesAsLmcacheKey("vllm@Qwen/Qwen2.5-0.5B-Instruct@1@0@ab12@bfloat16"));
  const lm = await startFakeLmcache();
  const c = await LmClient.connect("127.0.0.1", lm.port);
  try {
    assert.equal(await c.health(), true);
    assert.equal(await c.health(), true);
    assert.deepEqual(lm.refused, []);
    assert.equal(lm.connections, 1);
  } finally {
    await c.close();
    await lm.close();
  }
});

test("list() against a server that never answers LIST fails within its timeout; every later reply still reaches its own request", async () => {
  const lm = await startFakeLmcache();
  const c = await LmClient.connect("127.0.0.1", lm.port);
  try {
    await c.put(KEY("a1"), Buffer.from("one"));
    // requests before, during and after the LIST, none awaited
    const before = c.exist(KEY("a1"));
    const listed = c.list(300);
    const after = [c.exist(KEY("b2")), c.get(KEY("a1")), c.health(), c.exist(KEY("a1"))] as const;
    assert.equal(await before, true);
    await assert.rejects(
      listed,
      (e: unknown) =>
        e instanceof ListUnsupportedError && /did not answer LIST within 300 ms/.test(e.message),
    );
    const [b2, a1, healthy, a1again] = await Promise.all(after);
    assert.equal(b2, false);
    assert.deepEqual(a1?.payload, Buffer.from("one"));
    assert.equal(healthy, true);
    assert.equal(a1again, true);
    // the unanswered connection was replaced, once
    assert.equal(lm.connections, 2);
    assert.deepEqual(lm.refused, []);
    assert.equal(c.pending, 0);
  } finally {
    await c.close();
    await lm.close();
  }
});
