// CURVE on a cache server's KV events (`cache-server --kv-events-curve-dir`, the router's
// `routing.cacheServers[].serverKey` with `routing.kvEvents.curve`): the router holding its keys indexes
// the chunks a real cache server announces; a router that names another key for the server, or has no
// keys at all, gets nothing of them; a router with keys and no key for the server does not subscribe.
// Key directories are laid out as `switchyard up --kv-curve --cache-server` writes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { startCacheServer } from "../../../src/cacheserver/server.js";
import { loadCurveKeys, writeKeyDir, type CurveKeys } from "../../../src/kvevents/curve.js";
import type { CacheServerConfig } from "../../../src/router/config/kv.js";
import { SharedTiers } from "../../../src/router/kv/tier-index.js";
import { waitUntil } from "../../helpers/router.js";
import { RawConn } from "../../cacheserver/raw.js";

const MiB = 2 ** 20;
/** one chunk of one rank (world size 1), as LMCache 0.5 names it */
const key = (hash: bigint) => `meta-llama/Llama-3.1-8B-Instruct@1@0@${hash.toString(16)}@bfloat16`;

const config = (events: string, replay: string, serverKey?: string): CacheServerConfig => ({
  name: "shared",
  events,
  replay,
  bandwidthGbps: 100,
  chunkTokens: 256,
  maxChunks: 1000,
  ...(serverKey ? { serverKey } : {}),
});

test("a cache server's CURVE events reach the router that names its key, and no router that names another key or has none", async () => {
  const root = mkdtempSync(join(tmpdir(), "switchyard-tier-curve-"));
  const serverPair = curveKeyPair();
  const routerPair = curveKeyPair();
  writeKeyDir(join(root, "cache-server"), serverPair, { clientKeys: [routerPair.publicKey] });
  writeKeyDir(join(root, "router"), routerPair);
  const routerKeys: CurveKeys = loadCurveKeys({ dir: join(root, "router") });
  const server = await startCacheServer({
    host: "127.0.0.1",
    port: 0,
    maxMemoryBytes: 64 * MiB,
    kvEvents: { port: 0, replayPort: 0, curve: loadCurveKeys({ dir: join(root, "cache-server") }) },
  });
  const events = server.kvEventsEndpoint!;
  const replay = server.kvEventsReplayEndpoint!;
  const good = new SharedTiers(
    () => 64 * MiB,
    () => false,
    () => routerKeys,
  );
  const misled = new SharedTiers(
    () => 64 * MiB,
    () => false,
    () => routerKeys,
  );
  const plain = new SharedTiers(() => 64 * MiB);
  const c = await RawConn.open(server.port);
  try {
    await good.apply([config(events, replay, serverPair.publicKey)]);
    await misled.apply([config(events, replay, curveKeyPair().publicKey)]);
    await plain.apply([config(events, replay)]);
    await c.put(key(0xa1n), Buffer.alloc(64 * 1024, 7));
    await waitUntil(() => good.get("shared")!.index.has(0xa1n), 10_000, "the chunk at the keyed router");
    assert.equal(good.get("shared")!.flowing, true);
    // the others' handshakes fail (the wrong server key; no CURVE at all): a second chunk, seen by the
    // keyed router, has not reached them either
    await c.put(key(0xa2n), Buffer.alloc(64 * 1024, 7));
    await waitUntil(() => good.get("shared")!.index.has(0xa2n), 10_000, "the second chunk");
    await new Promise((r) => setTimeout(r, 300));
    for (const [what, tiers] of [
      ["another key", misled],
      ["no keys", plain],
    ] as const) {
      assert.equal(tiers.get("shared")!.index.size, 0, what);
      assert.equal(tiers.get("shared")!.flowing, false, what);
    }
  } finally {
    await c.close();
    await good.close();
    await misled.close();
    await plain.close();
    await server.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test("a router with CURVE keys but no key for a cache server does not take its events in plain: it does not subscribe", async () => {
  const root = mkdtempSync(join(tmpdir(), "switchyard-tier-curve-"));
  writeKeyDir(join(root, "router"), curveKeyPair());
  const keys = loadCurveKeys({ dir: join(root, "router") });
  const tiers = new SharedTiers(
    () => 64 * MiB,
    () => false,
    () => keys,
  );
  try {
    await tiers.apply([config("tcp://127.0.0.1:5", "tcp://127.0.0.1:6")]);
    assert.equal(tiers.get("shared")!.sub, undefined);
    // marked plain on purpose (a server started without keys): subscribed
    await tiers.apply([{ ...config("tcp://127.0.0.1:5", "tcp://127.0.0.1:6"), plain: true }]);
    assert.ok(tiers.get("shared")!.sub);
  } finally {
    await tiers.close();
    rmSync(root, { recursive: true, force: true });
  }
});
