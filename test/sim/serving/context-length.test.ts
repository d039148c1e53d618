// How a prompt and max_tokens must fit max_model_len, as the vLLM release the sim claims fits them:
// 0.32 cuts max_tokens to the room left and refuses only what cannot fit at all; 0.28 (the sim's
// default release) holds max_tokens back from the context. The texts are vLLM's, word for word.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { postJson, startTestSim, tokenIds } from "../helpers.js";
import type { Json } from "../../helpers/json.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let v32: RunningSim;
let v28: RunningSim;
before(async () => {
  v32 = await startTestSim(MODEL, ["--max-model-len", "256", "--vllm-version", "0.32.0"]);
  v28 = await startTestSim(MODEL, ["--max-model-len", "256"]);
});
after(async () => {
  await v32.close();
  await v28.close();
});

function refusal(r: { status: number; json: Json }, param: string): string {
  assert.equal(r.status, 400, JSON.stringify(r.json));
  assert.equal(r.json.error.type, "BadRequestError");
  assert.equal(r.json.error.param, param);
  assert.equal(r.json.error.code, 400);
  return r.json.error.message;
}

test("vLLM 0.32 serves a prompt that fits but leaves less room than max_tokens, cutting max_tokens to the room", async () => {
  const r = await postJson(`${v32.url}/v1/completions`, {
    prompt: tokenIds(250, 1),
    max_tokens: 10,
    ignore_eos: true,
  });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(
    [r.json.usage.prompt_tokens, r.json.usage.completion_tokens, r.json.usage.total_tokens],
    [250, 6, 256],
  );
  assert.equal(r.json.choices[0].finish_reason, "length");
  const chat = await postJson(`${v32.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hello ".repeat(200) }],
    max_completion_tokens: 200,
    ignore_eos: true,
  });
  assert.equal(chat.status, 200, chat.text);
  assert.equal(chat.json.usage.total_tokens, 256);
});

test("vLLM 0.32 refuses a prompt past max_model_len naming input_tokens; a text prompt is counted only to one past, 'at least'", async () => {
  assert.equal(
    refusal(
      await postJson(`${v32.url}/v1/completions`, { prompt: tokenIds(300, 2), max_tokens: 1 }),
      "input_tokens",
    ),
    "This model's maximum context length is 256 tokens. However, your prompt contains 300 input tokens, which " +
      "exceeds this limit even without any output tokens. Please reduce the length of the input prompt. " +
      "(parameter=input_tokens, value=300)",
  );
  const text = await postJson(`${v32.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hello ".repeat(1000) }],
  });
  assert.match(
    refusal(text, "input_tokens"),
    /^This model's maximum context length is 256 tokens\. However, your prompt contains at least 257 input tokens, .* \(parameter=input_tokens, value=257\)$/,
  );
});

test("vLLM 0.32 refuses max_tokens above max_model_len naming the field the client set", async () => {
  assert.equal(
    refusal(await postJson(`${v32.url}/v1/completions`, { prompt: "hi", max_tokens: 300 }), "max_tokens"),
    "max_tokens=300 cannot be greater than max_model_len=256. Please request fewer output tokens. " +
      "(parameter=max_tokens, value=300)",
  );
  const chat = await postJson(`${v32.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hi" }],
    max_completion_tokens: 300,
  });
  assert.match(refusal(chat, "max_completion_tokens"), /^max_completion_tokens=300 cannot be greater/);
  const resp = await postJson(`${v32.url}/v1/responses`, { input: "hi", max_output_tokens: 300 });
  assert.match(refusal(resp, "max_output_tokens"), /^max_output_tokens=300 cannot be greater/);
  // an Anthropic max_tokens reaches vLLM's chat as max_completion_tokens, and is named so
  const msg = await postJson(`${v32.url}/v1/messages`, {
    model: MODEL,
    max_tokens: 300,
    messages: [{ role: "user", content: "hi" }],
  });
  assert.equal(msg.status, 400);
  assert.match(
    msg.json.error.message,
    /^max_completion_tokens=300 cannot be greater than max_model_len=256\./,
  );
});

test("a prompt filling the whole context leaves no output budget: max_tokens must be at least 1, got 0", async () => {
  for (const sim of [v32, v28]) {
    const r = await postJson(`${sim.url}/v1/completions`, { prompt: tokenIds(256, 3), max_tokens: null });
    assert.equal(
      refusal(r, "max_tokens"),
      "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)",
    );
  }
});

test("vLLM 0.32's Responses answer echoes max_output_tokens as cut to the room left", async () => {
  const r = await postJson(`${v32.url}/v1/responses`, {
    input: [{ role: "user", content: "hello ".repeat(200) }],
    max_output_tokens: 200,
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.max_output_tokens, 256 - r.json.usage.input_tokens);
});

test("vLLM 0.28 (the sim's default release) holds max_tokens back: prompt + max_tokens past the context is refused naming input_tokens", async () => {
  assert.equal(
    refusal(
      await postJson(`${v28.url}/v1/completions`, { prompt: tokenIds(250, 4), max_tokens: 10 }),
      "input_tokens",
    ),
    "This model's maximum context length is 256 tokens. However, you requested 10 output tokens and your " +
      "prompt contains 250 input tokens, for a total of 260 tokens. Please reduce the length of the input " +
      "prompt or the number of requested output tokens. (parameter=input_tokens, value=250)",
  );
  // text is counted to one past what max_tokens leaves (246 + 1), and said so
  const chat = await postJson(`${v28.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hello ".repeat(240) }],
    max_tokens: 10,
  });
  assert.match(
    refusal(chat, "input_tokens"),
    /you requested 10 output tokens and your prompt contains at least 247 input tokens, for a total of at least 257 tokens\./,
  );
  // 0.28 wrote the limit through a stray debug format
  assert.equal(
    refusal(await postJson(`${v28.url}/v1/completions`, { prompt: "hi", max_tokens: 300 }), "max_tokens"),
    "max_tokens=300 cannot be greater than max_model_len=max_total_tokens=256. Please request fewer output " +
      "tokens. (parameter=max_tokens, value=300)",
  );
  const fits = await postJson(`${v28.url}/v1/completions`, { prompt: tokenIds(246, 5), max_tokens: 10 });
  assert.equal(fits.status, 200, fits.text);
});
