import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startFakeEngine, type FakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";
import type { RunningRouter } from "../../../src/router/index.js";

let e1: FakeEngine;
let e2: FakeEngine;
let router: RunningRouter;

before(async () => {
  e1 = await startFakeEngine({ models: ["fake/model-a"], adapters: { "sql-lora": "fake/model-a" } });
  e2 = await startFakeEngine({ models: ["fake/model-a", "fake/model-b"] });
  router = await routerFor([e1.url, e2.url], { policy: "round-robin", aliases: { small: "fake/model-b" } });
  await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both engines");
});
after(async () => {
  await router.close();
  await e1.close();
  await e2.close();
});

function strip(x: unknown): unknown {
  // ids and timestamps differ per call; everything else must match
  return JSON.parse(JSON.stringify(x, (k, v) => (k === "id" || k === "created" ? undefined : v)));
}

test("openai client: same results through the router as direct, streaming and not, usage included", async () => {
  const direct = new OpenAI({ baseURL: `${e2.url}/v1`, apiKey: "x", maxRetries: 0 });
  const via = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "x", maxRetries: 0 });
  const chatReq = {
    model: "fake/model-b",
    messages: [{ role: "user" as const, content: "hi" }],
    max_tokens: 5,
  };
  const a = await direct.chat.completions.create(chatReq);
  const b = await via.chat.completions.create(chatReq);
  assert.deepEqual(strip(b), strip(a));
  assert.equal(b.usage?.completion_tokens, 5);

  const compReq = { model: "fake/model-b", prompt: "hello", max_tokens: 3 };
  assert.deepEqual(
    strip(await via.completions.create(compReq)),
    strip(await direct.completions.create(compReq)),
  );

  const collect = async (client: OpenAI) => {
    const chunks: unknown[] = [];
    const s = await client.chat.completions.create({
      ...chatReq,
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const c of s) chunks.push(strip(c));
    return chunks;
  };
  const sd = await collect(direct);
  const sv = await collect(via);
  assert.deepEqual(sv, sd);
  assert.equal(sv.length, 1 + 5 + 1, "role chunk, 5 content chunks, usage chunk");
  assert.deepEqual((sv.at(-1) as { usage: unknown }).usage, {
    prompt_tokens: 7,
    total_tokens: 12,
    completion_tokens: 5,
  });

  const cs = async (client: OpenAI) => {
    const out: unknown[] = [];
    for await (const c of await client.completions.create({ ...compReq, stream: true })) out.push(strip(c));
    return out;
  };
  assert.deepEqual(await cs(via), await cs(direct));
});

test("/v1/models lists every model once, adapters with their parent, aliases", async () => {
  const via = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "x", maxRetries: 0 });
  const ids: string[] = [];
  const cards: Record<string, unknown>[] = [];
  for await (const m of via.models.list()) {
    ids.push(m.id);
    cards.push(m as unknown as Record<string, unknown>);
  }
  assert.deepEqual([...ids].sort(), ["fake/model-a", "fake/model-b", "small", "sql-lora"]);
  assert.equal(cards.find((c) => c.id === "sql-lora")!.parent, "fake/model-a");
});

test("routes by model: only engines serving it; adapters to their engine; aliases rewritten", async () => {
  const before1 = e1.hits;
  for (let i = 0; i < 4; i++) {
    const r = await post(`${router.url}/v1/completions`, {
      model: "fake/model-b",
      prompt: "x",
      max_tokens: 1,
    });
    assert.equal(r.status, 200);
  }
  assert.equal(e1.hits, before1, "engine 1 does not serve model-b");
  const r = await post(`${router.url}/v1/completions`, { model: "sql-lora", prompt: "x", max_tokens: 1 });
  assert.equal(r.status, 200);
  assert.equal(e1.hits, before1 + 1);
  const a = await post(`${router.url}/v1/completions`, { model: "small", prompt: "x", max_tokens: 1 });
  assert.equal(a.status, 200);
  assert.equal(JSON.parse(e2.lastBody).model, "fake/model-b");
});

test("round-robin spreads a shared model over both engines", async () => {
  const h1 = e1.hits;
  const h2 = e2.hits;
  for (let i = 0; i < 10; i++) {
    const r = await post(`${router.url}/v1/completions`, {
      model: "fake/model-a",
      prompt: "x",
      max_tokens: 1,
    });
    await r.arrayBuffer();
  }
  assert.equal(e1.hits - h1, 5);
  assert.equal(e2.hits - h2, 5);
});

test("original bytes go upstream untouched; the engine gets the router's own X-Request-Id, the client its own back", async () => {
  const raw = '{"model":"fake/model-b",   "prompt":"x","max_tokens":1, "extra_field":{"k":[1,2]}}';
  const r = await post(`${router.url}/v1/completions`, raw, { "x-request-id": "req-123" });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-request-id"), "req-123");
  assert.equal(e2.lastBody, raw);
  // vLLM names the request by it (and aborts by it): a client's chosen id never reaches an engine
  assert.match(String(e2.lastHeaders!["x-request-id"]), /^[0-9a-f-]{36}$/);
  const r2 = await post(`${router.url}/v1/completions`, raw);
  await r2.arrayBuffer();
  assert.match(String(e2.lastHeaders!["x-request-id"]), /^[0-9a-f-]{36}$/);
});

