// Token limits on every generating route, through the live router in front of the sim: usage read
// from Anthropic Messages and Responses answers (bodies and streams, `event:` lines and all) as from
// chat, wherever the body puts it (after megabytes of prompt_token_ids / prompt_logprobs); and
// background Responses, which the router cannot hold inside a tenant's limits, refused for a limited
// tenant and left to an unlimited one.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../src/sim/app.js";
import type { RunningRouter } from "../../src/router/index.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { getText, metric } from "../sim/helpers.js";
import { startSimWithEnv } from "../sim/sse.js";
import { routerFor, waitUntil } from "../helpers/router.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const CASES = [
  "chat",
  "messages",
  "messagesStream",
  "responses",
  "responsesStream",
  "tokenIds",
  "promptLogprobs",
  "generateStream",
] as const;
const keyOf = (tenant: string) => `sk-${tenant}-`.padEnd(24, "0");

let sim: RunningSim;
let r: RunningRouter;

before(async () => {
  // every answer runs to its max_tokens (no early EOS); the store on, for background responses; token-in
  // generate served (vLLM 0.32 with --enable-scale-out)
  sim = await startSimWithEnv(
    MODEL,
    ["--time-scale", "0.02", "--output-len-mean", "100000", "--enable-scale-out", "--vllm-version", "0.32.0"],
    {
      VLLM_ENABLE_RESPONSES_API_STORE: "1",
    },
  );
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
  // token-in generate: its limits in sampling_params, its usage event asked for by the router
  generateStream: [
    "/inference/v1/generate",
    { model: MODEL, token_ids: [9906, 1070], sampling_params: { max_tokens: 90 }, stream: true },
  ],
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
    if (c === "generateStream") {
      assert.equal(
        first.text.indexOf('"usage":{'),
        -1,
        "the usage event the router asked for is not relayed",
      );
      assert.match(first.text, /data: \[DONE\]/);
    }
    // 90 of 100 spent: not in debt, so one more passes (and puts the bucket at -80)
    assert.equal((await post(path, c, body)).status, 200);
    const third = await post(path, c, body);
    assert.equal(third.status, 429, third.text.slice(0, 300));
    assert.equal(third.limit, "completion_tokens_per_minute");
  });
}

test("background Responses: refused for a tenant with maxConcurrent 1 (20 sent, at most 1 running), served without limits", async () => {
  const bg = { model: MODEL, input: "hello", max_output_tokens: 100_000, background: true, store: true };
  const answers = await Promise.all(Array.from({ length: 20 }, () => post("/v1/responses", "bg", bg)));
  const running = metric((await getText(`${sim.url}/metrics`)).text, "vllm:num_requests_running");
  assert.ok(running <= 1, `${running} requests running on the engine for a tenant limited to 1`);
  for (const a of answers) {
    if (a.status === 429) continue; // its one slot taken by a sibling while that one was refused
    assert.equal(a.status, 400, a.text.slice(0, 300));
    const e = JSON.parse(a.text) as { error: { param: string; message: string } };
    assert.equal(e.error.param, "background");
    assert.match(e.error.message, /background responses are not available to tenant 'bg'/);
  }
  await waitUntil(() => r.router.tenancy.localInFlight("bg") === 0, 2000, "slots released");
  // the same tenant's foreground request is served
  const fg = await post("/v1/responses", "bg", { model: MODEL, input: "hello", max_output_tokens: 5 });
  assert.equal(fg.status, 200, fg.text.slice(0, 300));
  // a tenant without concurrency or token limits keeps background responses
  const free = await post("/v1/responses", "free", { ...bg, max_output_tokens: 5 });
  assert.equal(free.status, 200, free.text.slice(0, 300));
  const id = (JSON.parse(free.text) as { id: string; background: boolean }).id;
  assert.match(id, /^resp_/);
});
