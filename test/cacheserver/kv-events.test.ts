// The cache server's KV events over real ZMQ on loopback: an LMCache chunk is announced stored once
// every TP rank's shard is held, once however often it is written again; a key that is no LMCache
// chunk is never announced; a chunk pushed from memory to disk is still held, and is announced removed
// once the disk lets it go too; a subscriber joining late gets the history from the replay socket; a
// disk tier of thousands of chunks kept from an earlier run is announced in full, a slice at a time,
// while the server already answers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCacheServer, type CacheServer } from "../../src/cacheserver/server.js";
import { ANNOUNCE_SLICE, SHARED_TIER_MEDIUM } from "../../src/cacheserver/kv-events.js";
import { objectFileName, objectFileParts } from "../../src/cacheserver/disk.js";
import { payloadOf } from "../../src/cacheserver/payload.js";
import { KvEventSubscriber } from "../../src/kvevents/subscriber.js";
import type { KvEvent } from "../../src/kvevents/events.js";
import { waitUntil } from "../helpers/router.js";
import { RawConn } from "./raw.js";

const MiB = 2 ** 20;
/** the header fields of a chunk written to the disk tier directly */
const meta = { fmt: 1, dtype: 0, shape: [2, 32, 256, 1024] as [number, number, number, number] };

/** one rank's shard of a chunk, as LMCache 0.5 names it */
const key = (hash: bigint, worker: number, worldSize = 2) =>
  `meta-llama/Llama-3.1-8B-Instruct@${worldSize}@${worker}@${hash.toString(16)}@bfloat16`;

async function listen(server: CacheServer): Promise<{ events: KvEvent[]; sub: KvEventSubscriber }> {
  const events: KvEvent[] = [];
  const sub = await KvEventSubscriber.create({
    endpoint: server.kvEventsEndpoint!,
    // from seq 0 through the replay socket: nothing is lost to ZMQ's slow joiner
    replayEndpoint: server.kvEventsReplayEndpoint!,
    initialSeq: 0,
    onBatch: (_seq, batch) => events.push(...batch.events),
  });
  return { events, sub };
}

const storedOf = (events: KvEvent[]) =>
  events.flatMap((e) => (e.type === "BlockStored" ? e.blockHashes : []));
const removedOf = (events: KvEvent[]) =>
  events.flatMap((e) => (e.type === "BlockRemoved" ? e.blockHashes : []));

test("a chunk is announced stored once all its ranks are held, once, and keys that are no LMCache chunks never", async () => {
  const server = await startCacheServer({
    host: "127.0.0.1",
    port: 0,
    maxMemoryBytes: 64 * MiB,
    kvEvents: { port: 0, replayPort: 0, chunkTokens: 256 },
  });
  const { events, sub } = await listen(server);
  const c = await RawConn.open(server.port);
  try {
    const payload = Buffer.alloc(64 * 1024, 7);
    // rank 0 of 2 alone: not loadable, not announced; a key of another client: ignored
    await c.put(key(0xa1n, 0), payload);
    await c.put("some-other-client/key", payload);
    await c.put(key(0x51n, 0), payload);
    await c.put(key(0x51n, 1), payload);
    await waitUntil(() => storedOf(events).includes(0x51n), 10_000, "the sentinel chunk announced");
    assert.deepEqual(storedOf(events), [0x51n]);
    // the second rank makes it loadable
    await c.put(key(0xa1n, 1), payload);
    await waitUntil(() => storedOf(events).includes(0xa1n), 10_000, "the chunk announced");
    // written again (a PUT supersedes the key: no removal in between), and a second sentinel
    await c.put(key(0xa1n, 0), payload);
    await c.put(key(0xa1n, 1), payload);
    await c.put(key(0x52n, 0, 1), payload);
    await waitUntil(() => storedOf(events).includes(0x52n), 10_000, "the second sentinel announced");
    assert.deepEqual(storedOf(events), [0x51n, 0xa1n, 0x52n]);
    assert.deepEqual(removedOf(events), []);
    const stored = events.find((e) => e.type === "BlockStored");
    assert.ok(stored && stored.type === "BlockStored");
    assert.equal(stored.medium, SHARED_TIER_MEDIUM);
    assert.equal(stored.blockSize, 256);
    assert.equal(stored.parentBlockHash, null);
    assert.equal(server.kvEvents!.size, 5, "the five chunk shards are followed, the other key not");
  } finally {
    await c.close();
    await sub.close();
    await server.close();
  }
});

