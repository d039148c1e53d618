// The rest of vLLM 0.32's route surface on the sim: /kv_event_sources naming the publisher's real
// ports, /version, /ping, SageMaker's /invocations dispatching by body shape, and batched chats.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../src/sim/app.js";
import { postJson, startTestSim } from "./helpers.js";
import type { Json } from "../helpers/json.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let sim: RunningSim;
let withEvents: RunningSim;

before(async () => {
  const args = ["--time-scale", "0.02", "--output-len-mean", "100000"];
  sim = await startTestSim(MODEL, [...args, "--vllm-version", "0.32.0"]);
  withEvents = await startTestSim(MODEL, [
    ...args,
    "--kv-events-config",
    JSON.stringify({
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: "tcp://*:0",
      replay_endpoint: "tcp://*:0",
      topic: "kv",
    }),
  ]);
});
after(async () => {
  await sim.close();
  await withEvents.close();
});

const port = (endpoint: string | null) => Number(/:(\d+)$/.exec(endpoint ?? "")?.[1]);

test("/kv_event_sources answers the KV-events config per DP rank with the ports the sockets bound", async () => {
  const r = await fetch(`${withEvents.url}/kv_event_sources`);
  assert.equal(r.status, 200);
  const body = (await r.json()) as Json;
  assert.deepEqual(Object.keys(body), ["0"]);
  const s = body["0"];
  assert.equal(s.enable_kv_cache_events, true);
  assert.equal(s.publisher, "zmq");
  assert.equal(s.topic, "kv");
  assert.equal(s.buffer_steps, 10000);
  assert.equal(s.hwm, 100000);
  assert.equal(s.max_queue_size, 100000);
  // the wildcard host as configured, the port as bound (port 0 asked for any)
  assert.match(s.endpoint, /^tcp:\/\/\*:\d+$/);
  assert.equal(port(s.endpoint), port(withEvents.kvEventsEndpoint));
  assert.ok(port(s.endpoint) > 0);
  assert.equal(port(s.replay_endpoint), port(withEvents.kvReplayEndpoint));

  const none = await fetch(`${sim.url}/kv_event_sources`);
  assert.equal(none.status, 200);
  assert.deepEqual(await none.json(), {}, "an engine without KV events lists no source");
});

test("/version reports the release the sim claims; /ping answers GET and POST", async () => {
  assert.deepEqual(await (await fetch(`${sim.url}/version`)).json(), { version: "0.32.0" });
  assert.equal((await fetch(`${sim.url}/ping`)).status, 200);
  assert.equal((await fetch(`${sim.url}/ping`, { method: "POST" })).status, 200);
});

