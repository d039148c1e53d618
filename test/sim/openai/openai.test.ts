// The official openai client against the sim: chat and completions, streaming and not; usage agrees
// with /tokenize for the same prompt and messages.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { RunningSim } from "../../../src/sim/app.js";
import { postJson, startTestSim } from "../helpers.js";
import type { Json } from "../../helpers/json.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let sim: RunningSim;
let client: OpenAI;

before(async () => {
  sim = await startTestSim(MODEL, [
    "--time-scale",
    "0.05",
    "--served-model-name",
    "llama",
    "--served-model-name",
    "alias",
  ]);
  client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(async () => sim.close());

const messages = [
  { role: "system" as const, content: "You are terse." },
  { role: "user" as const, content: "Name three rivers in Europe." },
];

test("chat, not streamed: shape and usage match /tokenize", async () => {
  const r = await client.chat.completions.create({
    model: "llama",
    messages,
    max_tokens: 12,
    ignore_eos: true,
  } as never);
  assert.match(r.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.equal(r.object, "chat.completion");
  assert.equal(r.model, "llama");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0]!.message.role, "assistant");
  assert.equal(r.choices[0]!.finish_reason, "length");
  assert.equal(r.usage!.completion_tokens, 12);
  const tok = await postJson(`${sim.url}/tokenize`, { model: "llama", messages });
  assert.equal(tok.status, 200);
  assert.equal(r.usage!.prompt_tokens, tok.json.count);
  assert.equal(tok.json.max_model_len, 131072);
  assert.equal(r.usage!.total_tokens, tok.json.count + 12);
  // the streamed text is real tokens: 12 pool words, each with a leading space
  assert.equal(r.choices[0]!.message.content!.split(" ").length - 1, 12);
});

test("chat, streamed: role chunk, the tokens in content chunks, finish and usage chunks", async () => {
  const stream = await client.chat.completions.create({
    model: "alias",
    messages,
    max_completion_tokens: 9,
    stream: true,
    stream_options: { include_usage: true },
    ignore_eos: true,
  } as never);
  const chunks: Json[] = [];
  for await (const c of stream as unknown as AsyncIterable<Json>) chunks.push(c);
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const content = chunks.filter((c) => c.choices.length > 0 && c.choices[0].delta.content);
  // one chunk per engine step; steps the sim completes within a timer tick share one (src/sim/runtime/runtime.ts)
  assert.ok(content.length >= 1 && content.length <= 9, `${content.length} content chunks`);
  const text = content.map((c) => c.choices[0].delta.content as string).join("");
  assert.equal(text.split(" ").length - 1, 9, "9 pool words, each with a leading space");
  const fin = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(fin.length, 1);
  assert.equal(fin[0].choices[0].finish_reason, "length");
  assert.equal(fin[0].choices[0].stop_reason, null);
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.completion_tokens, 9);
  assert.equal(chunks[1].model, "llama", "the first served name is reported");
  const tok = await postJson(`${sim.url}/tokenize`, { messages });
  assert.equal(usage.usage.prompt_tokens, tok.json.count);
});

test("completions, not streamed and streamed; token-id prompts; usage matches /tokenize", async () => {
  const prompt = "The quick brown fox jumps over the lazy dog";
  const r = await client.completions.create({
    model: "llama",
    prompt,
    max_tokens: 7,
    ignore_eos: true,
  } as never);
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0]!.finish_reason, "length");
  const tok = await postJson(`${sim.url}/tokenize`, { prompt });
  assert.equal(r.usage!.prompt_tokens, tok.json.count);
  assert.equal(r.usage!.completion_tokens, 7);
  // the same prompt as token ids counts the same
  const r2 = await client.completions.create({ model: "llama", prompt: tok.json.tokens, max_tokens: 3 });
  assert.equal(r2.usage!.prompt_tokens, tok.json.count);
  // the answer is deterministic per prompt for a given seed
  const r3 = await client.completions.create({
    model: "llama",
    prompt,
    max_tokens: 7,
    ignore_eos: true,
  } as never);
  assert.equal(r3.choices[0]!.text, r.choices[0]!.text);

  const stream = await client.completions.create({
    model: "llama",
    prompt: [prompt, "Hello"],
    max_tokens: 5,
    stream: true,
    stream_options: { include_usage: true },
    ignore_eos: true,
  } as never);
  const perIndex = [0, 0];
  let usage: Json = null;
  for await (const c of stream as unknown as AsyncIterable<Json>) {
    if (c.usage) usage = c.usage;
    // tokens, not chunks: steps within one timer tick share a chunk (src/sim/runtime/runtime.ts)
    for (const ch of c.choices) if (ch.text) perIndex[ch.index]! += ch.text.split(" ").length - 1;
  }
  assert.deepEqual(perIndex, [5, 5]);
  const tok2 = await postJson(`${sim.url}/tokenize`, { prompt: "Hello" });
  assert.equal(usage.prompt_tokens, tok.json.count + tok2.json.count);
  assert.equal(usage.completion_tokens, 10);
});

