// The router reads an engine's /metrics whatever text-format version its Content-Type names: vLLM
// releases built with prometheus_client 0.22 or later answer `version=1.0.0`, earlier ones `0.0.4`,
// and the page itself is the same text. Sims claiming either release are scraped alike.
import { test } from "node:test";
import assert from "node:assert/strict";
import { routerFor, waitUntil } from "../../helpers/router.js";
import { startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

test("the router scrapes an engine answering text format 1.0.0 as one answering 0.0.4: block size and load read", async () => {
  const now = await startTestSim(MODEL, ["--vllm-version", "0.32.0", "--block-size", "32"]);
  const old = await startTestSim(MODEL, ["--vllm-version", "0.9.0", "--block-size", "32"]);
  try {
    const types = await Promise.all(
      [now, old].map(async (s) => (await fetch(`${s.url}/metrics`)).headers.get("content-type")),
    );
    assert.deepEqual(types, [
      "text/plain; version=1.0.0; charset=utf-8",
      "text/plain; version=0.0.4; charset=utf-8",
    ]);
    const router = await routerFor([now.url, old.url], { policy: "round-robin" });
    try {
      // the block size comes from vllm:cache_config_info, so each page was read
      await waitUntil(
        () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 32),
        5000,
        "both engines scraped",
      );
      for (const v of router.router.registry.snapshot()) assert.equal(v.kvUsage, 0);
    } finally {
      await router.close();
    }
  } finally {
    await now.close();
    await old.close();
  }
});
