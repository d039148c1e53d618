// The router hashes a prompt as each engine's release does (its /version): tagged extra keys from
// vLLM 0.31, the fixed default seed from 0.29, hash_block_size where the engine hashes finer than its
// blocks. Sims claiming vLLM 0.32, started without a hash seed, behind a router given none: a salted
// long prompt goes back to the engine holding it as a KV hit.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { computeBlockHashes } from "../../../src/protocol/block-hashing.js";
import { hashUnitOf } from "../../../src/router/kv/prompt-hashes.js";
import { expectKvHits, routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { kvEventsOf, startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const LONG =
  "You are a careful assistant. " + "Answer every question about the rivers of Europe in detail. ".repeat(30);

function sim(version: string): Promise<RunningSim> {
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: "tcp://127.0.0.1:0",
    replay_endpoint: "tcp://127.0.0.1:0",
  });
  // no --hash-seed and no PYTHONHASHSEED: the release's own default
  return startTestSim(MODEL, ["--kv-events-config", kv, "--vllm-version", version, "--time-scale", "0.05"]);
}

for (const version of ["0.32.0", "0.30.0"]) {
  test(`engines claiming vLLM ${version} and a router without a hash seed: a salted prompt is routed back to its engine as a KV hit`, async () => {
    const sims = [await sim(version), await sim(version)];
    const router = await routerFor(
      sims.map((s) => ({ url: s.url, kvEvents: kvEventsOf(s) })),
      { policy: "kv" },
    );
    const cache = router.router.cache;
    try {
      await waitUntil(
        () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
        10_000,
        "sims",
      );
      const body = {
        model: MODEL,
        messages: [
          { role: "system", content: LONG },
          { role: "user", content: "Which is longest?" },
        ],
        max_tokens: 2,
        cache_salt: "tenant-a",
      };
      const first = await routeOf(router.url, "/v1/chat/completions", body);
      const home = first.engine!;
      await waitUntil(() => cache.kv.blocksOf(home) > 10 && cache.kvRouted(home), 10_000, "events indexed");
      await expectKvHits(router.url, "/v1/chat/completions", body, home, 16 * 10);
      // another salt shares nothing with it
      const other = await routeOf(router.url, "/v1/chat/completions", { ...body, cache_salt: "tenant-b" });
      assert.equal(Number(other.predicted_cached_tokens), 0);
    } finally {
      await router.close();
      for (const s of sims) await s.close();
    }
  });
}

test("an engine hashing finer than its blocks (hash_block_size) is matched by the chained hash at each block's end", () => {
  assert.equal(hashUnitOf({ hash_block_size: "None" }, 16), 16);
  assert.equal(hashUnitOf(undefined, 16), 16);
  assert.equal(hashUnitOf({ hash_block_size: "16" }, 64), 16);
  assert.equal(hashUnitOf({ hash_block_size: "24" }, 64), 64, "not a divisor: the block size");
  // vLLM's BlockHashListWithBlockSize: the 32-token block's hash is the second 16-token hash
  const tokens = Array.from({ length: 64 }, (_, i) => (i * 31) % 5000);
  const fine = computeBlockHashes(tokens, { blockSize: 16, hashSeed: "vllm-none-hash" }).ids;
  const coarse = computeBlockHashes(tokens, { blockSize: 32, hashSeed: "vllm-none-hash" }).ids;
  assert.notEqual(coarse[0], fine[1], "a block hashed whole is not what such an engine publishes");
});
