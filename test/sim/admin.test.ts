// Operations around generation: fault flags, LoRA adapters, sleep/wake, reset_prefix_cache, client
// disconnects, and the CLI's startup checks and shutdown.
import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePeftAdapter } from "../../bench/support/peft.js";
import { getText, metric, postJson, startTestSim, tokenIds } from "./helpers.js";

const OPT = "facebook/opt-125m";

test("--fail-rate 1 answers every generation request with --fail-status; --stall-ms delays", async () => {
  const sim = await startTestSim(OPT, ["--fail-rate", "1", "--fail-status", "503", "--stall-ms", "150"]);
  try {
    const t0 = performance.now();
    const r = await postJson(`${sim.url}/v1/completions`, { prompt: "hi" });
    assert.ok(performance.now() - t0 >= 140);
    assert.equal(r.status, 503);
    assert.match(r.json.error.message, /injected failure/);
    const models = await getText(`${sim.url}/v1/models`);
    assert.equal(models.status, 200, "only generation is faulted");
  } finally {
    await sim.close();
  }
});

test("LoRA: load → listed with parent, usable as model, hashed apart; unload", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-admin-lora-"));
  writePeftAdapter(join(dir, "sql"), { rank: 8, hidden: 64, layers: 2 });
  const sim = await startTestSim(
    "meta-llama/Llama-3.1-8B-Instruct",
    ["--time-scale", "0.05", "--enable-prompt-tokens-details", "--enable-lora"],
    { env: { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "1" } },
  );
  try {
    const load = await postJson(`${sim.url}/v1/load_lora_adapter`, {
      lora_name: "sql",
      lora_path: join(dir, "sql"),
    });
    assert.equal(load.status, 200, load.text);
    const dup = await postJson(`${sim.url}/v1/load_lora_adapter`, { lora_name: "sql", lora_path: "/x" });
    assert.equal(dup.status, 400);
    const models = JSON.parse((await getText(`${sim.url}/v1/models`)).text);
    const card = models.data.find((m: { id: string }) => m.id === "sql");
    assert.equal(card.parent, "meta-llama/Llama-3.1-8B-Instruct");
    assert.equal(card.root, join(dir, "sql"));
    const prompt = tokenIds(64, 3);
    const base = await postJson(`${sim.url}/v1/completions`, { prompt, max_tokens: 2 });
    const lora = await postJson(`${sim.url}/v1/completions`, { model: "sql", prompt, max_tokens: 2 });
    assert.equal(lora.status, 200, lora.text);
    assert.equal(lora.json.model, "sql");
    // the adapter name enters the block hashes: the base model's cached blocks are no hit for it
    assert.equal(base.json.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(lora.json.usage.prompt_tokens_details.cached_tokens, 0);
    const again = await postJson(`${sim.url}/v1/completions`, { model: "sql", prompt, max_tokens: 2 });
    assert.equal(again.json.usage.prompt_tokens_details.cached_tokens, 48);
    const un = await postJson(`${sim.url}/v1/unload_lora_adapter`, { lora_name: "sql" });
    assert.equal(un.status, 200);
    const gone = await postJson(`${sim.url}/v1/completions`, { model: "sql", prompt: "hi" });
    assert.equal(gone.status, 404);
  } finally {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("sleep / wake_up / is_sleeping, engine_sleep_state, and reset_prefix_cache", async () => {
  const sim = await startTestSim(OPT, ["--time-scale", "0.05", "--enable-prompt-tokens-details"]);
  try {
    const prompt = tokenIds(40, 5);
    await postJson(`${sim.url}/v1/completions`, { prompt, max_tokens: 1 });
    const hit = await postJson(`${sim.url}/v1/completions`, { prompt, max_tokens: 1 });
    assert.equal(hit.json.usage.prompt_tokens_details.cached_tokens, 32);
    assert.equal((await fetch(`${sim.url}/reset_prefix_cache`, { method: "POST" })).status, 200);
    const miss = await postJson(`${sim.url}/v1/completions`, { prompt, max_tokens: 1 });
    assert.equal(miss.json.usage.prompt_tokens_details.cached_tokens, 0);

    assert.equal((await fetch(`${sim.url}/sleep?level=1`, { method: "POST" })).status, 200);
    assert.deepEqual(JSON.parse((await getText(`${sim.url}/is_sleeping`)).text), { is_sleeping: true });
    assert.equal((await getText(`${sim.url}/health`)).status, 200, "a sleeping engine is alive");
    const m = (await getText(`${sim.url}/metrics`)).text;
    assert.equal(
      metric(
        m,
        'vllm:engine_sleep_state{model_name="facebook/opt-125m",engine="0",sleep_state="weights_offloaded"}',
      ),
      1,
    );
    assert.equal((await postJson(`${sim.url}/v1/completions`, { prompt: "hi" })).status, 503);
    assert.equal((await fetch(`${sim.url}/wake_up`, { method: "POST" })).status, 200);
    assert.deepEqual(JSON.parse((await getText(`${sim.url}/is_sleeping`)).text), { is_sleeping: false });
    assert.equal((await postJson(`${sim.url}/v1/completions`, { prompt: "hi", max_tokens: 1 })).status, 200);
  } finally {
    await sim.close();
  }
});

test("a client that disconnects mid-stream aborts its request in the engine at once", async () => {
  const sim = await startTestSim(OPT, ["--time-scale", "1"]);
  try {
    const ac = new AbortController();
    const res = await fetch(`${sim.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "go on", max_tokens: 2000, stream: true, ignore_eos: true }),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    await reader.read();
    assert.equal(sim.ctx.runtime.inFlight, 1);
    ac.abort();
    // a hang guard, not a bound: a request that ran on would end as "length", not "abort", below
    const end = Date.now() + 30_000; // timing-ok: a hang guard, polled
    while (sim.ctx.runtime.inFlight > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    assert.equal(sim.ctx.runtime.inFlight, 0);
    assert.equal(sim.ctx.runtime.snapshot().numRunning, 0);
    const m = (await getText(`${sim.url}/metrics`)).text;
    assert.equal(
      metric(
        m,
        'vllm:request_success_total{model_name="facebook/opt-125m",engine="0",finished_reason="abort"}',
      ),
      1,
    );
  } finally {
    await sim.close();
  }
});

test("CLI: refusals name the problem", async () => {
  const runs: Promise<void>[] = [];
  for (const [args, pattern] of [
    [["no/such-model"], /facebook\/opt-125m/],
    [[OPT, "--prefix-caching-hash-algo", "sha256"], /pickle/],
    [[OPT, "--prefix-caching-hash-algo", "xxhash"], /sha256_cbor/],
    [[OPT, "--kv-offloading-size", "1", "--kv-offloading-backend", "disk"], /native or lmcache/],
    [
      [OPT, "--kv-transfer-config", '{"kv_connector":"P2pNcclConnector","kv_role":"kv_both"}'],
      /LMCacheConnectorV1 or NixlConnector/,
    ],
  ] as const) {
    runs.push(
      (async () => {
        const p = spawnCli(["sim", ...args]);
        const code = await new Promise<number | null>((r) => p.child.once("exit", (c) => r(c)));
        assert.equal(code, 2, p.output());
        assert.match(p.output(), pattern);
      })(),
    );
  }
  await Promise.all(runs); // side by side: each start loads the whole CLI
});

test("CLI: --startup-delay answers 503 until ready, --crash-after exits abruptly, SIGTERM exits cleanly", async () => {
  const port = await freePort();
  const p = spawnCli([
    "sim",
    OPT,
    "--port",
    String(port),
    "--host",
    "127.0.0.1",
    // 3 s of 503s: a window a poll every 100 ms cannot miss even when this process gets little CPU
    "--startup-delay",
    "3",
    "--crash-after",
    "1",
  ]);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/health`, 20_000, 503);
    await waitForHttp(`http://127.0.0.1:${port}/health`, 10_000, 200);
    assert.match(p.output(), /curl -N http:\/\/127\.0\.0\.1:\d+\/v1\/completions/);
    const ok = await postJson(`http://127.0.0.1:${port}/v1/completions`, { prompt: "one", max_tokens: 1 });
    assert.equal(ok.status, 200);
    await assert.rejects(
      postJson(`http://127.0.0.1:${port}/v1/completions`, { prompt: "two", max_tokens: 1 }),
    );
    const code = await p.stop();
    assert.equal(code, 1);
  } finally {
    await p.stop("SIGKILL");
  }
  const port2 = await freePort();
  const q = spawnCli(["sim", OPT, "--port", String(port2), "--host", "127.0.0.1"]);
  await waitForHttp(`http://127.0.0.1:${port2}/health`);
  assert.equal(await q.stop("SIGTERM"), 0);
});
