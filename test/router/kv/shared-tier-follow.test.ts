// How the router follows its shared cache servers when something goes wrong, over real ZMQ against a
// hand-driven cache server on loopback: a configuration whose apply fails (a subscription that would
// not close) neither stops the configurations after it nor leaves a rejection unhandled, and an index
// dropped on the server's restart reads as not flowing until the restarted server's events arrive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Router, XPublisher } from "zeromq";
import { encodeBatch } from "../../../src/kvevents/codec.js";
import type { KvEventBatch } from "../../../src/kvevents/events.js";
import type { KvEventSubscriber } from "../../../src/kvevents/subscriber.js";
import type { CacheServerConfig } from "../../../src/router/config/kv.js";
import { SharedTiers } from "../../../src/router/kv/tier-index.js";
import { waitUntil } from "../../helpers/router.js";

const CHUNK = 256;

/** A cache server's event feed driven by hand: its PUB socket (XPUB, to see the subscription) and its replay ROUTER. */
async function fakeFeed() {
  const xpub = new XPublisher({ linger: 0 });
  await xpub.bind("tcp://127.0.0.1:*");
  const replay = new Router({ linger: 0 });
  await replay.bind("tcp://127.0.0.1:*");
  const seqFrame = (seq: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(seq));
    return b;
  };
  return {
    events: xpub.lastEndpoint!,
    replay: replay.lastEndpoint!,
    async subscribed(): Promise<void> {
      const [msg] = await xpub.receive();
      assert.equal(msg![0], 1);
    },
    send(seq: number, batch: KvEventBatch): Promise<void> {
      return xpub.send([Buffer.alloc(0), seqFrame(seq), encodeBatch(batch)]);
    },
    /** takes the next replay request and answers it with `have` (seq → batch) from its start on; the start */
    async serveReplay(have: ReadonlyMap<number, KvEventBatch>): Promise<number> {
      const frames = await replay.receive();
      const start = Number(frames.at(-1)!.readBigUInt64BE());
      for (const [s, b] of [...have].sort((x, y) => x[0] - y[0]))
        if (s >= start) await replay.send([frames[0]!, Buffer.alloc(0), seqFrame(s), encodeBatch(b)]);
      const end = Buffer.alloc(8, 0xff);
      await replay.send([frames[0]!, Buffer.alloc(0), end, Buffer.alloc(0)]);
      return start;
    },
    close(): void {
      xpub.close();
      replay.close();
    },
  };
}

/** one batch announcing chunk hashes the server now holds */
const stored = (...hashes: bigint[]): KvEventBatch => ({
  ts: 1763700000,
  events: [
    {
      type: "BlockStored",
      blockHashes: hashes,
      parentBlockHash: null,
      tokenIds: [],
      blockSize: CHUNK,
      loraId: null,
      medium: "LMCACHE_SHARED",
    },
  ],
  dataParallelRank: null,
});

const server = (name: string, events: string, replay?: string): CacheServerConfig => ({
  name,
  events,
  ...(replay ? { replay } : {}),
  bandwidthGbps: 100,
  chunkTokens: CHUNK,
  maxChunks: 1000,
});

test("a cache-server configuration that fails to apply neither stops the next one nor goes unhandled", async () => {
  const a = await fakeFeed();
  const b = await fakeFeed();
  const tiers = new SharedTiers(() => 64 * 2 ** 20);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  let real: KvEventSubscriber | undefined;
  try {
    await tiers.apply([server("a", a.events)]);
    const tier = tiers.get("a")!;
    real = tier.sub;
    assert.ok(real, "subscribed to a");
    // a subscription that will not close: dropping server a from the configuration fails
    tier.sub = {
      close: () => Promise.reject(new Error("the socket would not close")),
    } as unknown as KvEventSubscriber;
    // as the router applies a reloaded configuration: without waiting on it
    void tiers.apply([]);
    await tiers.apply([server("b", b.events)]);
    assert.equal(tiers.get("a"), undefined);
    assert.ok(tiers.get("b")?.sub, "the configuration after the failed one is applied");
    await b.subscribed();
    await b.send(0, stored(1n, 2n));
    await waitUntil(() => tiers.get("b")!.index.size === 2, 10_000, "server b's chunks");
    // a rejection left unhandled would surface by now
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
    await real?.close();
    await tiers.close();
    a.close();
    b.close();
  }
});

test("a tier index dropped on its cache server's restart reads as not flowing until the restarted server's events arrive", async () => {
  const feed = await fakeFeed();
  const tiers = new SharedTiers(() => 64 * 2 ** 20);
  try {
    await tiers.apply([server("shared", feed.events, feed.replay)]);
    const tier = tiers.get("shared")!;
    // joining, the router asks for what the server announced before: nothing yet
    assert.equal(await feed.serveReplay(new Map()), 0);
    await feed.subscribed();
    for (let s = 0; s < 3; s++) await feed.send(s, stored(BigInt(10 + s)));
    await waitUntil(() => tier.index.size === 3, 10_000, "the chunks announced");
    assert.equal(tier.flowing, true);
    // the server restarts and numbers from 0 again; the router hears its seqs 1 and 2, which confirm
    // the restart, and asks the new server's replay for seq 0 on
    const restarted = new Map([0, 1, 2].map((s) => [s, stored(BigInt(20 + s))] as const));
    await feed.send(1, restarted.get(1)!);
    await feed.send(2, restarted.get(2)!);
    await waitUntil(() => tier.purgedChunks > 0, 10_000, "the restart's purge");
    assert.equal(tier.purgedChunks, 3);
    assert.equal(tier.index.size, 0);
    // the index is empty and nothing of the new server's has arrived yet: the feed does not flow
    assert.equal(tier.flowing, false);
    assert.equal(await feed.serveReplay(restarted), 0);
    await waitUntil(() => tier.flowing, 10_000, "the restarted server's events");
    await waitUntil(() => tier.index.has(22n), 10_000, "the restarted server's chunks");
    assert.ok(!tier.index.has(10n), "the chunks from before the restart stay dropped");
  } finally {
    await tiers.close();
    feed.close();
  }
});
