// Per-tenant limits through the live router with the openai client: requests per minute, concurrent
// requests, completion and prompt tokens per minute settled from the engines' usage (streamed and
// not), the usage event added for token-limited streams and stripped for clients that did not ask,
// 429 + Retry-After naming the limit, per-tenant metrics, and limits changed by a reload.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { parseConfig } from "../../src/router/config/config.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { routerFor, waitUntil } from "../helpers/router.js";

const MODEL = "fake/model-a";
const KEYS = { rpm: "sk-rpm-000000000000", conc: "sk-conc-00000000000", tok: "sk-tok-000000000000" };

function tenancy(limits: Record<string, Record<string, number>>) {
  return {
    tenants: Object.fromEntries(Object.entries(limits).map(([t, l]) => [t, { limits: l }])),
    keys: Object.entries(KEYS).map(([tenant, k]) => ({ hash: hashKey(k), tenant })),
  };
}

function client(url: string, key: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 10_000 });
}

async function rateLimited(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.RateLimitError>> {
  const e = await p.then(
    () => assert.fail("expected 429"),
    (err: unknown) => err,
  );
  assert.ok(e instanceof OpenAI.RateLimitError, `expected RateLimitError, got ${String(e)}`);
  return e;
}

test("requests per minute and concurrency: 429 with Retry-After and the limit named; slots come back", async () => {
  const eng = await startFakeEngine({ tokenDelayMs: 50 });
  const r = await routerFor([eng.url], {
    tenancy: tenancy({ rpm: { requestsPerMinute: 3 }, conc: { maxConcurrent: 2 }, tok: {} }),
    // no admin key here: the tenant series are read from an open page
    metrics: { access: "open" },
  });
  try {
    const c = client(r.url, KEYS.rpm);
    const one = () => c.completions.create({ model: MODEL, prompt: "x", max_tokens: 1 });
    for (let i = 0; i < 3; i++) await one();
    const e = await rateLimited(one());
    assert.equal(e.headers.get("x-ratelimit-limit"), "requests_per_minute");
    const retry = Number(e.headers.get("retry-after"));
    assert.ok(retry >= 1 && retry <= 20, `Retry-After ${retry}: one request's refill at 3/min is 20 s`);
    assert.match(e.message, /tenant 'rpm' is over its requests per minute limit \(3\)/);

    // concurrency: two slow streams hold both slots, the third is refused, then one finishes
    const cc = client(r.url, KEYS.conc);
    const stream = () =>
      cc.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 10,
        stream: true,
      });
    const s1 = await stream();
    const s2 = await stream();
    const e2 = await rateLimited(stream());
    assert.equal(e2.headers.get("x-ratelimit-limit"), "concurrent_requests");
    assert.equal(e2.headers.get("retry-after"), "1");
    for await (const _ of s1) void _;
    for await (const _ of s2) void _;
    await waitUntil(() => r.router.tenancy.localInFlight("conc") === 0, 2000, "slots released");
    const s3 = await stream();
    for await (const _ of s3) void _;
    // a client that goes away mid-stream frees its slot too
    const s4 = await stream();
    s4.controller.abort();
    await waitUntil(() => r.router.tenancy.localInFlight("conc") === 0, 2000, "aborted slot released");

    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    assert.match(metrics, /switchyard_tenant_rejected_total\{tenant="rpm",limit="requests_per_minute"\} 1/);
    assert.match(metrics, /switchyard_tenant_rejected_total\{tenant="conc",limit="concurrent_requests"\} 1/);
    assert.match(metrics, /switchyard_tenant_requests_total\{tenant="rpm",status="429"\} 1/);
    assert.match(metrics, /switchyard_tenant_requests_total\{tenant="rpm",status="200"\} 3/);
  } finally {
    await r.close();
    await eng.close();
  }
});

test("completion tokens per minute from stream usage: usage added for the limit, stripped for the client", async () => {
  const eng = await startFakeEngine();
  const r = await routerFor([eng.url], {
    tenancy: tenancy({ rpm: {}, conc: {}, tok: { completionTokensPerMinute: 10 } }),
    metrics: { access: "open" },
  });
  try {
    const c = client(r.url, KEYS.tok);
    const run = async (includeUsage: boolean) => {
      const s = await c.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 8,
        stream: true,
        ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      });
      const chunks = [];
      for await (const ch of s) chunks.push(ch);
      return chunks;
    };
    const plain = await run(false);
    const sent = JSON.parse(eng.lastBody) as { stream_options?: { include_usage?: boolean } };
    assert.equal(sent.stream_options?.include_usage, true, "the router asked the engine for usage");
    assert.ok(
      plain.every((ch) => ch.usage == null && ch.choices.length > 0),
      "the client that did not ask sees no usage event (chunks carry usage: null, as with include_usage)",
    );
    assert.equal(
      plain.map((ch) => ch.choices[0]?.delta.content ?? "").join(""),
      "tok tok tok tok tok tok tok tok",
    );
    // 8 of 10 used; the bucket is not in debt, so one more passes and puts it at -6
    const asked = await run(true);
    const last = asked[asked.length - 1]!;
    assert.equal(last.usage?.completion_tokens, 8, "a client that asked keeps its usage event");
    const e = await rateLimited(run(false));
    assert.equal(e.headers.get("x-ratelimit-limit"), "completion_tokens_per_minute");
    const retry = Number(e.headers.get("retry-after"));
    assert.ok(retry >= 30 && retry <= 60, `Retry-After ${retry} s: 7 tokens at 10/min ≈ 42 s`);
    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    assert.match(metrics, /switchyard_tenant_tokens_total\{tenant="tok",kind="completion"\} 16/);
    assert.match(metrics, /switchyard_tenant_tokens_total\{tenant="tok",kind="prompt"\} 14/);
  } finally {
    await r.close();
    await eng.close();
  }
});

test("prompt tokens per minute settled from non-streamed usage; a reload raises the limit", async () => {
  const eng = await startFakeEngine();
  const limits = { rpm: {}, conc: {}, tok: { promptTokensPerMinute: 20 } };
  const r = await routerFor([eng.url], { tenancy: tenancy(limits) });
  try {
    const c = client(r.url, KEYS.tok);
    // the fake engine reports 7 prompt tokens; the router reserved ~body/4 and settles to 7
    const one = () => c.completions.create({ model: MODEL, prompt: "x", max_tokens: 1 });
    const first = await one();
    assert.equal(first.usage?.prompt_tokens, 7);
    await one();
    // 6 left < the next estimate (~15 bytes/4 + …): refused, naming the prompt limit
    let refused: InstanceType<typeof OpenAI.RateLimitError> | undefined;
    for (let i = 0; i < 3 && !refused; i++) {
      refused = await one().then(
        () => undefined,
        (err: unknown) => (err instanceof OpenAI.RateLimitError ? err : Promise.reject(err)),
      );
    }
    assert.ok(refused, "the prompt budget ran out");
    assert.equal(refused.headers.get("x-ratelimit-limit"), "prompt_tokens_per_minute");
    // hot reload: the new limit applies to the next request (the bucket keeps its level, refilling faster)
    r.router.reconfigure(
      parseConfig({
        ...r.router.config,
        tenancy: tenancy({ rpm: {}, conc: {}, tok: { promptTokensPerMinute: 6_000_000 } }),
      }),
    );
    await waitUntil(() => true, 0, "");
    await new Promise((res) => setTimeout(res, 50));
    await one();
  } finally {
    await r.close();
    await eng.close();
  }
});
