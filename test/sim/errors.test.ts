// Bad inputs get vLLM's status and error body, and the server keeps serving after each.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../src/sim/app.js";
import { postJson, startTestSim } from "./helpers.js";
import type { Json } from "../helpers/json.js";

let sim: RunningSim;
before(async () => {
  sim = await startTestSim("facebook/opt-125m", [
    "--max-model-len",
    "256",
    "--max-body-bytes",
    "4KiB",
    "--api-key",
    "sekret",
  ]);
});
after(async () => sim.close());

const auth = { authorization: "Bearer sekret" };

function assertError(
  r: { status: number; json: Json },
  status: number,
  type: string,
  message?: RegExp,
): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal(r.json.error.code, status);
  assert.equal(r.json.error.type, type);
  assert.ok("param" in r.json.error);
  if (message) assert.match(r.json.error.message, message);
}

test("a body vLLM's request model refuses is its validation 400: type Bad Request, param the field's location", async () => {
  const url = `${sim.url}/v1/completions`;
  const invalid = async (body: unknown, param: string | null) => {
    const r = await postJson(url, body, auth);
    assertError(r, 400, "Bad Request", /validation error/);
    assert.equal(r.json.error.param, param);
  };
  // the character where decoding stopped, as Python's json names it
  await invalid("{not json", "body.1");
  await invalid('{"prompt": ', "body.11");
  await invalid("[1,2]", "body");
  await invalid({ prompt: "hi", max_tokens: "many" }, "body.max_tokens");
  // a union names its first form's first refusal: vLLM's prompt is ids first
  await invalid({ prompt: 42 }, "body.prompt");
  await invalid({ prompt: [300, -5] }, "body.prompt.1");
  await invalid({ prompt: "hi", stream: "perhaps" }, "body.stream");
  const chat = await postJson(`${sim.url}/v1/chat/completions`, { messages: "hi" }, auth);
  assertError(chat, 400, "Bad Request");
  assert.equal(chat.json.error.param, "body.messages");
  const ctype = await postJson(url, '{"prompt": "hi"}', { ...auth, "content-type": "text/plain" });
  assertError(ctype, 400, "Bad Request", /Only 'application\/json' is allowed/);
  assert.equal(ctype.json.error.param, null);
});

test("checks vLLM makes after validation keep BadRequestError with their own param", async () => {
  const url = `${sim.url}/v1/completions`;
  const refused = async (body: unknown, param: string | null, message: RegExp) => {
    const r = await postJson(url, body, auth);
    assertError(r, 400, "BadRequestError", message);
    assert.equal(r.json.error.param, param);
  };
  await refused({ max_tokens: 3 }, "prompt", /Either prompt or prompt_embeds/);
  await refused({ prompt: [] }, null, /at least one prompt/);
  await refused(
    { prompt: "hi", stream: false, stream_options: { include_usage: true } },
    "stream_options",
    /stream=True/,
  );
  await refused({ prompt: "hi", max_tokens: -1 }, "max_tokens", /^max_tokens must be at least 1, got -1/);
  await refused({ prompt: "hi", n: 0 }, null, /^n must be at least 1, got 0\.$/);
  await refused(
    { prompt: "hi", temperature: -1 },
    "temperature",
    /^temperature must be non-negative, got -1\.0\./,
  );
  await refused({ prompt: "hi", top_p: 0 }, "top_p", /^top_p must be in \(0, 1\], got 0\.0\./);
  await refused({ prompt: "hi", top_k: -2 }, null, /^top_k must be 0 \(disable\), or at least 1, got -2\.$/);
  await refused(
    { prompt: "hi", presence_penalty: 3 },
    null,
    /^presence_penalty must be in \[-2, 2\], got 3\.0\.$/,
  );
  await refused(
    { prompt: "hi", n: 2, temperature: 0 },
    null,
    /^n must be 1 when using greedy sampling, got 2\.$/,
  );
});

test("unknown model is 404 with vLLM's message", async () => {
  const r = await postJson(`${sim.url}/v1/completions`, { model: "gpt-9", prompt: "hi" }, auth);
  assertError(r, 404, "NotFoundError");
  assert.equal(r.json.error.message, "The model `gpt-9` does not exist.");
});

test("prompt + max_tokens over max_model_len is 400 with vLLM 0.28's message (the default release)", async () => {
  const r = await postJson(
    `${sim.url}/v1/completions`,
    { prompt: Array(200).fill(5), max_tokens: 100 },
    auth,
  );
  assertError(r, 400, "BadRequestError");
  assert.equal(
    r.json.error.message,
    "This model's maximum context length is 256 tokens. However, you requested 100 output tokens and your " +
      "prompt contains 200 input tokens, for a total of 300 tokens. Please reduce the length of the input " +
      "prompt or the number of requested output tokens. (parameter=input_tokens, value=200)",
  );
  const r2 = await postJson(`${sim.url}/v1/completions`, { prompt: Array(300).fill(5) }, auth);
  assertError(r2, 400, "BadRequestError", /maximum context length is 256 tokens/);
});

