// Token limits on every generating route, through the live router in front of the sim: usage read
// from Anthropic Messages and Responses answers (bodies and streams, `event:` lines and all) as from
// chat, wherever the body puts it (after megabytes of prompt_token_ids / prompt_logprobs).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../src/sim/app.js";
import type { RunningRouter } from "../../src/router/index.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { startSimWithEnv } from "../sim/sse.js";
import { routerFor, waitUntil } from "../router/util.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const CASES = [
  "chat",
  "messages",
  "messagesStream",
  "responses",
  "responsesStream",
  "tokenIds",
  "promptLogprobs",
] as const;
const keyOf = (tenant: string) => `sk-${tenant}-`.padEnd(24, "0");

let sim: RunningSim;
let r: RunningRouter;

before(async () => {
  // every answer runs to its max_tokens (no early EOS); the store on, for background responses
  sim = await startSimWithEnv(MODEL, ["--time-scale", "0.02", "--output-len-mean", "100000"], {
    VLLM_ENABLE_RESPONSES_API_STORE: "1",
  });
  const tenants: Record<string, { limits: Record<string, number> }> = {};
  for (const c of CASES) tenants[c] = { limits: { completionTokensPerMinute: 100 } };
  tenants.bg = { limits: { maxConcurrent: 1 } };
  tenants.free = { limits: {} };
  r = await routerFor([sim.url], {
    tenancy: {
      tenants,
      keys: Object.keys(tenants).map((t) => ({ hash: hashKey(keyOf(t)), tenant: t })),
    },
  });
  // the model's context is known (what a request without usage would be charged up to)
  await waitUntil(() => r.router.registry.maxModelLen(MODEL) !== undefined, 5000, "the model's context");
});

after(async () => {
  await r.close();
  await sim.close();
});

async function post(
  path: string,
  tenant: string,
  body: Record<string, unknown>,
): Promise<{ status: number; text: string; limit: string | null }> {
  const res = await fetch(`${r.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(tenant)}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text(), limit: res.headers.get("x-ratelimit-limit") };
}

const LONG = "the quick brown fox jumps over the lazy dog ".repeat(2000);
const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [{ role: "user", content }],
  max_tokens: 90,
  ...extra,
});

/** Each case's route and body: answers that run to 90 tokens. */
const REQUESTS: Record<(typeof CASES)[number], [string, Record<string, unknown>]> = {
  chat: ["/v1/chat/completions", chat("hello")],
  messages: ["/v1/messages", chat("hello")],
  messagesStream: ["/v1/messages", chat("hello", { stream: true })],
  responses: ["/v1/responses", { model: MODEL, input: "hello", max_output_tokens: 90 }],
  responsesStream: ["/v1/responses", { model: MODEL, input: "hello", max_output_tokens: 90, stream: true }],
  tokenIds: ["/v1/chat/completions", chat(LONG, { return_token_ids: true })],
  promptLogprobs: ["/v1/chat/completions", chat(LONG, { prompt_logprobs: 1 })],
};

for (const c of CASES) {
  const [path, body] = REQUESTS[c];
  test(`completion tokens per minute hold on ${path} (${c}): the request after two 90-token answers gets 429`, async () => {
    const first = await post(path, c, body);
    assert.equal(first.status, 200, first.text.slice(0, 300));
    if (c === "tokenIds" || c === "promptLogprobs") {
      // the layout that hid the usage: it comes first, megabytes of per-prompt-token data after it
      const k = first.text.indexOf('"usage":{');
      assert.ok(first.text.length - k > 16 * 1024, `usage ${first.text.length - k} bytes from the end`);
    }
    // 90 of 100 spent: not in debt, so one more passes (and puts the bucket at -80)
    assert.equal((await post(path, c, body)).status, 200);
    const third = await post(path, c, body);
    assert.equal(third.status, 429, third.text.slice(0, 300));
    assert.equal(third.limit, "completion_tokens_per_minute");
  });
}
