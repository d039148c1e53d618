// The rest of vLLM 0.32's route surface on the sim: /kv_event_sources naming the publisher's real
// ports, /version, /ping, SageMaker's /invocations dispatching by body shape, and batched chats.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../src/sim/app.js";
import { postJson, startTestSim } from "./helpers.js";

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
  const body = (await r.json()) as any;
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
    r.json.choices.map((c: any) => c.index),
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

  const streamed = await postJson(`${sim.url}/v1/chat/completions/batch`, { messages: [a], stream: true });
  assert.equal(streamed.status, 400);
  const flat = await postJson(`${sim.url}/v1/chat/completions/batch`, { messages: a });
  assert.equal(flat.status, 400);
});

test("path-parameter routes: a stored response's path with another method is FastAPI's 405", async () => {
  const r = await fetch(`${sim.url}/v1/responses/resp_x/cancel`);
  assert.equal(r.status, 405);
  assert.deepEqual(await r.json(), { detail: "Method Not Allowed" });
  const d = await fetch(`${sim.url}/v1/responses/resp_x`, { method: "DELETE" });
  assert.equal(d.status, 405);
});