test("unknown model → 404 in OpenAI format; pooling, tokenize and multipart audio pass through", async () => {
  const r = await post(`${router.url}/v1/chat/completions`, { model: "nope", messages: [] });
  assert.equal(r.status, 404);
  const body = (await r.json()) as { error: { type: string; code: number; param: string } };
  assert.equal(body.error.type, "NotFoundError");
  assert.equal(body.error.code, 404);
  for (const path of [
    "/v1/embeddings",
    "/tokenize",
    "/detokenize",
    "/v1/rerank",
    "/rerank",
    "/v1/score",
    "/score",
    "/v1/responses",
  ]) {
    const t = await post(`${router.url}${path}`, { model: "fake/model-b", input: "abc", prompt: "abc" });
    assert.equal(t.status, 200, path);
    assert.equal(((await t.json()) as { path: string }).path, path);
  }
  const form = new FormData();
  form.append("model", "fake/model-b");
  form.append("file", new Blob([new Uint8Array(200_000).fill(7)]), "a.wav");
  const a = await fetch(`${router.url}/v1/audio/transcriptions`, { method: "POST", body: form });
  assert.equal(a.status, 200);
  const echoed = (await a.json()) as { bytes: number; contentType: string };
  assert.ok(echoed.bytes > 200_000);
  assert.match(echoed.contentType, /^multipart\/form-data; boundary=/);
});

test("client closing a stream aborts the upstream request", async () => {
  const slow = await startFakeEngine({ models: ["fake/slow"], tokenDelayMs: 50 });
  const r = await routerFor([slow.url]);
  try {
    const res = await post(`${r.url}/v1/completions`, {
      model: "fake/slow",
      prompt: "x",
      max_tokens: 1000,
      stream: true,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    await waitUntil(() => slow.aborted === 1, 3000, "upstream abort");
    assert.equal(slow.active, 0);
    await waitUntil(() => r.router.registry.snapshot()[0]!.inFlight === 0, 2000, "in-flight released");
  } finally {
    await r.close();
    await slow.close();
  }
});

test("engine API key injected; client's Authorization never forwarded when one is configured", async () => {
  const sec = await startFakeEngine({ models: ["fake/sec"], apiKey: "engine-secret" });
  const r = await routerFor([sec.url], { engineApiKey: "engine-secret" });
  try {
    const res = await post(
      `${r.url}/v1/completions`,
      { model: "fake/sec", prompt: "x", max_tokens: 1 },
      {
        authorization: "Bearer client-key",
      },
    );
    assert.equal(res.status, 200);
    assert.equal(sec.lastHeaders!.authorization, "Bearer engine-secret");
  } finally {
    await r.close();
    await sec.close();
  }
});

test("SSE keep-alive comments while a stream waits for its first chunk", async () => {
  const slow = await startFakeEngine({ models: ["fake/slow"], firstTokenDelayMs: 400 });
  const r = await routerFor([slow.url], { timeouts: { keepAlive: 100 } });
  try {
    const res = await post(`${r.url}/v1/completions`, {
      model: "fake/slow",
      prompt: "x",
      max_tokens: 2,
      stream: true,
    });
    const text = await res.text();
    assert.equal(res.status, 200);
    assert.match(text, /^: keep-alive\n\n/);
    assert.match(text, /data: \[DONE\]\n\n$/);
  } finally {
    await r.close();
    await slow.close();
  }
});

test("/engines, /health, /ready and switchyard_ metrics", async () => {
  const eng = (await (await fetch(`${router.url}/engines`)).json()) as { engines: Record<string, unknown>[] };
  assert.equal(eng.engines.length, 2);
  assert.equal(eng.engines[0]!.healthy, true);
  assert.equal(eng.engines[0]!.blockSize, 16);
  assert.equal((await fetch(`${router.url}/health`)).status, 200);
  assert.equal((await fetch(`${router.url}/ready`)).status, 200);
  const m = await (await fetch(`${router.url}/metrics`)).text();
  for (const name of [
    "switchyard_requests_total",
    "switchyard_time_to_first_token_seconds",
    "switchyard_inter_chunk_latency_seconds",
    "switchyard_e2e_request_latency_seconds",
    "switchyard_retries_total",
    "switchyard_engine_ejections_total",
    "switchyard_engine_healthy",
    "switchyard_engine_in_flight",
    "switchyard_requests_in_flight",
    "switchyard_queue_depth",
  ]) {
    assert.ok(m.includes(`# TYPE ${name} `), name);
  }
  assert.match(
    m,
    /switchyard_requests_total\{model="fake\/model-b",engine="http:\/\/127[^"]+",status="200",policy="round-robin"\} \d+/,
  );
  assert.match(m, /switchyard_engine_healthy\{engine="[^"]+"\} 1/);
  assert.ok(!/^vllm:/m.test(m));
});
