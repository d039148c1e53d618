// Anthropic's Messages API on the sim, over plain fetch (no Anthropic SDK among the dev dependencies):
// the answer is the chat path's answer in Anthropic's shape, streamed with Anthropic's event sequence;
// count_tokens counts the same prompt; errors take vLLM's shapes.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { postJson, startTestSim } from "../helpers.js";
import { postSse } from "../sse.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let sim: RunningSim;

before(async () => {
  // answers far longer than max_tokens: every length below is max_tokens, never an early EOS
  sim = await startTestSim(MODEL, ["--time-scale", "0.02", "--output-len-mean", "100000"]);
});
after(async () => sim.close());

const user = (content: unknown) => ({ role: "user", content });

test("a message is the chat answer to the same conversation, in Anthropic's shape", async () => {
  const m = await postJson(`${sim.url}/v1/messages`, {
    model: MODEL,
    max_tokens: 9,
    system: "Be terse.",
    messages: [user("Name a river.")],
  });
  assert.equal(m.status, 200, m.text);
  assert.match(m.json.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.equal(m.json.type, "message");
  assert.equal(m.json.role, "assistant");
  assert.equal(m.json.model, MODEL);
  assert.equal(m.json.stop_reason, "max_tokens");
  assert.ok(!("stop_sequence" in m.json), "vLLM drops null fields from the message");
  assert.equal(m.json.content.length, 1);
  assert.equal(m.json.content[0].type, "text");
  assert.equal(m.json.usage.output_tokens, 9);

  const chat = await postJson(`${sim.url}/v1/chat/completions`, {
    model: MODEL,
    max_tokens: 9,
    messages: [
      { role: "system", content: "Be terse." },
      { role: "user", content: "Name a river." },
    ],
  });
  assert.equal(m.json.content[0].text, chat.json.choices[0].message.content);
  assert.equal(m.json.usage.input_tokens, chat.json.usage.prompt_tokens);
});

test("system as blocks, text blocks and system-role messages render the prompt a string system does", async () => {
  const count = async (body: object) =>
    (await postJson(`${sim.url}/v1/messages/count_tokens`, { model: MODEL, ...body })).json;
  const plain = await count({ system: "You are a pirate.", messages: [user("Hello there")] });
  assert.equal(plain.input_tokens, plain.context_management.original_input_tokens);
  const blocks = await count({
    // the billing header block is dropped, as vLLM drops it to keep prefixes cacheable
    system: [
      { type: "text", text: "x-anthropic-billing-header: cc=1234" },
      { type: "text", text: "You are " },
      { type: "text", text: "a pirate." },
    ],
    messages: [user([{ type: "text", text: "Hello there" }])],
  });
  assert.equal(blocks.input_tokens, plain.input_tokens);
  const inline = await count({
    messages: [{ role: "system", content: "You are a pirate." }, user("Hello there")],
  });
  assert.equal(inline.input_tokens, plain.input_tokens);
  const tok = await postJson(`${sim.url}/tokenize`, {
    messages: [
      { role: "system", content: "You are a pirate." },
      { role: "user", content: "Hello there" },
    ],
  });
  assert.equal(plain.input_tokens, tok.json.count);
});

test("stop_sequences end the text before the first one, stop_reason end_turn as vLLM reports it", async () => {
  const body = { model: MODEL, max_tokens: 12, messages: [user("Tell me a story.")] };
  const full = await postJson(`${sim.url}/v1/messages`, body);
  const words = (full.json.content[0].text as string).split(" ").slice(1);
  const stop = ` ${words[4]}`;
  const cutAt = (full.json.content[0].text as string).indexOf(stop);
  const m = await postJson(`${sim.url}/v1/messages`, { ...body, stop_sequences: [stop, "never appears"] });
  assert.equal(m.status, 200, m.text);
  assert.equal(m.json.content[0].text, (full.json.content[0].text as string).slice(0, cutAt));
  assert.equal(m.json.stop_reason, "end_turn");
  // the tokens up to the one completing the stop string were generated and are counted
  const before = (full.json.content[0].text as string).slice(0, cutAt + stop.length).split(" ").length - 1;
  assert.equal(m.json.usage.output_tokens, before);
});

test("a stop sequence among 150,000 ends the text as it does alone (searched as tokens come, past the first few)", async () => {
  const body = { model: MODEL, max_tokens: 12, messages: [user("Tell me a long story.")] };
  const full = await postJson(`${sim.url}/v1/messages`, body);
  const text = full.json.content[0].text as string;
  const stop = ` ${text.split(" ")[6]}`;
  const alone = await postJson(`${sim.url}/v1/messages`, { ...body, stop_sequences: [stop] });
  assert.equal(alone.status, 200, alone.text);
  // more strings than a spread of arguments can take, none of which appears in the answer
  const many = Array.from({ length: 150_000 }, (_, i) => `#${i}#`);
  many[77_777] = stop;
  const m = await postJson(`${sim.url}/v1/messages`, { ...body, stop_sequences: many });
  assert.equal(m.status, 200, m.text);
  assert.equal(m.json.content[0].text, alone.json.content[0].text);
  assert.equal(m.json.content[0].text, text.slice(0, text.indexOf(stop)));
  assert.equal(m.json.stop_reason, "end_turn");
});

test("streamed: message_start, one text block of text_delta events, message_delta with usage, message_stop", async () => {
  const body = { model: MODEL, max_tokens: 7, messages: [user("Count to ten.")] };
  const whole = await postJson(`${sim.url}/v1/messages`, body);
  const s = await postSse(`${sim.url}/v1/messages`, { ...body, stream: true });
  assert.equal(s.status, 200);
  assert.match(s.type ?? "", /^text\/event-stream/);
  const names = s.events.map((e) => e.event);
  assert.equal(names[0], "message_start");
  assert.equal(names[1], "content_block_start");
  assert.deepEqual(names.slice(-3), ["content_block_stop", "message_delta", "message_stop"]);
  const deltas = s.events.filter((e) => e.event === "content_block_delta");
  assert.equal(deltas.length, names.length - 5);
  for (const e of s.events) assert.equal(e.data.type, e.event, "each event's data names its type");
  const start = s.events[0]!.data.message;
  assert.equal(start.id.startsWith("chatcmpl-"), true);
  assert.deepEqual(start.content, []);
  assert.equal(start.stop_reason, null);
  assert.deepEqual(start.usage, { input_tokens: whole.json.usage.input_tokens, output_tokens: 0 });
  assert.deepEqual(s.events[1]!.data, {
    type: "content_block_start",
    index: 0,
    content_block: { type: "text", text: "" },
  });
  const text = deltas.map((e) => {
    assert.equal(e.data.delta.type, "text_delta");
    assert.equal(e.data.index, 0);
    return e.data.delta.text as string;
  });
  assert.equal(text.join(""), whole.json.content[0].text);
  const delta = s.events.at(-2)!.data;
  assert.deepEqual(delta.delta, { stop_reason: "max_tokens" });
  assert.deepEqual(delta.usage, { input_tokens: whole.json.usage.input_tokens, output_tokens: 7 });
});

test("errors: validation is vLLM's 400 in the OpenAI shape, serving errors are Anthropic-shaped", async () => {
  const noMax = await postJson(`${sim.url}/v1/messages`, { model: MODEL, messages: [user("hi")] });
  assert.equal(noMax.status, 400);
  assert.equal(noMax.json.error.code, 400);
  // FastAPI's validation answer: type "Bad Request", param the field's location in the body
  assert.equal(noMax.json.error.type, "Bad Request");
  assert.equal(noMax.json.error.param, "body.max_tokens");
  const zero = await postJson(`${sim.url}/v1/messages`, {
    model: MODEL,
    max_tokens: 0,
    messages: [user("hi")],
  });
  assert.equal(zero.status, 400);
  assert.match(zero.json.error.message, /max_tokens must be positive/);
  const badRole = await postJson(`${sim.url}/v1/messages`, {
    model: MODEL,
    max_tokens: 3,
    messages: [{ role: "robot", content: "hi" }],
  });
  assert.equal(badRole.status, 400);

  const unknown = await postJson(`${sim.url}/v1/messages`, {
    model: "nope",
    max_tokens: 3,
    messages: [user("hi")],
  });
  assert.equal(unknown.status, 404);
  assert.deepEqual(unknown.json, {
    type: "error",
    error: { type: "NotFoundError", message: "The model `nope` does not exist." },
  });
  const tooLong = await postJson(`${sim.url}/v1/messages`, {
    model: MODEL,
    max_tokens: 10_000_000,
    messages: [user("hi")],
  });
  assert.equal(tooLong.status, 400);
  assert.equal(tooLong.json.type, "error");
  assert.equal(tooLong.json.error.type, "BadRequestError");
  assert.match(
    tooLong.json.error.message,
    /^max_completion_tokens=10000000 cannot be greater than max_model_len=/,
  );
  const count = await postJson(`${sim.url}/v1/messages/count_tokens`, {
    model: "nope",
    messages: [user("hi")],
  });
  assert.equal(count.status, 404);
  assert.equal(count.json.type, "error");

  // and the server keeps serving
  const ok = await postJson(`${sim.url}/v1/messages`, {
    model: MODEL,
    max_tokens: 2,
    messages: [user("hi")],
  });
  assert.equal(ok.status, 200);
});

test("Claude Code's ctx and msg roles are user turns, as vLLM maps them", async () => {
  const count = async (role: string) =>
    (
      await postJson(`${sim.url}/v1/messages/count_tokens`, {
        model: MODEL,
        messages: [{ role, content: "Hello there" }],
      })
    ).json.input_tokens;
  assert.equal(await count("ctx"), await count("user"));
  assert.equal(await count("msg"), await count("user"));
});