test("natural answer length: EOS ends with finish_reason stop before max_tokens", async () => {
  let stops = 0;
  for (let i = 0; i < 8; i++) {
    const r = await client.completions.create({ model: "llama", prompt: `question ${i}`, max_tokens: 2000 });
    if (r.choices[0]!.finish_reason === "stop") {
      stops++;
      assert.ok(r.usage!.completion_tokens < 2000);
    }
  }
  assert.ok(stops >= 6, `expected most answers to end at the sampled EOS (mean 128), got ${stops}/8`);
});

test("/detokenize inverts /tokenize", async () => {
  const text = "Détente, naïve café — 東京 🚀";
  const tok = await postJson(`${sim.url}/tokenize`, { prompt: text, add_special_tokens: false });
  const de = await postJson(`${sim.url}/detokenize`, { tokens: tok.json.tokens });
  assert.equal(de.json.prompt, text);
});

test("/detokenize decodes an id past the vocabulary as nothing, as the tokenizers library does; one past a u32 is a 400", async () => {
  const tok = await postJson(`${sim.url}/tokenize`, { prompt: "river", add_special_tokens: false });
  const de = await postJson(`${sim.url}/detokenize`, { tokens: [...tok.json.tokens, 999_999_999] });
  assert.equal(de.status, 200, de.text);
  assert.equal(de.json.prompt, "river");
  const big = await postJson(`${sim.url}/detokenize`, { tokens: [2 ** 32] });
  assert.equal(big.status, 400);
  assert.deepEqual(big.json.error, {
    message: "number too large to fit in target type",
    type: "BadRequestError",
    param: null,
    code: 400,
  });
});

test("/tokenize with continue_final_message leaves the final message open: the closed conversation's ids without its end of turn", async () => {
  const convo = [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello, I" },
  ];
  const closed = await postJson(`${sim.url}/tokenize`, { messages: convo, add_generation_prompt: false });
  const open = await postJson(`${sim.url}/tokenize`, {
    messages: convo,
    add_generation_prompt: false,
    continue_final_message: true,
  });
  assert.equal(open.status, 200, open.text);
  assert.deepEqual(open.json.tokens, closed.json.tokens.slice(0, -1));
  assert.equal(open.json.count, closed.json.count - 1);
  // the chat's prompt for the same continuation is the same
  const chat = await postJson(`${sim.url}/v1/chat/completions`, {
    messages: convo,
    add_generation_prompt: false,
    continue_final_message: true,
    max_tokens: 1,
  });
  assert.equal(chat.json.usage.prompt_tokens, open.json.count);
});

test("continue_final_message with add_generation_prompt is refused twice over, as vLLM does: set both, or left at its default", async () => {
  const convo = [{ role: "user", content: "Hi" }];
  for (const path of ["/tokenize", "/v1/chat/completions"]) {
    const both = await postJson(`${sim.url}${path}`, {
      messages: convo,
      continue_final_message: true,
      add_generation_prompt: true,
    });
    assert.equal(both.status, 400);
    assert.equal(both.json.error.param, null);
    assert.equal(
      both.json.error.message,
      "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
    );
    const defaulted = await postJson(`${sim.url}${path}`, { messages: convo, continue_final_message: true });
    assert.equal(defaulted.status, 400);
    assert.equal(defaulted.json.error.param, null);
    assert.match(
      defaulted.json.error.message,
      /^continue_final_message and add_generation_prompt are not compatible\./,
    );
  }
});
