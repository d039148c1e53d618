// Namespaces: clients placed by the listener they reach or the address they come from cannot read,
// list or overwrite each other's keys, through memory and disk alike.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCacheServer } from "../../src/cacheserver/server.js";
import {
  NamespaceMap,
  keyIn,
  parseCidrRule,
  parseListen,
  scopedKey,
} from "../../src/cacheserver/namespace.js";
import { RawConn } from "./raw.js";

const KEY = "meta-llama/Llama-3.1-8B@1@0@a1b2c3@bfloat16";

test("clients of two namespaced listeners cannot read, list or overwrite each other's keys", async () => {
  const srv = await startCacheServer({
    maxMemoryBytes: 2 ** 24,
    listen: [
      { host: "127.0.0.1", port: 0, namespace: "team-a" },
      { host: "127.0.0.1", port: 0, namespace: "team-b" },
      { host: "127.0.0.1", port: 0 },
    ],
  });
  try {
    const [pa, pb, pd] = srv.ports as [number, number, number];
    assert.equal(srv.port, pa);
    const a = await RawConn.open(pa);
    const b = await RawConn.open(pb);
    const d = await RawConn.open(pd);
    await a.put(KEY, Buffer.alloc(3000, 0xa));
    await a.put("only-a", Buffer.alloc(10, 1));
    assert.equal(await a.exist(KEY), true);
    // read: B and the default namespace see nothing of A's
    assert.equal(await b.exist(KEY), false);
    assert.equal(await b.get(KEY), undefined);
    assert.equal(await d.get(KEY), undefined);
    // overwrite: B's PUT of the same key is B's own object; A's bytes are untouched
    await b.put(KEY, Buffer.alloc(2000, 0xb));
    await d.put(KEY, Buffer.alloc(1000, 0xd));
    assert.deepEqual(await a.get(KEY), Buffer.alloc(3000, 0xa));
    assert.deepEqual(await b.get(KEY), Buffer.alloc(2000, 0xb));
    assert.deepEqual(await d.get(KEY), Buffer.alloc(1000, 0xd));
    // list: each sees its own keys, as it wrote them
    assert.deepEqual((await a.list()).sort(), [KEY, "only-a"]);
    assert.deepEqual(await b.list(), [KEY]);
    assert.deepEqual(await d.list(), [KEY]);
    const text = await srv.metrics.registry.metrics();
    for (const ns of ["team-a", "team-b", "default"])
      assert.match(text, new RegExp(`switchyard_cache_namespace_connections_total\\{namespace="${ns}"\\} 1`));
    await Promise.all([a.close(), b.close(), d.close()]);
  } finally {
    await srv.close();
  }
});

test("a source-address rule places a client in its namespace whatever listener it reaches", async () => {
  const srv = await startCacheServer({
    host: "127.0.0.1",
    port: 0,
    maxMemoryBytes: 2 ** 24,
    namespaceByAddress: [{ cidr: "127.0.0.2/32", namespace: "team-c" }],
  });
  try {
    const c = await RawConn.open(srv.port, "127.0.0.2");
    const other = await RawConn.open(srv.port, "127.0.0.3");
    await c.put(KEY, Buffer.alloc(100, 0xc));
    assert.deepEqual(await c.get(KEY), Buffer.alloc(100, 0xc));
    assert.equal(await other.exist(KEY), false);
    assert.deepEqual(await other.list(), []);
    await other.put(KEY, Buffer.alloc(50, 1));
    assert.deepEqual(await c.get(KEY), Buffer.alloc(100, 0xc));
    assert.deepEqual(await c.list(), [KEY]);
    await Promise.all([c.close(), other.close()]);
  } finally {
    await srv.close();
  }
});

test("namespaces hold on the disk tier and across a restart that re-indexes it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sy-ns-"));
  const MiB = 2 ** 20;
  const opts = (ports: [number, number]) => ({
    maxMemoryBytes: 4 * MiB,
    diskDir: dir,
    maxDiskBytes: 64 * MiB,
    listen: [
      { host: "127.0.0.1", port: ports[0], namespace: "a" },
      { host: "127.0.0.1", port: ports[1], namespace: "b" },
    ],
  });
  try {
    let srv = await startCacheServer(opts([0, 0]));
    let [a, b] = await Promise.all(srv.ports.map((p) => RawConn.open(p)));
    const x = Buffer.alloc(64 * 1024, 1);
    await a!.put("x", x);
    // push "x" out to disk (the first victim: the slice for disk writes is empty) from A's own namespace
    for (let i = 0; i < 64; i++) await a!.put(`fill${i}`, Buffer.alloc(64 * 1024, 2));
    assert.equal(await a!.exist("fill63"), true); // fence
    assert.equal(srv.store.memory.has(scopedKey("a", "x")), false, "x left memory");
    assert.ok((await a!.get("x"))?.equals(x));
    assert.equal(await b!.get("x"), undefined);
    assert.deepEqual(await b!.list(), []);
    await Promise.all([a!.close(), b!.close()]);
    await srv.close();
    srv = await startCacheServer(opts([0, 0]));
    [a, b] = await Promise.all(srv.ports.map((p) => RawConn.open(p)));
    assert.ok((await a!.get("x"))?.equals(x), "x read back from disk after the restart");
    assert.equal(await b!.exist("x"), false);
    assert.ok((await a!.list()).includes("x"));
    await Promise.all([a!.close(), b!.close()]);
    await srv.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("listener, CIDR and key-scoping rules read and refuse as documented", () => {
  assert.deepEqual(parseListen("65433=team-a", "0.0.0.0"), {
    host: "0.0.0.0",
    port: 65433,
    namespace: "team-a",
  });
  assert.deepEqual(parseListen("10.0.0.1:1=x", "h"), { host: "10.0.0.1", port: 1, namespace: "x" });
  assert.deepEqual(parseListen("[::1]:7", "h"), { host: "::1", port: 7, namespace: "" });
  for (const bad of ["", "x", "1:2:3", "70000=a", "1=", "1=-a", "1=a b", `1=${"a".repeat(64)}`])
    assert.throws(() => parseListen(bad, "h"), RangeError, bad);
  for (const bad of ["10.0.0.0/8", "10.0.0.0/33=a", "nope=a", "10.0.0.0/x=a", "::/129=a"])
    assert.throws(() => parseCidrRule(bad), RangeError, bad);
  const m = new NamespaceMap([
    parseCidrRule("10.1.0.0/16=a"),
    parseCidrRule("10.0.0.0/8=b"),
    parseCidrRule("fd00::/8=c"),
  ]);
  assert.equal(m.lookup("10.1.2.3"), "a");
  assert.equal(m.lookup("::ffff:10.2.0.1"), "b");
  assert.equal(m.lookup("fd12::1"), "c");
  assert.equal(m.lookup("192.168.0.1"), undefined);
  assert.equal(keyIn("a", scopedKey("a", "k")), "k");
  assert.equal(keyIn("ab", scopedKey("a", "k")), undefined);
  assert.equal(keyIn("", scopedKey("a", "k")), undefined);
  assert.equal(keyIn("", "k"), "k");
  assert.equal(keyIn("a", "k"), undefined);
});
