import { test } from "node:test";
import assert from "node:assert/strict";
import { startCacheServer } from "../../src/cacheserver/server.js";
import { RawConn } from "./raw.js";

const MiB = 2 ** 20;

test("with a budget smaller than the working set, memory stays under it and recently used objects survive", async () => {
  const budget = 10 * MiB;
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: budget });
  try {
    const c = await RawConn.open(srv.port);
    const payload = (i: number) => Buffer.alloc(MiB, i);
    for (let i = 0; i < 8; i++) await c.put(`obj@${i}`, payload(i));
    assert.equal(await c.exist("obj@7"), true);
    // obj@0 is read (touched) so it becomes the most recently used
    assert.deepEqual(await c.get("obj@0"), payload(0));
    for (let i = 8; i < 30; i++) {
      await c.put(`obj@${i}`, payload(i));
      if (i % 3 === 0) assert.deepEqual(await c.get("obj@0"), payload(0)); // keep touching obj@0
      assert.equal(await c.exist(`obj@${i}`), true); // fence: the PUT was processed
      const used = srv.store.memory.usedBytes;
      assert.ok(used <= budget, `memory ${used} over budget ${budget} after obj@${i}`);
    }
    const survivors: number[] = [];
    for (let i = 0; i < 30; i++) if (await c.exist(`obj@${i}`)) survivors.push(i);
    // 9 objects of 1 MiB (+ overhead) fit in 10 MiB: the touched one and the 8 newest
    assert.deepEqual(survivors, [0, 22, 23, 24, 25, 26, 27, 28, 29]);
    for (const i of survivors) assert.deepEqual(await c.get(`obj@${i}`), payload(i));
    const text = await srv.metrics.registry.metrics();
    assert.match(text, /switchyard_cache_evictions_total\{tier="memory",outcome="dropped"\} 21/);
    assert.match(text, /switchyard_cache_objects\{tier="memory"\} 9/);
    assert.match(text, new RegExp(`switchyard_cache_memory_used_bytes ${srv.store.memory.usedBytes}`));
    await c.close();
  } finally {
    await srv.close();
  }
});

test("an overwrite replaces the old bytes and its accounting", async () => {
  const srv = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: 4 * MiB });
  try {
    const c = await RawConn.open(srv.port);
    for (let i = 0; i < 20; i++) await c.put("same", Buffer.alloc(MiB, i));
    assert.deepEqual(await c.get("same"), Buffer.alloc(MiB, 19));
    // one MiB plus per-object and per-chunk bookkeeping; a leaked older version would add a whole MiB
    assert.ok(srv.store.memory.usedBytes < MiB + 32 * 1024, `used ${srv.store.memory.usedBytes}`);
    assert.equal(srv.store.memory.stats().objects, 1);
    await c.close();
  } finally {
    await srv.close();
  }
});
