// An adapter's prompt is routed by its KV events as vLLM 0.32 hashes it (`("lora", name, path)`), from
// the first request on: the router hashes a registry adapter no engine lists yet with its base's
// tokenizer and its registry path, so the blocks it stores are found again once it is loaded elsewhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePeftAdapter } from "../../../bench/support/peft.js";
import type { RunningSim } from "../../../src/sim/app.js";
import { expectKvHits, post, routeOf, routerFor, waitUntil } from "../../helpers/router.js";
import { kvEventsOf, startTestSim } from "../../sim/helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const LONG = "Answer every question about the rivers of Europe in detail. ".repeat(30);

function loraSim(): Promise<RunningSim> {
  const kv = JSON.stringify({
    enable_kv_cache_events: true,
    publisher: "zmq",
    endpoint: "tcp://127.0.0.1:0",
    replay_endpoint: "tcp://127.0.0.1:0",
  });
  return startTestSim(
    MODEL,
    [
      ...["--kv-events-config", kv, "--vllm-version", "0.32.0", "--time-scale", "0.05"],
      ...["--enable-lora", "--max-loras", "2", "--max-cpu-loras", "4", "--max-lora-rank", "8"],
    ],
    { env: { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" } },
  );
}

test("a repeated prompt on a registry adapter is routed back to the engine that served it as a KV hit, though another engine holds the adapter too; another adapter's same prompt predicts nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-router-lora-kv-"));
  for (const n of ["a1", "a2"])
    writePeftAdapter(join(dir, n), { rank: 8, hidden: 64, layers: 2, baseModel: MODEL });
  const sims = [await loraSim(), await loraSim()];
  const router = await routerFor(
    sims.map((s) => ({ url: s.url, kvEvents: kvEventsOf(s) })),
    { policy: "kv", lora: { dir, adapters: [] } },
  );
  const cache = router.router.cache;
  try {
    await waitUntil(
      () => router.router.registry.snapshot().every((v) => v.healthy && v.blockSize === 16),
      10_000,
      "sims",
    );
    const body = { model: "a1", prompt: LONG, max_tokens: 2 };
    // no engine has a1: the router loads it where it sends this
    const first = await routeOf(router.url, "/v1/completions", body);
    const home = first.engine!;
    const other = sims.find((s) => s.url !== home)!;
    const load = await post(`${other.url}/v1/load_lora_adapter`, {
      lora_name: "a1",
      lora_path: join(dir, "a1"),
    });
    assert.equal(load.status, 200, await load.text());
    await waitUntil(
      () =>
        router.router.registry.snapshot().every((v) => v.models.has("a1")) &&
        cache.kv.blocksOf(home) > 10 &&
        cache.kvRouted(home),
      10_000,
      "a1 on both, its blocks indexed",
    );
    await expectKvHits(router.url, "/v1/completions", body, home, 16 * 10);
    const a2 = await routeOf(router.url, "/v1/completions", { ...body, model: "a2" });
    assert.equal(Number(a2.predicted_cached_tokens), 0);
  } finally {
    await router.close();
    for (const s of sims) await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
