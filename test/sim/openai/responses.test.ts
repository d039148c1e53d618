// The Responses API on the sim: whole and streamed answers in vLLM's shapes, and the store as vLLM
// keeps it: off by default (GET, cancel and previous_response_id answer 404, background is a 400),
// on with VLLM_ENABLE_RESPONSES_API_STORE=1 (stored, continued, cancelled, bounded).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { ResponseStore } from "../../../src/sim/serving/response-store.js";
import { postJson, startTestSim } from "../helpers.js";
import { postSse, startSimWithEnv } from "../sse.js";
import type { Json } from "../../helpers/json.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let plain: RunningSim;
let stored: RunningSim;

before(async () => {
  const args = ["--time-scale", "0.02", "--output-len-mean", "100000"];
  plain = await startTestSim(MODEL, args);
  stored = await startSimWithEnv(MODEL, args, { VLLM_ENABLE_RESPONSES_API_STORE: "1" });
});
after(async () => {
  await plain.close();
  await stored.close();
});

/** vLLM 0.32's ResponsesResponse keys, in its order */
const RESPONSE_KEYS = [
  "id",
  "created_at",
  "incomplete_details",
  "instructions",
  "metadata",
  "model",
  "object",
  "output",
  "parallel_tool_calls",
  "temperature",
  "tool_choice",
  "tools",
  "top_p",
  "background",
  "max_output_tokens",
  "max_tool_calls",
  "previous_response_id",
  "prompt",
  "reasoning",
  "service_tier",
  "status",
  "text",
  "top_logprobs",
  "truncation",
  "usage",
  "user",
  "presence_penalty",
  "frequency_penalty",
  "kv_transfer_params",
  "ec_transfer_params",
  "input_messages",
  "output_messages",
];

async function get(url: string) {
  const r = await fetch(url);
  return { status: r.status, json: (await r.json()) as Json };
}

test("a response answers the chat of its instructions and input, in vLLM's ResponsesResponse shape", async () => {
  const r = await postJson(`${plain.url}/v1/responses`, {
    model: MODEL,
    instructions: "Be terse.",
    input: "Name a river.",
    max_output_tokens: 6,
  });
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.id, /^resp_[0-9a-f]{32}$/);
  assert.equal(r.json.object, "response");
  assert.equal(r.json.model, MODEL);
  assert.equal(r.json.instructions, "Be terse.");
  assert.equal(r.json.max_output_tokens, 6);
  // it ran out of output tokens: vLLM's "incomplete"
  assert.equal(r.json.status, "incomplete");
  assert.deepEqual(r.json.incomplete_details, { reason: "max_output_tokens" });
  assert.equal(r.json.output.length, 1);
  const msg = r.json.output[0];
  assert.match(msg.id, /^msg_/);
  assert.equal(msg.type, "message");
  assert.equal(msg.role, "assistant");
  assert.equal(msg.status, "completed");
  assert.equal(msg.content[0].type, "output_text");
  assert.deepEqual(msg.content[0].annotations, []);

  // vLLM 0.32 encodes a Responses prompt with special tokens added (a second BOS after the template's):
  // the chat of the same conversation asked to do the same
  const chat = await postJson(`${plain.url}/v1/chat/completions`, {
    max_tokens: 6,
    add_special_tokens: true,
    messages: [
      { role: "system", content: "Be terse." },
      { role: "user", content: "Name a river." },
    ],
  });
  assert.equal(msg.content[0].text, chat.json.choices[0].message.content);
  assert.equal(r.json.usage.input_tokens, chat.json.usage.prompt_tokens);
  assert.equal(r.json.usage.output_tokens, 6);
  assert.equal(r.json.usage.total_tokens, r.json.usage.input_tokens + 6);
  assert.equal(typeof r.json.usage.input_tokens_details.cached_tokens, "number");
  // a single-turn answer: vLLM's per-turn lists stay empty
  assert.deepEqual(
    { ...r.json.usage.input_tokens_details, cached_tokens: 0 },
    { cached_tokens: 0, cache_write_tokens: 0, input_tokens_per_turn: [], cached_tokens_per_turn: [] },
  );
  assert.deepEqual(r.json.usage.output_tokens_details, {
    reasoning_tokens: 0,
    tool_output_tokens: 0,
    output_tokens_per_turn: [],
    tool_output_tokens_per_turn: [],
  });
  assert.equal(msg.phase, null);
  // no tools: vLLM resolves the default "auto" to "none"
  assert.equal(r.json.tool_choice, "none");
  for (const k of ["text", "kv_transfer_params", "ec_transfer_params", "input_messages", "output_messages"])
    assert.equal(r.json[k], null, k);
  assert.deepEqual([r.json.presence_penalty, r.json.frequency_penalty], [0, 0]);
  // every key in vLLM 0.32's order
  assert.deepEqual(Object.keys(r.json), RESPONSE_KEYS);

  // a list of messages with content parts is the same conversation
  const parts = await postJson(`${plain.url}/v1/responses`, {
    instructions: "Be terse.",
    input: [{ type: "message", role: "user", content: [{ type: "input_text", text: "Name a river." }] }],
    max_output_tokens: 6,
  });
  assert.equal(parts.json.output[0].content[0].text, msg.content[0].text);
});

