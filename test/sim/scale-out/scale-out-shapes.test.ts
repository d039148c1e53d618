// The scale-out answers key for key as vLLM 0.32 writes them (checked against a real engine by the
// conformance suite): render's GenerateRequest and the SamplingParams in it (defaults left out as
// vLLM's encoder leaves them, greedy's resets, the stream's output kind, kv_transfer_params in
// extra_args), generate's GenerateResponse with its weight versions, derender's answers.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { postJson, startTestSim } from "../helpers.js";
import { postSse } from "../sse.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let sim: RunningSim;

before(async () => {
  sim = await startTestSim(MODEL, [
    "--time-scale",
    "0.02",
    "--output-len-mean",
    "100000",
    "--vllm-version",
    "0.32.0",
    "--enable-scale-out",
    "--max-model-len",
    "256",
  ]);
});
after(async () => sim.close());

const messages = [{ role: "user", content: "Name a river." }];
const post = (path: string, body: unknown) => postJson(`${sim.url}${path}`, body);

const GENERATE_REQUEST_KEYS = [
  "request_id",
  "token_ids",
  "token_offsets",
  "features",
  "content_parts",
  "sampling_params",
  "model",
  "reasoning_ended",
  "reasoning_parser_kwargs",
  "return_token_ids",
  "output_mode",
  "stream",
  "stream_options",
  "cache_salt",
  "priority",
  "kv_transfer_params",
  "ec_transfer_params",
];