test("a chunk evicted from memory to disk stays announced; once the disk drops it too, it is removed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-kvev-"));
  // 1 MiB objects: memory holds a few, the disk two more, so a chunk passes through both and out
  const server = await startCacheServer({
    host: "127.0.0.1",
    port: 0,
    // an eighth of it is kept for disk writes: room for one evicted object at a time
    maxMemoryBytes: 16 * MiB,
    diskDir: dir,
    maxDiskBytes: 2 * MiB + 8192,
    kvEvents: { port: 0, replayPort: 0 },
  });
  const c = await RawConn.open(server.port);
  const { events, sub } = await listen(server);
  try {
    const mib = Buffer.alloc(MiB, 3);
    // EXIST after each PUT fences it: the server has taken it (a PUT has no reply)
    const put = async (k: string) => {
      await c.put(k, mib);
      await c.exist(k);
    };
    const first = key(0xf1n, 0, 1);
    await put(first);
    await waitUntil(() => storedOf(events).includes(0xf1n), 10_000, "the first chunk announced");
    // push it out of memory: it goes to the disk tier, where it is still held
    let next = 0x100n;
    while (server.store.memory.has(first)) await put(key(next++, 0, 1));
    await waitUntil(() => server.store.disk!.stats().writesInFlight === 0, 10_000, "disk writes done");
    assert.equal(server.store.has(first), true, "on disk");
    const sentinel = next++;
    await put(key(sentinel, 0, 1));
    await waitUntil(() => storedOf(events).includes(sentinel), 10_000, "a later chunk announced");
    assert.equal(removedOf(events).includes(0xf1n), false, "held on disk: not removed");
    // more chunks push it off the disk too: now it is gone, and said so once
    while (server.store.has(first)) {
      await put(key(next++, 0, 1));
      await waitUntil(() => server.store.disk!.stats().writesInFlight === 0, 10_000, "disk writes done");
    }
    await waitUntil(() => removedOf(events).includes(0xf1n), 10_000, "the first chunk removed");
    assert.equal(removedOf(events).filter((h) => h === 0xf1n).length, 1);
    assert.equal(storedOf(events).filter((h) => h === 0xf1n).length, 1);
    // every hash announced and not removed is held now
    const last = key(next - 1n, 0, 1);
    await waitUntil(() => storedOf(events).includes(next - 1n), 10_000, "the last chunk announced");
    const announced = new Set(storedOf(events));
    for (const h of removedOf(events)) announced.delete(h);
    for (const h of announced)
      assert.ok(server.store.has(key(h, 0, 1)), `${h.toString(16)} announced, not held`);
    assert.ok(server.store.has(last));
  } finally {
    await c.close();
    await sub.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("without --kv-events-port the cache server opens no event socket", async () => {
  const server = await startCacheServer({ host: "127.0.0.1", port: 0, maxMemoryBytes: MiB });
  try {
    assert.equal(server.kvEventsEndpoint, undefined);
    assert.equal(server.kvEvents, undefined);
    assert.equal(server.store.onKey, undefined);
  } finally {
    await server.close();
  }
});

test("a disk tier of thousands of chunks kept from an earlier run is announced in full while the server already answers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-kvev-disk-"));
  // an earlier run's disk tier: many small chunks, several slices of the announcement
  const n = 16 * ANNOUNCE_SLICE;
  for (let i = 0; i < n; i += 256) {
    const files = [];
    for (let j = i; j < Math.min(n, i + 256); j++) {
      const obj = { key: key(BigInt(j + 1), 0, 1), payload: payloadOf(Buffer.alloc(16, j)), meta };
      files.push(writeFile(join(dir, objectFileName(j + 1)), Buffer.concat(objectFileParts(j + 1, obj))));
    }
    await Promise.all(files);
  }
  const server = await startCacheServer({
    host: "127.0.0.1",
    port: 0,
    maxMemoryBytes: 16 * MiB,
    diskDir: dir,
    maxDiskBytes: 64 * MiB,
    kvEvents: { port: 0, replayPort: 0 },
  });
  let announced = false;
  void server.diskAnnounced.then(() => (announced = true));
  const c = await RawConn.open(server.port);
  let sub: KvEventSubscriber | undefined;
  try {
    assert.equal(server.store.disk!.stats().objects, n, "every chunk re-indexed");
    // a request is answered before the announcement of the disk's chunks is through
    assert.equal(await c.exist(key(BigInt(n), 0, 1)), true);
    assert.equal(announced, false, "answered while the disk's chunks were still being announced");
    const l = await listen(server);
    sub = l.sub;
    await server.diskAnnounced;
    assert.equal(server.kvEvents!.size, n);
    await waitUntil(() => storedOf(l.events).length >= n, 10_000, "every chunk announced");
    assert.equal(new Set(storedOf(l.events)).size, n);
    assert.deepEqual(removedOf(l.events), []);
  } finally {
    await c.close();
    await sub?.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