test("the answer echoes the request's settings as vLLM resolves them: penalties, text format, tool_choice", async () => {
  const r = await postJson(`${plain.url}/v1/responses`, {
    input: "A city.",
    max_output_tokens: 3,
    temperature: 0,
    top_p: 0.5,
    presence_penalty: 0.5,
    frequency_penalty: -0.25,
    parallel_tool_calls: false,
    truncation: "auto",
    text: { format: { type: "json_schema", name: "city", schema: { type: "object" } } },
  });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual([r.json.presence_penalty, r.json.frequency_penalty], [0.5, -0.25]);
  // greedy sampling resets top_p, as SamplingParams does
  assert.deepEqual([r.json.temperature, r.json.top_p], [0, 1]);
  assert.equal(r.json.parallel_tool_calls, false);
  assert.equal(r.json.truncation, "auto");
  assert.deepEqual(r.json.text, {
    format: {
      name: "city",
      schema: { type: "object" },
      type: "json_schema",
      description: null,
      strict: null,
    },
    verbosity: null,
  });
  const low = await postJson(`${plain.url}/v1/responses`, {
    input: "Hi",
    max_output_tokens: 2,
    temperature: 0.000001,
    text: { verbosity: "low" },
  });
  assert.deepEqual(low.json.text, { format: null, verbosity: "low" });
  assert.equal(low.json.temperature, 0.01, "SamplingParams' floor on a sampling temperature");

  // without tools vLLM refuses a tool_choice that needs one, naming it
  const required = await postJson(`${plain.url}/v1/responses`, { input: "Hi", tool_choice: "required" });
  assert.equal(required.status, 400);
  assert.equal(required.json.error.param, "tool_choice");
  assert.equal(
    required.json.error.message,
    "Tool choice 'required' must be specified with 'tools' parameter. (parameter=tool_choice)",
  );
  const named = await postJson(`${plain.url}/v1/responses`, {
    input: "Hi",
    tool_choice: { type: "function", name: "f" },
  });
  assert.equal(named.status, 400);
  assert.match(named.json.error.message, /^Tool choice 'function' not found in 'tools' parameter/);
  const penalty = await postJson(`${plain.url}/v1/responses`, { input: "Hi", presence_penalty: 3 });
  assert.equal(penalty.status, 400);
  assert.equal(penalty.json.error.param, "body.presence_penalty");
  const unnamed = await postJson(`${plain.url}/v1/responses`, {
    input: "Hi",
    text: { format: { type: "json_schema", schema: {} } },
  });
  assert.equal(unnamed.status, 400);
});

test("streamed: vLLM's event sequence, numbered from 0, deltas adding up to the done text", async () => {
  const s = await postSse(`${plain.url}/v1/responses`, {
    input: "Count to five.",
    max_output_tokens: 5,
    stream: true,
  });
  assert.equal(s.status, 200);
  assert.match(s.type ?? "", /^text\/event-stream/);
  const names = s.events.map((e) => e.event);
  const head = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
  ];
  const tail = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
  ];
  assert.deepEqual(names.slice(0, 4), head);
  assert.deepEqual(names.slice(-4), tail);
  const deltas = s.events.slice(4, -4);
  assert.ok(deltas.length >= 1);
  for (const d of deltas) assert.equal(d.event, "response.output_text.delta");
  s.events.forEach((e, i) => {
    assert.equal(e.data.sequence_number, i);
    assert.equal(e.data.type, e.event);
  });
  assert.ok(!s.text.includes("[DONE]"), "the Responses stream has no [DONE]");
  assert.equal(s.events[0]!.data.response.status, "in_progress");
  const text = deltas.map((d) => d.data.delta as string).join("");
  assert.equal(s.events.at(-4)!.data.text, text);
  const done = s.events.at(-1)!.data.response;
  assert.equal(done.output[0].content[0].text, text);
  assert.equal(done.usage.output_tokens, 5);
  assert.deepEqual(Object.keys(done), RESPONSE_KEYS);
  assert.equal(s.events[2]!.data.item.phase, null);
  const itemId = s.events[2]!.data.item.id;
  for (const e of s.events.slice(3, -1)) if (e.data.item_id) assert.equal(e.data.item_id, itemId);
});

