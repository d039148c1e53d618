// Per-namespace limits: one namespace's clients — large PUTs trickled in to hold reservations, or
// connections opened to the cap — take at most their namespace's share of the memory budget and of the
// connection cap, so every other namespace keeps its objects and can still connect.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryTier, type StoredObject } from "../../src/cacheserver/memory.js";
import { scopedKey } from "../../src/cacheserver/namespace.js";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { RawConn, clientHeader } from "./raw.js";

const MiB = 2 ** 20;

/** Polls until `ok()` holds; the deadline only guards against a hang (no timing is asserted). */
async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 30_000; !(await ok());) {
    assert.ok(Date.now() < deadline, `never: ${what}`); // timing-ok: a hang guard
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("trickled large PUTs of one namespace evict none of another namespace's objects while it stays within its share", async () => {
  const srv = await startCacheServer({
    maxMemoryBytes: 64 * MiB,
    maxConnections: 64,
    listen: [
      { host: "127.0.0.1", port: 0, namespace: "team-a" },
      { host: "127.0.0.1", port: 0, namespace: "team-b" },
    ],
  });
  const open: RawConn[] = [];
  try {
    const [pa, pb] = srv.ports as [number, number];
    const b = await RawConn.open(pb);
    open.push(b);
    for (let i = 0; i < 20; i++) await b.put(`b-${i}`, Buffer.alloc(MiB, i));
    // team-a: 16 PUTs of 8 MiB each, only their headers and a first few bytes sent
    for (let i = 0; i < 16; i++) {
      const a = await RawConn.open(pa);
      open.push(a);
      a.write(Buffer.concat([clientHeader(1, `a-${i}`, 8 * MiB), Buffer.alloc(64, 1)]));
    }
    // every header read: each PUT either holds its reservation (8 MiB and a few bytes) or was refused
    await until("team-a's 16 PUT headers handled", async () => {
      const refused = (await srv.metrics.putRefused.get()).values[0]?.value ?? 0;
      return Math.floor(srv.store.memory.reservedBytes / (8 * MiB)) + refused === 16;
    });
    for (let i = 0; i < 20; i++) assert.equal(await b.exist(`b-${i}`), true, `team-b's b-${i} still stored`);
    assert.ok(
      srv.store.memory.namespaceBytes("team-a") <= 32 * MiB,
      `team-a holds ${srv.store.memory.namespaceBytes("team-a")} bytes`,
    );
  } finally {
    for (const c of open) c.socket.destroy();
    await srv.close();
  }
});

test("a namespace at its cap evicts its own least recently used objects, never another namespace's", () => {
  const m = new MemoryTier(10 * MiB, undefined, () => {});
  m.namespaceCap = () => 5 * MiB;
  const obj = (ns: string, key: string): StoredObject => ({
    key: scopedKey(ns, key),
    meta: { length: MiB, fmt: 4, dtype: 6, shape: [1, 1, 1, 1] } as unknown as StoredObject["meta"],
    payload: {
      heldBytes: MiB,
      length: MiB,
      chunks: [],
      recyclable: false,
    } as unknown as StoredObject["payload"],
  });
  for (let i = 0; i < 4; i++) assert.ok(m.put(obj("b", `b-${i}`)));
  for (let i = 0; i < 20; i++) assert.ok(m.put(obj("a", `a-${i}`)));
  for (let i = 0; i < 4; i++) assert.ok(m.has(scopedKey("b", `b-${i}`)), `b-${i} kept`);
  assert.ok(m.namespaceBytes("a") <= 5 * MiB);
  assert.ok(m.has(scopedKey("a", "a-19")), "a's newest kept");
  assert.ok(!m.has(scopedKey("a", "a-0")), "a's oldest evicted");
  // a reservation its own reservations leave no room for is refused
  assert.ok(m.reserve(4 * MiB, "a"));
  assert.equal(m.reserve(2 * MiB, "a"), false);
  assert.ok(m.reserve(2 * MiB, "b"));
});

test("a namespace at its connection cap is refused another connection while other namespaces still connect", async () => {
  const srv = await startCacheServer({
    maxMemoryBytes: 16 * MiB,
    maxConnections: 4,
    listen: [
      { host: "127.0.0.1", port: 0, namespace: "team-a" },
      { host: "127.0.0.1", port: 0, namespace: "team-b" },
    ],
  });
  const open: RawConn[] = [];
  try {
    const [pa, pb] = srv.ports as [number, number];
    for (let i = 0; i < 2; i++) {
      const a = await RawConn.open(pa);
      open.push(a);
      await a.put(`a-${i}`, Buffer.alloc(10, 1));
    }
    const third = await RawConn.open(pa);
    open.push(third);
    // refused at accept: half of maxConnections is team-a's
    await until("team-a's third connection closed", () => third.closed);
    for (let i = 0; i < 2; i++) {
      const b = await RawConn.open(pb);
      open.push(b);
      await b.put(`b-${i}`, Buffer.alloc(10, 2));
      assert.equal(await b.exist(`b-${i}`), true);
    }
  } finally {
    for (const c of open) c.socket.destroy();
    await srv.close();
  }
});