test("token ids outside the vocabulary are 400 naming no param; the last valid id is accepted", async () => {
  assertError(
    await postJson(`${sim.url}/v1/completions`, { prompt: [1, 50272], max_tokens: 1 }, auth),
    400,
    "BadRequestError",
    /out of vocabulary/,
  );
  // a negative id is refused by vLLM's request model (ids are non-negative ints), at its location
  const negative = await postJson(`${sim.url}/v1/completions`, { prompt: [-1], max_tokens: 1 }, auth);
  assertError(negative, 400, "Bad Request");
  assert.equal(negative.json.error.param, "body.prompt.0");
  const ok = await postJson(`${sim.url}/v1/completions`, { prompt: [0, 50271], max_tokens: 1 }, auth);
  assert.equal(ok.status, 200, ok.text);
});

test("logit_bias keys Python's int() cannot read, and ids outside the vocabulary, are 400s naming logit_bias", async () => {
  const url = `${sim.url}/v1/completions`;
  const biased = (logit_bias: Record<string, unknown>) =>
    postJson(url, { prompt: "hi", max_tokens: 1, logit_bias }, auth);
  const bad = await biased({ abc: 1, "it's": 2, "7": 3 });
  assertError(bad, 400, "BadRequestError");
  assert.equal(bad.json.error.param, "logit_bias");
  assert.equal(
    bad.json.error.message,
    `logit_bias contains key(s) that cannot be converted to integer token IDs: ['abc', "it's"] ` +
      `(parameter=logit_bias, value=['abc', "it's"])`,
  );
  const outside = await biased({ "50272": 1 });
  assertError(outside, 400, "BadRequestError");
  assert.equal(outside.json.error.param, "logit_bias");
  assert.equal(
    outside.json.error.message,
    "token_id(s) [50272] in logit_bias contain out-of-vocab token ids. Vocabulary size: 50272 " +
      "(parameter=logit_bias, value=[50272])",
  );
  assert.match((await biased({ "-1": 1 })).json.error.message, /^token_id\(s\) \[-1\] in logit_bias/);
  // int() reads surrounding space, a sign and underscores between digits
  const ok = await biased({ " 12 ": 1, "1_0": 2, "+3": -100, "50271": 5 });
  assert.equal(ok.status, 200, ok.text);
  // a bias that is not a number is the request model's refusal, at its location
  const notNumber = await biased({ "5": "a" });
  assertError(notNumber, 400, "Bad Request");
  assert.equal(notNumber.json.error.param, "body.logit_bias.5");
});

test("oversized bodies are 413; unknown paths 404; wrong methods 405", async () => {
  const big = { prompt: "x".repeat(8000) };
  assertError(await postJson(`${sim.url}/v1/completions`, big, auth), 413, "RequestTooLargeError");
  const nf = await fetch(`${sim.url}/v1/nope`, { headers: auth });
  assert.equal(nf.status, 404);
  await nf.arrayBuffer();
  const m = await fetch(`${sim.url}/v1/completions`, { headers: auth });
  assert.equal(m.status, 405);
  await m.arrayBuffer();
});

test("--api-key guards /v1/* only", async () => {
  const r = await postJson(`${sim.url}/v1/completions`, { prompt: "hi" });
  assert.equal(r.status, 401);
  assert.deepEqual(r.json, { error: "Unauthorized" });
  const wrong = await postJson(
    `${sim.url}/v1/completions`,
    { prompt: "hi" },
    { authorization: "Bearer nope" },
  );
  assert.equal(wrong.status, 401);
  const health = await fetch(`${sim.url}/health`);
  assert.equal(health.status, 200);
  await health.arrayBuffer();
  const tok = await postJson(`${sim.url}/tokenize`, { prompt: "hi" });
  assert.equal(tok.status, 200);
});

test("chat on a model without a chat template is 400, as in vLLM", async () => {
  const r = await postJson(
    `${sim.url}/v1/chat/completions`,
    { messages: [{ role: "user", content: "hi" }] },
    auth,
  );
  assertError(r, 400, "BadRequestError", /chat template/);
});

test("chat naming an unknown model is 404, checked before the chat template (vLLM's order)", async () => {
  // OPT has no chat template: rendering first would answer the template's 400
  const r = await postJson(
    `${sim.url}/v1/chat/completions`,
    { model: "gpt-9", messages: [{ role: "user", content: "hi" }] },
    auth,
  );
  assertError(r, 404, "NotFoundError");
  assert.equal(r.json.error.message, "The model `gpt-9` does not exist.");
});

test("the server keeps serving after all of the above", async () => {
  const r = await postJson(`${sim.url}/v1/completions`, { prompt: "still there?", max_tokens: 2 }, auth);
  assert.equal(r.status, 200);
  assert.equal(r.json.usage.completion_tokens <= 2, true);
});