test("without the store: GET, cancel and previous_response_id are vLLM's 404, background is a 400", async () => {
  const r = await postJson(`${plain.url}/v1/responses`, { input: "Hi", max_output_tokens: 2 });
  assert.equal(r.status, 200);
  const g = await get(`${plain.url}/v1/responses/${r.json.id}`);
  assert.equal(g.status, 404);
  assert.deepEqual(g.json.error, {
    message: `Response with id '${r.json.id}' not found.`,
    type: "invalid_request_error",
    param: "response_id",
    code: 404,
  });
  const c = await postJson(`${plain.url}/v1/responses/${r.json.id}/cancel`, {});
  assert.equal(c.status, 404);
  const prev = await postJson(`${plain.url}/v1/responses`, {
    input: "More",
    previous_response_id: r.json.id,
  });
  assert.equal(prev.status, 404);
  assert.equal(prev.json.error.type, "invalid_request_error");
  const bg = await postJson(`${plain.url}/v1/responses`, { input: "Hi", background: true });
  assert.equal(bg.status, 400);
  assert.equal(bg.json.error.param, "background");
  assert.match(bg.json.error.message, /VLLM_ENABLE_RESPONSES_API_STORE=1/);
  const noStore = await postJson(`${plain.url}/v1/responses`, {
    input: "Hi",
    background: true,
    store: false,
  });
  assert.equal(noStore.status, 400);
  assert.match(noStore.json.error.message, /background can only be used when `store` is true/);
});

test("with the store: GET answers the stored response, previous_response_id continues its conversation", async () => {
  const first = await postJson(`${stored.url}/v1/responses`, {
    input: "Name a river.",
    max_output_tokens: 4,
  });
  assert.equal(first.status, 200);
  const g = await get(`${stored.url}/v1/responses/${first.json.id}`);
  assert.equal(g.status, 200);
  assert.deepEqual(g.json, first.json);

  const next = await postJson(`${stored.url}/v1/responses`, {
    input: "And another.",
    previous_response_id: first.json.id,
    max_output_tokens: 3,
  });
  assert.equal(next.status, 200, next.text);
  assert.equal(next.json.previous_response_id, first.json.id);
  const answer = first.json.output[0].content[0].text;
  const tok = await postJson(`${stored.url}/tokenize`, {
    messages: [
      { role: "user", content: "Name a river." },
      { role: "assistant", content: answer },
      { role: "user", content: "And another." },
    ],
  });
  assert.equal(next.json.usage.input_tokens, tok.json.count + 1); // the second BOS

  // store: false is honoured: nothing kept
  const unstored = await postJson(`${stored.url}/v1/responses`, {
    input: "Hi",
    store: false,
    max_output_tokens: 2,
  });
  assert.equal((await get(`${stored.url}/v1/responses/${unstored.json.id}`)).status, 404);
  // a finished response cannot be cancelled
  const c = await postJson(`${stored.url}/v1/responses/${first.json.id}/cancel`, {});
  assert.equal(c.status, 400);
  assert.equal(c.json.error.message, "Cannot cancel a synchronous response.");
});

test("with the store: a background response is queued, runs, and can be cancelled while it does", async () => {
  const bg = await postJson(`${stored.url}/v1/responses`, {
    input: "Hi",
    background: true,
    max_output_tokens: 3,
  });
  assert.equal(bg.status, 200, bg.text);
  assert.equal(bg.json.status, "queued");
  assert.equal(bg.json.background, true);
  assert.deepEqual(bg.json.output, []);
  let status = "queued";
  for (let i = 0; i < 3000 && status !== "incomplete"; i++) {
    await new Promise((r) => setTimeout(r, 10));
    status = (await get(`${stored.url}/v1/responses/${bg.json.id}`)).json.status;
  }
  const done = await get(`${stored.url}/v1/responses/${bg.json.id}`);
  assert.equal(done.json.status, "incomplete");
  assert.equal(done.json.usage.output_tokens, 3);

  // a long one is cancelled: its engine request is aborted and the status stays cancelled
  const long = await postJson(`${stored.url}/v1/responses`, { input: "Go on", background: true });
  const c = await postJson(`${stored.url}/v1/responses/${long.json.id}/cancel`, {});
  assert.equal(c.status, 200, c.text);
  assert.equal(c.json.status, "cancelled");
  assert.equal((await get(`${stored.url}/v1/responses/${long.json.id}`)).json.status, "cancelled");
  const again = await postJson(`${stored.url}/v1/responses/${long.json.id}/cancel`, {});
  assert.equal(again.status, 400);
});

test("the store keeps the most recently used responses within its entry and byte caps", () => {
  const store = new ResponseStore(3, 10_000);
  const entry = (bytes: number) => ({ response: {}, messages: [], outputText: "", cancel: null, bytes });
  for (const id of ["a", "b", "c"]) store.set(id, entry(100));
  store.get("a");
  store.set("d", entry(100));
  assert.equal(store.size, 3);
  assert.equal(store.peek("b"), undefined, "the least recently used goes first");
  assert.ok(store.peek("a"));
  store.set("big", entry(9_900));
  assert.ok(store.totalBytes <= 10_000);
  assert.ok(store.peek("big"));
  assert.deepEqual(
    ["a", "c", "d"].filter((id) => store.peek(id)),
    ["d"],
    "the oldest go until the bytes fit",
  );
});
