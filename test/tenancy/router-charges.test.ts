// What a tenant is charged when its answer's usage never arrives, through the live router in front of
// the sim: streams cut short by the client on every generating route, with limits on fields the
// engine ignores, several choices, lists of prompts and the client's own continuous usage stats. The
// charge must never be below what the engine generated (its vllm:generation_tokens_total). Also: a
// prompt sent chunked (no Content-Length) is held to the tenant's prompt budget once its body is
// read, and /load answers no anonymous client once keys exist.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import type { RunningSim } from "../../src/sim/app.js";
import type { RunningRouter } from "../../src/router/index.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { getText, metric } from "../sim/helpers.js";
import { startSimWithEnv } from "../sim/sse.js";
import { routerFor, waitUntil } from "../helpers/router.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const keyOf = (tenant: string) => `sk-${tenant}-`.padEnd(24, "0");
const msgs = [{ role: "user", content: "tell me a long story" }];
const prompts = (n: number) => Array.from({ length: n }, (_, i) => `prompt number ${i}`);
const continuous = { include_usage: true, continuous_usage_stats: true };

/** Each shape the client can cut short: its route, its body, and the events read before it hangs up. */
const SHAPES: Record<string, [string, Record<string, unknown>]> = {
  // Messages reads max_tokens alone: the tiny max_completion_tokens beside it is ignored by the engine
  messages: [
    "/v1/messages",
    { model: MODEL, messages: msgs, max_tokens: 2000, max_completion_tokens: 1, stream: true },
  ],
  completions: [
    "/v1/completions",
    { model: MODEL, prompt: "once upon a time", max_tokens: 2000, max_completion_tokens: 1, stream: true },
  ],
  generate: [
    "/inference/v1/generate",
    {
      model: MODEL,
      token_ids: [9906, 1070, 4320],
      sampling_params: { max_tokens: 2000, max_completion_tokens: 1 },
      stream: true,
    },
  ],
  invocationsPrompts: ["/invocations", { model: MODEL, prompt: prompts(20), max_tokens: 100, stream: true }],
  invocationsChat: ["/invocations", { model: MODEL, messages: msgs, n: 4, max_tokens: 500, stream: true }],
  completionsPromptList: [
    "/v1/completions",
    { model: MODEL, prompt: prompts(10), max_tokens: 300, stream: true, stream_options: continuous },
  ],
  chatN: [
    "/v1/chat/completions",
    { model: MODEL, messages: msgs, n: 10, max_tokens: 300, stream: true, stream_options: continuous },
  ],
  generateN: [
    "/inference/v1/generate",
    {
      model: MODEL,
      token_ids: [9906, 1070, 4320],
      sampling_params: { max_tokens: 300, n: 8 },
      stream: true,
      stream_options: continuous,
    },
  ],
};

let sim: RunningSim;
let r: RunningRouter;

before(async () => {
  // every answer runs to its max_tokens (no early EOS), slowly enough to be cut; token-in generate served
  sim = await startSimWithEnv(
    MODEL,
    ["--time-scale", "0.2", "--output-len-mean", "100000", "--enable-scale-out", "--vllm-version", "0.32.0"],
    {},
  );
  const tenants: Record<string, { limits: Record<string, number> }> = {};
  for (const c of [...Object.keys(SHAPES), "whole"])
    tenants[c] = { limits: { completionTokensPerMinute: 10_000_000 } };
  tenants.chunk = { limits: { promptTokensPerMinute: 2000 } };
  r = await routerFor([sim.url], {
    tenancy: {
      tenants,
      keys: Object.keys(tenants).map((t) => ({ hash: hashKey(keyOf(t)), tenant: t })),
    },
    // no admin key here: the tenant series are read from an open page
    metrics: { access: "open" },
  });
  await waitUntil(() => r.router.registry.maxModelLen(MODEL) !== undefined, 5000, "the model's context");
});

after(async () => {
  await r.close();
  await sim.close();
});

async function generated(): Promise<number> {
  return metric((await getText(`${sim.url}/metrics`)).text, "vllm:generation_tokens_total");
}

async function charged(tenant: string): Promise<number> {
  const text = (await getText(`${r.url}/metrics`)).text;
  return metric(text, `switchyard_tenant_tokens_total{tenant="${tenant}",kind="completion"}`);
}

