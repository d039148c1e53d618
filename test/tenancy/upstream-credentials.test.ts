// What reaches an engine, with tenancy on and disaggregated prefill/decode pools: recording engines
// (plain node:http servers keeping every request's headers) stand in for vLLM, and every request the
// router makes — the prefill step, the decode step, health probes, /v1/models and /metrics scrapes,
// the /version probe — is checked. The tenant's key never reaches an engine; the engine key does,
// everywhere, when one is configured; with tenancy off the client's own key passes through to both
// pools alike (prefill engines used to get it while decode engines did not, with tenancy on).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { hashKey } from "../../src/tenancy/keys.js";
import { routerFor, waitUntil } from "../router/util.js";

const TENANT_KEY = "sk-tenant-a-0123456789abcdef";
const ENGINE_KEY = "engine-secret-key";
const MODEL = "fake/model-a";

interface Seen {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

interface RecordingEngine {
  url: string;
  seen: Seen[];
  close(): Promise<void>;
}

/** A vLLM stand-in that records every request; answers prefill (kv_transfer_params) and decode. */
async function recordingEngine(): Promise<RecordingEngine> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    seen.push({ method: req.method ?? "", path, headers: req.headers });
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const json = (v: unknown, type = "application/json") => {
        const body = typeof v === "string" ? v : JSON.stringify(v);
        res.writeHead(200, { "content-type": type, "content-length": Buffer.byteLength(body) });
        res.end(body);
      };
      if (path === "/health") return json("", "text/plain");
      if (path === "/version") return json({ version: "0.11.0" });
      if (path === "/v1/models")
        return json({
          object: "list",
          data: [{ id: MODEL, object: "model", root: MODEL, max_model_len: 4096 }],
        });
      if (path === "/metrics")
        return json(
          'vllm:num_requests_running{model_name="m"} 0\nvllm:num_requests_waiting{model_name="m"} 0\n',
          "text/plain",
        );
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
      const prefill = (body.kv_transfer_params as { do_remote_decode?: boolean } | undefined)
        ?.do_remote_decode;
      const usage = { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 };
      if (body.stream === true) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(
          `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: MODEL, choices: [{ index: 0, delta: { content: "ok" }, finish_reason: "stop" }] })}\n\n`,
        );
        return void res.end("data: [DONE]\n\n");
      }
      return json({
        id: "c",
        object: "chat.completion",
        model: MODEL,
        choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
        usage,
        kv_transfer_params: prefill ? { remote_engine_id: "p", remote_block_ids: [1] } : null,
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Every header value an engine received, with where it came from. */
function headerValues(e: RecordingEngine): Array<{ where: string; value: string }> {
  const out: Array<{ where: string; value: string }> = [];
  for (const s of e.seen)
    for (const [name, v] of Object.entries(s.headers))
      for (const value of Array.isArray(v) ? v : [v ?? ""])
        out.push({ where: `${s.method} ${s.path} ${name}`, value });
  return out;
}

function paths(e: RecordingEngine): Set<string> {
  return new Set(e.seen.map((s) => `${s.method} ${s.path}`));
}

/** A fleet of one prefill and one decode engine behind a router; runs chat (streamed and not) through it. */
async function run(routerConfig: Record<string, unknown>, clientKey: string) {
  const prefill = await recordingEngine();
  const decode = await recordingEngine();
  const router = await routerFor(
    [
      { url: prefill.url, role: "prefill" },
      { url: decode.url, role: "decode" },
    ],
    { policy: "hybrid", ...routerConfig },
  );
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both engines");
    const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: clientKey, maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "hello" }];
    const chat = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 4 });
    assert.equal(chat.choices[0]!.message.content, "ok");
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 4,
      stream: true,
    });
    for await (const _ of stream) void _;
    await client.completions.create({ model: MODEL, prompt: "hello", max_tokens: 4 });
    // let every background loop (health, models, metrics, version) reach both engines
    await waitUntil(
      () =>
        [prefill, decode].every((e) =>
          ["GET /health", "GET /v1/models", "GET /metrics", "GET /version"].every((p) => paths(e).has(p)),
        ),
      5000,
      "probes and scrapes on both engines",
    );
    return { prefill, decode };
  } finally {
    await router.close();
    await prefill.close();
    await decode.close();
  }
}

test("tenancy with P/D pools: no engine ever receives the tenant's key (prefill, decode, probes, scrapes)", async () => {
  const tenancy = { tenants: { a: {} }, keys: [{ hash: hashKey(TENANT_KEY), tenant: "a" }] };
  const { prefill, decode } = await run({ tenancy }, TENANT_KEY);
  assert.ok(paths(prefill).has("POST /v1/chat/completions"), "the prefill step ran");
  assert.ok(paths(decode).has("POST /v1/chat/completions"), "the decode step ran");
  for (const e of [prefill, decode]) {
    for (const h of headerValues(e)) assert.ok(!h.value.includes(TENANT_KEY), `tenant key at ${h.where}`);
    for (const s of e.seen) assert.equal(s.headers.authorization, undefined, `${s.method} ${s.path}`);
  }
});

test("tenancy with P/D pools and an engine key: every call to every engine carries the engine key, never the tenant's", async () => {
  const tenancy = { tenants: { a: {} }, keys: [{ hash: hashKey(TENANT_KEY), tenant: "a" }] };
  const { prefill, decode } = await run({ tenancy, engineApiKey: ENGINE_KEY }, TENANT_KEY);
  for (const e of [prefill, decode]) {
    for (const h of headerValues(e)) assert.ok(!h.value.includes(TENANT_KEY), `tenant key at ${h.where}`);
    for (const s of e.seen)
      assert.equal(s.headers.authorization, `Bearer ${ENGINE_KEY}`, `${s.method} ${s.path} on ${e.url}`);
  }
});

test("tenancy off, no engine key: the client's own key reaches prefill and decode engines alike, never probes", async () => {
  const clientKey = "sk-client-own-key";
  const { prefill, decode } = await run({}, clientKey);
  for (const e of [prefill, decode]) {
    for (const s of e.seen) {
      const expected = s.method === "POST" ? `Bearer ${clientKey}` : undefined;
      assert.equal(s.headers.authorization, expected, `${s.method} ${s.path} on ${e.url}`);
    }
  }
});