test("a chat render writes SamplingParams with vLLM 0.32's keys: what the request sets, defaults left out", async () => {
  const r = await post("/v1/chat/completions/render", { messages, max_tokens: 4 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(Object.keys(r.json), GENERATE_REQUEST_KEYS);
  assert.deepEqual(r.json.sampling_params, {
    presence_penalty: 0,
    frequency_penalty: 0,
    repetition_penalty: 1,
    temperature: 1,
    top_p: 1,
    min_p: 0,
    stop: [],
    stop_token_ids: [],
    max_tokens: 4,
    output_kind: 2,
    skip_clone: true,
    bad_words: [],
    skip_reading_prefix_cache: false,
  });
  assert.equal(r.json.output_mode, "tokens");

  // greedy: top_p, top_k and min_p reset to their defaults and left out; max_tokens 16 is the default
  const g = await post("/v1/chat/completions/render", {
    messages,
    max_tokens: 16,
    temperature: 0,
    top_k: 5,
    stop: "x",
    seed: 5,
    logprobs: true,
    stream: true,
    stream_options: {},
    request_id: "mine",
    kv_transfer_params: { do_remote_decode: true },
    skip_special_tokens: false,
  });
  assert.equal(g.status, 200, g.text);
  assert.deepEqual(g.json.sampling_params, {
    presence_penalty: 0,
    frequency_penalty: 0,
    repetition_penalty: 1,
    temperature: 0,
    seed: 5,
    stop: ["x"],
    stop_token_ids: [],
    // chat's logprobs switch without top_logprobs: 0 per token
    logprobs: 0,
    skip_special_tokens: false,
    output_kind: 1,
    skip_clone: true,
    extra_args: { kv_transfer_params: { do_remote_decode: true } },
    bad_words: [],
    skip_reading_prefix_cache: false,
  });
  assert.equal(g.json.request_id, "chatcmpl-mine");
  assert.equal(g.json.kv_transfer_params, null, "a chat's kv_transfer_params ride in extra_args");
  assert.deepEqual(g.json.stream_options, { include_usage: false, continuous_usage_stats: false });

  // a temperature above 0 but under SamplingParams' floor is raised to it; top_k -1 is not the default
  const low = await post("/v1/chat/completions/render", { messages, temperature: 1e-6, top_k: -1, n: 3 });
  assert.equal(low.json.sampling_params.temperature, 0.01);
  assert.equal(low.json.sampling_params.top_k, -1);
  assert.equal(low.json.sampling_params.n, 3);
});

test("completions, messages and responses renders carry what each API sets", async () => {
  // an echoed prompt's logprobs are asked of the prompt too, which then reads no cache
  const c = await post("/v1/completions/render", {
    prompt: "Rivers:",
    max_tokens: 4,
    echo: true,
    logprobs: 2,
  });
  assert.equal(c.status, 200, c.text);
  const sp = c.json[0].sampling_params;
  assert.deepEqual([sp.logprobs, sp.prompt_logprobs, sp.skip_reading_prefix_cache], [2, 2, true]);

  // an Anthropic stream asks the chat path for usage as it goes
  const m = await post("/v1/messages/render", { model: MODEL, max_tokens: 4, stream: true, messages });
  assert.equal(m.status, 200, m.text);
  assert.deepEqual(m.json.stream_options, { include_usage: true, continuous_usage_stats: true });
  assert.equal(m.json.sampling_params.output_kind, 1);

  // a Responses request always has extra_args; its kv_transfer_params are in both places
  const kv = { do_remote_prefill: true };
  const r = await post("/v1/responses/render", {
    input: "Name a river.",
    max_output_tokens: 4,
    presence_penalty: 0.5,
    kv_transfer_params: kv,
  });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.sampling_params.extra_args, { kv_transfer_params: kv });
  assert.equal(r.json.sampling_params.presence_penalty, 0.5);
  assert.deepEqual(r.json.kv_transfer_params, kv);
  const plain = await post("/v1/responses/render", { input: "Hi", max_output_tokens: 4 });
  assert.deepEqual(plain.json.sampling_params.extra_args, {});

  // render keeps no state: a continued response cannot be rendered
  const prev = await post("/v1/responses/render", { input: "Hi", previous_response_id: "resp_x" });
  assert.equal(prev.status, 400);
  assert.deepEqual(prev.json.error, {
    message: "previous_response_id is not supported by the stateless render endpoint.",
    type: "invalid_request_error",
    param: "previous_response_id",
    code: 400,
  });
});

test("a completion rendered with the default 16 tokens runs to the room left, as vLLM 0.32's pair does", async () => {
  // SamplingParams' default max_tokens is 16, so the encoder leaves a request's 16 out; generate then
  // takes a missing max_tokens as the room left in the context
  const r = await post("/v1/completions/render", { prompt: "Rivers:", ignore_eos: true });
  const g = r.json[0];
  assert.ok(!("max_tokens" in g.sampling_params));
  const gen = await post("/inference/v1/generate", g);
  assert.equal(gen.status, 200, gen.text);
  assert.equal(gen.json.usage.completion_tokens, 256 - g.token_ids.length);
});

test("generate answers vLLM 0.32's GenerateResponse: every field, each finished choice's weight versions", async () => {
  const body = { token_ids: [300, 301, 302], sampling_params: { max_tokens: 3, n: 2, ignore_eos: true } };
  const r = await post("/inference/v1/generate", body);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(Object.keys(r.json), [
    "request_id",
    "model",
    "created",
    "usage",
    "prompt_logprobs",
    "prompt_token_id_logprobs",
    "prompt_token_ids",
    "mm_placeholders",
    "metrics",
    "kv_transfer_params",
    "ec_transfer_params",
    "output_mode",
    "choices",
  ]);
  assert.equal(r.json.usage.completion_tokens_details, null);
  for (const c of r.json.choices) {
    assert.deepEqual(Object.keys(c), [
      "index",
      "finish_reason",
      "stop_reason",
      "token_ids",
      "routed_experts",
      "sampling_mask",
      "weight_versions",
      "logprobs",
    ]);
    assert.deepEqual(c.weight_versions, [{ version: "default", start: 0, end: 3 }]);
  }

  const s = await postSse(`${sim.url}/inference/v1/generate`, {
    ...body,
    sampling_params: { max_tokens: 3, ignore_eos: true },
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = s.events.slice(0, -2).map((e) => e.data);
  for (const c of chunks.slice(0, -1)) assert.equal(c.choices[0].weight_versions, null);
  assert.deepEqual(chunks.at(-1).choices[0].weight_versions, [{ version: "default", start: 0, end: 3 }]);
  assert.deepEqual(Object.keys(chunks[0]), ["request_id", "usage", "output_mode", "choices"]);
  // the closing usage has the counts alone
  assert.deepEqual(s.events.at(-2)!.data.usage, { prompt_tokens: 3, total_tokens: 6, completion_tokens: 3 });
});

test("derender answers carry vLLM 0.32's fields: routed experts, prompt text, metrics, all null here", async () => {
  const g = (
    await post("/inference/v1/generate", { token_ids: [300, 301], sampling_params: { max_tokens: 2 } })
  ).json;
  const chat = await post("/v1/chat/completions/derender", { model: MODEL, generate_response: g });
  assert.equal(chat.status, 200, chat.text);
  assert.equal(chat.json.choices[0].routed_experts, null);
  for (const k of ["prompt_text", "ec_transfer_params", "metrics"]) assert.equal(chat.json[k], null, k);
  assert.equal(chat.json.usage.completion_tokens_details, null);
  const cmpl = await post("/v1/completions/derender", {
    model: MODEL,
    generate_responses: [g],
    prompt_tokens: [2],
  });
  assert.equal(cmpl.status, 200, cmpl.text);
  assert.deepEqual(Object.keys(cmpl.json.choices[0]), [
    "index",
    "text",
    "logprobs",
    "finish_reason",
    "stop_reason",
    "token_ids",
    "prompt_logprobs",
    "prompt_token_ids",
    "routed_experts",
  ]);
  for (const k of ["ec_transfer_params", "metrics"]) assert.equal(cmpl.json[k], null, k);
});