/** Sends the stream, reads `events` of its events (all with Infinity), then hangs up. */
async function cutAfter(tenant: string, path: string, body: unknown, events: number): Promise<string> {
  const ac = new AbortController();
  const res = await fetch(`${r.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(tenant)}` },
    body: JSON.stringify(body),
    signal: ac.signal,
  });
  if (res.status !== 200) assert.fail(`${res.status}: ${await res.text()}`);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = "";
  let seen = 0;
  while (seen < events) {
    const { done, value } = await reader.read();
    if (done) break;
    const piece = dec.decode(value, { stream: true });
    text += piece;
    seen += piece.split("\n\n").length - 1;
  }
  ac.abort();
  await reader.cancel().catch(() => {});
  return text;
}

/** Waits for the engine and the router to be done with everything (the abort reached the engine). */
async function settled(tenant: string): Promise<void> {
  await waitUntil(
    async () =>
      r.router.tenancy.localInFlight(tenant) === 0 &&
      metric((await getText(`${sim.url}/metrics`)).text, "vllm:num_requests_running") === 0,
    10_000,
    "the request over on both sides",
  );
  // and the count stands still (the last step of an aborted request is counted)
  let last = -1;
  await waitUntil(
    async () => {
      const now = await generated();
      const still = now === last;
      last = now;
      return still;
    },
    10_000,
    "the engine's count settled",
  );
}

for (const [shape, [path, body]] of Object.entries(SHAPES)) {
  test(`the router charges at least what the engine generated when a ${shape} stream on ${path} is cut short`, async () => {
    const before = await generated();
    const text = await cutAfter(shape, path, body, 12);
    await settled(shape);
    const made = (await generated()) - before;
    const bill = await charged(shape);
    assert.ok(made > 0, `the engine generated nothing (${text.slice(0, 200)})`);
    assert.ok(bill >= made, `${shape}: charged ${bill} completion tokens, the engine generated ${made}`);
    console.log(`${shape}: engine generated ${made}, charged ${bill}`);
  });
}

test("the router charges exactly the closing usage of a whole stream with several choices and continuous usage", async () => {
  const before = await generated();
  const body = {
    model: MODEL,
    messages: msgs,
    n: 4,
    max_tokens: 20,
    stream: true,
    stream_options: continuous,
  };
  const text = await cutAfter("whole", "/v1/chat/completions", body, Infinity);
  assert.match(text, /data: \[DONE\]/);
  await settled("whole");
  const made = (await generated()) - before;
  assert.equal(made, 80);
  assert.equal(await charged("whole"), made, "the closing usage, not one choice's running count");
});

/** A POST whose body goes chunked (no Content-Length): status and headers. */
function postChunked(path: string, tenant: string, body: string): Promise<{ status: number; limit: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${r.url}${path}`);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(tenant)}` },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, limit: String(res.headers["x-ratelimit-limit"] ?? "") }),
        );
      },
    );
    req.on("error", reject);
    // two writes: the request goes out chunked
    const half = Math.floor(body.length / 2);
    req.write(body.slice(0, half));
    req.end(body.slice(half));
  });
}

test("8 concurrent chunked 6,000-token prompts from a tenant allowed 2,000 prompt tokens a minute: one is admitted, the rest get 429", async () => {
  const prompt = "lorem ipsum ".repeat(2000); // 24,000 bytes: ~6,000 tokens by the router's estimate
  const body = JSON.stringify({ model: MODEL, prompt, max_tokens: 1 });
  const answers = await Promise.all(
    Array.from({ length: 8 }, () => postChunked("/v1/completions", "chunk", body)),
  );
  const ok = answers.filter((a) => a.status === 200).length;
  const refused = answers.filter((a) => a.status === 429);
  assert.equal(ok, 1, JSON.stringify(answers));
  assert.equal(refused.length, 7, JSON.stringify(answers));
  for (const a of refused) assert.equal(a.limit, "prompt_tokens_per_minute");
});

test("/load needs a key once keys exist: 401 anonymous, 200 with a tenant's key", async () => {
  const anon = await fetch(`${r.url}/load`);
  assert.equal(anon.status, 401, await anon.text());
  const keyed = await fetch(`${r.url}/load`, { headers: { authorization: `Bearer ${keyOf("chunk")}` } });
  assert.equal(keyed.status, 200);
  assert.equal(typeof ((await keyed.json()) as { server_load: unknown }).server_load, "number");
});