test("/invocations hands a body to chat, completions or embeddings by its shape, or answers vLLM's 400", async () => {
  const chat = await postJson(`${sim.url}/invocations`, {
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 3,
  });
  assert.equal(chat.status, 200, chat.text);
  assert.equal(chat.json.object, "chat.completion");
  const direct = await postJson(`${sim.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 3,
  });
  assert.equal(chat.json.choices[0].message.content, direct.json.choices[0].message.content);
  const cmpl = await postJson(`${sim.url}/invocations`, { prompt: "Hello", max_tokens: 3 });
  assert.equal(cmpl.json.object, "text_completion");
  const emb = await postJson(`${sim.url}/invocations`, { input: "Hello" });
  assert.equal(emb.json.object, "list");
  assert.equal(emb.json.data[0].object, "embedding");
  // vLLM 0.32's completion request has an optional prompt: any other object is a completion it refuses
  const junk = await postJson(`${sim.url}/invocations`, { what: "ever" });
  assert.equal(junk.status, 400);
  assert.equal(junk.json.error.param, "prompt");
  assert.match(junk.json.error.message, /^Either prompt or prompt_embeds must be provided/);
  const wrong = await postJson(`${sim.url}/invocations`, { prompt: { what: "ever" } });
  assert.equal(wrong.status, 400);
  assert.match(
    wrong.json.error.message,
    /^Cannot find suitable handler for request\. Expected one of: \['ChatCompletionRequest', 'CompletionRequest'/,
  );
});

test("a batch of conversations answers one chat.completion, choice i the chat answer to conversation i", async () => {
  const a = [{ role: "user", content: "Name a river." }];
  const b = [{ role: "user", content: "Name a mountain." }];
  const r = await postJson(`${sim.url}/v1/chat/completions/batch`, { messages: [a, b], max_tokens: 4 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.object, "chat.completion");
  assert.match(r.json.id, /^chatcmpl-/);
  assert.deepEqual(
    r.json.choices.map((c: Json) => c.index),
    [0, 1],
  );
  let prompt = 0;
  for (const [i, conv] of [a, b].entries()) {
    const one = await postJson(`${sim.url}/v1/chat/completions`, { messages: conv, max_tokens: 4 });
    assert.equal(r.json.choices[i].message.content, one.json.choices[0].message.content);
    assert.equal(r.json.choices[i].finish_reason, "length");
    prompt += one.json.usage.prompt_tokens;
  }
  assert.equal(r.json.usage.prompt_tokens, prompt);
  assert.equal(r.json.usage.completion_tokens, 8);
});

test("a batch asked to stream is answered whole, as JSON: vLLM 0.32's batch request has no stream field", async () => {
  const a = [{ role: "user", content: "Name a river." }];
  const res = await fetch(`${sim.url}/v1/chat/completions/batch`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [a, a], max_tokens: 2, stream: true }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  const body = (await res.json()) as { object: string; choices: unknown[] };
  assert.equal(body.object, "chat.completion");
  assert.equal(body.choices.length, 2);
});

test("a batch's messages are refused as vLLM's request model refuses them, at the location: type Bad Request, param body.messages.…", async () => {
  const url = `${sim.url}/v1/chat/completions/batch`;
  const refusedAt = async (messages: unknown, param: string) => {
    const r = await postJson(url, { messages, max_tokens: 2 });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.type, "Bad Request");
    assert.equal(r.json.error.param, param);
    assert.match(r.json.error.message, /^1 validation error:/);
  };
  const a = [{ role: "user", content: "Hi" }];
  await refusedAt(a, "body.messages.0"); // a flat conversation: its message is not a list
  await refusedAt([a, { role: "user", content: "Hi" }], "body.messages.1");
  await refusedAt([], "body.messages");
  await refusedAt([a, []], "body.messages.1");
  await refusedAt("Hi", "body.messages");
  // a message without a role, located in the first form of vLLM's message union
  await refusedAt([a, [{ content: "Hi" }]], "body.messages.1.0.ChatCompletionDeveloperMessageParam.role");
  // vLLM's batch-mode refusals come before the messages are read
  const n2 = await postJson(url, { messages: "x", n: 2 });
  assert.equal(n2.status, 400);
  assert.deepEqual(n2.json.error, {
    message: "Batch chat completions do not support `n > 1`. Please set `n` to 1. (parameter=n, value=2)",
    type: "BadRequestError",
    param: "n",
    code: 400,
  });
  const beams = await postJson(url, { messages: [a], use_beam_search: true });
  assert.equal(beams.json.error.param, "use_beam_search");
  assert.equal((await postJson(url, { messages: [a], n: 1, max_tokens: 1 })).status, 200);
});

test("a chat message none of vLLM's message forms takes is located in the first, the developer message, field by field", async () => {
  const url = `${sim.url}/v1/chat/completions`;
  const paramOf = async (message: unknown) => {
    const r = await postJson(url, {
      messages: [{ role: "system", content: "Be brief." }, message],
      max_tokens: 2,
    });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.type, "Bad Request");
    return r.json.error.param as string;
  };
  const form = "body.messages.1.ChatCompletionDeveloperMessageParam";
  assert.equal(await paramOf({ content: "Hi" }), `${form}.role`);
  assert.equal(await paramOf({ role: "user", content: 5 }), `${form}.content`);
  assert.equal(await paramOf({ role: 5 }), `${form}.content`);
  assert.equal(await paramOf({ role: 5, content: "Hi" }), `${form}.role`);
  assert.equal(await paramOf("Hi"), form);
});

test("path-parameter routes: a stored response's path with another method is FastAPI's 405", async () => {
  const r = await fetch(`${sim.url}/v1/responses/resp_x/cancel`);
  assert.equal(r.status, 405);
  assert.deepEqual(await r.json(), { detail: "Method Not Allowed" });
  const d = await fetch(`${sim.url}/v1/responses/resp_x`, { method: "DELETE" });
  assert.equal(d.status, 405);
});
