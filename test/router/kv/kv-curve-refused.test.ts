// An engine whose KV-event publisher fails the router's CURVE handshake is routed by the approximate
// prefix index from the first refused handshake, whether or not it has computed a prompt yet: the
// fresh-engine rule reads an engine's silence as an empty cache, and a publisher the router cannot hear
// is silent for another reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { writeKeyDir } from "../../../src/kvevents/curve.js";
import { routerFor, waitUntil } from "../../helpers/router.js";
import { kvEventsOf, startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

test("an engine whose publisher fails the CURVE handshake is not KV-routed, even before it computes a prompt", async () => {
  const root = mkdtempSync(join(tmpdir(), "switchyard-kv-curve-"));
  const engines = curveKeyPair();
  const router = curveKeyPair();
  writeKeyDir(join(root, "router"), router, { serverKey: engines.publicKey });
  writeKeyDir(join(root, "forger"), curveKeyPair(), { clientKeys: [router.publicKey] });
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: "tcp://127.0.0.1:0",
    replay_endpoint: "tcp://127.0.0.1:0",
  });
  const forged = await startTestSim(MODEL, [
    "--kv-events-config",
    kv,
    "--kv-curve-dir",
    join(root, "forger"),
  ]);
  const r = await routerFor([{ url: forged.url, kvEvents: kvEventsOf(forged) }], {
    policy: "kv",
    routing: { kvEvents: { curve: { dir: join(root, "router") } } },
  });
  const cache = r.router.cache;
  const state = () => cache.subs.states.get(forged.url);
  try {
    await waitUntil(() => (state()?.sub?.stats.authFailures ?? 0) > 0, 10_000, "a handshake refused");
    // judged on every reconcile and scrape: wait for a verdict past the start-up ones
    await waitUntil(
      () => cache.kvRouted(forged.url) || state()?.fallback === "handshake-refused",
      10_000,
      "a verdict",
    );
    assert.equal(cache.kvRouted(forged.url), false);
    assert.equal(state()!.fallback, "handshake-refused");
  } finally {
    await r.close();
    await forged.close();
    rmSync(root, { recursive: true, force: true });
  }
});
