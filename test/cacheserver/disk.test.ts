import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCacheServer, type CacheServer } from "../../src/cacheserver/server.js";
import { RawConn } from "./raw.js";

const MiB = 2 ** 20;

async function settle(srv: CacheServer): Promise<void> {
  while (srv.store.disk!.stats().writesInFlight > 0) await new Promise((r) => setTimeout(r, 5));
}

async function hits(srv: CacheServer, tier: string): Promise<number> {
  const m = await srv.metrics.registry.getSingleMetric("switchyard_cache_hits_total")!.get();
  return m.values.find((v) => v.labels.tier === tier)?.value ?? 0;
}

test("evicted objects move to disk and are served from there; disk is bounded; restart re-indexes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sy-cache-disk-"));
  const opts = {
    host: "127.0.0.1",
    port: 0,
    // 8 objects of 1 MiB plus slack for bookkeeping (≤ 8 KiB per MiB: a payload is kept in chunks)
    maxMemoryBytes: 8 * MiB + 128 * 1024,
    diskDir: dir,
    maxDiskBytes: 6 * MiB + 4096,
  };
  const payload = (i: number) => Buffer.alloc(MiB, i + 1);
  let srv: CacheServer | undefined;
  try {
    srv = await startCacheServer(opts);
    let c = await RawConn.open(srv.port);
    for (let i = 0; i < 14; i++) {
      await c.put(`d@${i}`, payload(i));
      assert.equal(await c.exist(`d@${i}`), true);
      await settle(srv); // one at a time, so that no victim is dropped for want of write bandwidth
    }
    // 1/8 of the budget is kept for disk writes: memory holds the newest 7, disk the 6 before them,
    // and the oldest was evicted from disk
    const where = [];
    for (let i = 0; i < 14; i++)
      where.push(srv.store.memory.has(`d@${i}`) ? "m" : (await c.exist(`d@${i}`)) ? "d" : "-");
    assert.equal(where.join(""), "-dddddd" + "mmmmmmm");
    const before = await hits(srv, "disk");
    for (let i = 1; i < 7; i++) assert.deepEqual(await c.get(`d@${i}`), payload(i), `d@${i} from disk`);
    assert.equal((await hits(srv, "disk")) - before, 6);
    assert.equal(srv.store.disk!.stats().usedBytes <= opts.maxDiskBytes, true);
    const files = (await readdir(dir)).filter((f) => f.endsWith(".kv"));
    assert.equal(files.length, 6);
    // an overwrite of a disk-held key supersedes the disk copy
    await c.put("d@2", Buffer.from("new"));
    assert.deepEqual(await c.get("d@2"), Buffer.from("new"));
    await c.close();
    await srv.close();
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.endsWith(".tmp")),
      [],
    );

    // a crash mid-write leaves a temp file: the next start deletes it and never serves it
    await writeFile(join(dir, "0000000000ff.kv.tmp"), Buffer.alloc(100));
    await writeFile(join(dir, "000000000100.kv"), Buffer.from("garbage, not an object"));
    srv = await startCacheServer(opts);
    c = await RawConn.open(srv.port);
    assert.equal(srv.store.memory.stats().objects, 0);
    for (let i = 3; i < 7; i++) assert.deepEqual(await c.get(`d@${i}`), payload(i), `d@${i} after restart`);
    assert.equal(await c.exist("d@2"), false, "the superseded disk copy is gone");
    assert.equal(await c.exist("d@0"), false);
    const left = await readdir(dir);
    assert.equal(left.filter((f) => f.endsWith(".tmp")).length, 0);
    assert.ok(!left.includes("000000000100.kv"));
    await c.close();
    await srv.close();
  } finally {
    await srv?.close(); // idempotent; on a failed assertion it stops the server so the file ends
    await rm(dir, { recursive: true, force: true });
  }
});
