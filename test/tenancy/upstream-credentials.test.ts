// What reaches an engine, with tenancy on and disaggregated prefill/decode pools: recording engines
// (plain node:http servers keeping every request's headers) stand in for vLLM, and every request the
// router makes — the prefill step, the decode step, health probes, /v1/models and /metrics scrapes,
// the /version probe — is checked. The tenant's key never reaches an engine; the engine key does,
// everywhere, when one is configured; with tenancy off the client's own key passes through to both
// pools alike (prefill engines used to get it while decode engines did not, with tenancy on).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { hashKey } from "../../src/tenancy/keys.js";
import { startPdEngine, type PdEngine } from "../../bench/support/fakes/pd-engine.js";
import { routerFor, waitUntil } from "../helpers/router.js";

const TENANT_KEY = "sk-tenant-a-0123456789abcdef";
const ENGINE_KEY = "engine-secret-key";
const MODEL = "fake/model-a";

type RecordingEngine = PdEngine;

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
  const prefill = await startPdEngine(MODEL, "0.11.0");
  const decode = await startPdEngine(MODEL, "0.11.0");
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
