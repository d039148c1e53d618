// The scale-out endpoints: 403 without --enable-scale-out; with it, render gives the token ids the API
// would prompt with, /inference/v1/generate turns ids into the same ids a chat of that prompt gets
// (whole and streamed), derender turns them back into the API's answer, and abort_requests stops a
// generation by the id the server answered with.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { postJson, startTestSim } from "../helpers.js";
import { postSse } from "../sse.js";
import type { Json } from "../../helpers/json.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let off: RunningSim;
let on: RunningSim;

before(async () => {
  const args = ["--time-scale", "0.02", "--output-len-mean", "100000", "--vllm-version", "0.32.0"];
  off = await startTestSim(MODEL, args);
  on = await startTestSim(MODEL, [...args, "--enable-scale-out", "--api-key", "k"]);
});
after(async () => {
  await off.close();
  await on.close();
});

const auth = { authorization: "Bearer k" };
const messages = [
  { role: "system", content: "Be terse." },
  { role: "user", content: "Name a river." },
];

const GATED = [
  "/v1/chat/completions/render",
  "/v1/completions/render",
  "/v1/messages/render",
  "/v1/responses/render",
  "/v1/chat/completions/derender",
  "/v1/completions/derender",
  "/inference/v1/generate",
  "/inference/v1/abort_requests",
];

test("a sim claiming a vLLM before 0.32 has no scale-out routes: 404, as those releases answer", async () => {
  const old = await startTestSim(MODEL, ["--vllm-version", "0.28.0", "--enable-scale-out"]);
  try {
    for (const path of GATED) assert.equal((await postJson(`${old.url}${path}`, {})).status, 404, path);
  } finally {
    await old.close();
  }
});

test("without --enable-scale-out every scale-out endpoint is a 403 in vLLM's error shape", async () => {
  for (const path of GATED) {
    const r = await postJson(`${off.url}${path}`, {});
    assert.equal(r.status, 403, path);
    assert.equal(r.json.error.code, 403, path);
    assert.equal(r.json.error.type, "Forbidden", path);
    assert.match(r.json.error.message, /--enable-scale-out/);
  }
});

test("the /inference paths need the API key, as vLLM guards them", async () => {
  const r = await postJson(`${on.url}/inference/v1/generate`, { token_ids: [1], sampling_params: {} });
  assert.equal(r.status, 401);
});

test("chat render gives the chat's prompt ids and SamplingParams; generate gives the chat's output ids", async () => {
  const render = await postJson(`${on.url}/v1/chat/completions/render`, { messages, max_tokens: 7 }, auth);
  assert.equal(render.status, 200, render.text);
  const g = render.json;
  assert.match(g.request_id, /^chatcmpl-/);
  const tok = await postJson(`${on.url}/tokenize`, { messages });
  assert.deepEqual(g.token_ids, tok.json.tokens);
  assert.equal(g.sampling_params.max_tokens, 7);
  assert.equal(g.stream, false);
  assert.equal(g.output_mode, "tokens");
  for (const k of ["token_offsets", "features", "content_parts", "kv_transfer_params", "ec_transfer_params"])
    assert.equal(g[k], null, k);
  assert.ok(!("assistant_tokens_mask" in g), "vLLM 0.32's GenerateRequest has none");

  const chat = await postJson(
    `${on.url}/v1/chat/completions`,
    { messages, max_tokens: 7, return_token_ids: true },
    auth,
  );
  const gen = await postJson(`${on.url}/inference/v1/generate`, g, auth);
  assert.equal(gen.status, 200, gen.text);
  assert.match(gen.json.request_id, /^generate-tokens-chatcmpl-/);
  assert.equal(gen.json.model, MODEL);
  assert.equal(gen.json.output_mode, "tokens");
  assert.deepEqual(gen.json.choices[0].token_ids, chat.json.choices[0].token_ids);
  assert.equal(gen.json.choices[0].finish_reason, "length");
  assert.equal(gen.json.usage.prompt_tokens, g.token_ids.length);
  assert.equal(gen.json.usage.completion_tokens, 7);

  const de = await postJson(
    `${on.url}/v1/chat/completions/derender`,
    { model: MODEL, generate_response: gen.json, prompt_tokens: g.token_ids.length },
    auth,
  );
  assert.equal(de.status, 200, de.text);
  assert.equal(de.json.object, "chat.completion");
  assert.equal(de.json.id, gen.json.request_id);
  assert.equal(de.json.choices[0].message.content, chat.json.choices[0].message.content);
  assert.equal(de.json.choices[0].finish_reason, "length");
  assert.deepEqual(
    [de.json.usage.prompt_tokens, de.json.usage.completion_tokens],
    [chat.json.usage.prompt_tokens, chat.json.usage.completion_tokens],
  );
});

test("completions render is a list, one GenerateRequest per prompt; completions derender joins them", async () => {
  const r = await postJson(
    `${on.url}/v1/completions/render`,
    { prompt: ["Hello", "The sky is"], max_tokens: 5 },
    auth,
  );
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.length, 2);
  assert.equal(r.json[0].sampling_params.max_tokens, 5);
  // one request id, told apart by the prompt's index
  const base = r.json[0].request_id.replace(/-0$/, "");
  assert.match(base, /^cmpl-/);
  assert.deepEqual(
    r.json.map((g: { request_id: string }) => g.request_id),
    [`${base}-0`, `${base}-1`],
  );
  const tok = await postJson(`${on.url}/tokenize`, { prompt: "The sky is" });
  assert.deepEqual(r.json[1].token_ids, tok.json.tokens);
  const gens = [];
  for (const g of r.json) gens.push((await postJson(`${on.url}/inference/v1/generate`, g, auth)).json);
  const de = await postJson(
    `${on.url}/v1/completions/derender`,
    { model: MODEL, generate_responses: gens, prompt_tokens: r.json.map((g: Json) => g.token_ids.length) },
    auth,
  );
  assert.equal(de.status, 200, de.text);
  assert.equal(de.json.object, "text_completion");
  assert.deepEqual(
    de.json.choices.map((c: Json) => c.index),
    [0, 1],
  );
  const cmpl = await postJson(`${on.url}/v1/completions`, { prompt: "The sky is", max_tokens: 5 }, auth);
  assert.equal(de.json.choices[1].text, cmpl.json.choices[0].text);
  const mismatch = await postJson(
    `${on.url}/v1/completions/derender`,
    { model: MODEL, generate_responses: gens, prompt_tokens: [1] },
    auth,
  );
  assert.equal(mismatch.status, 400);
});

test("messages and responses render to the prompts their APIs run; vLLM has no derender for them", async () => {
  const m = await postJson(
    `${on.url}/v1/messages/render`,
    {
      model: MODEL,
      max_tokens: 5,
      system: "Be terse.",
      messages: [{ role: "user", content: "Name a river." }],
    },
    auth,
  );
  assert.equal(m.status, 200, m.text);
  const tok = await postJson(`${on.url}/tokenize`, { messages });
  assert.deepEqual(m.json.token_ids, tok.json.tokens);
  assert.equal(m.json.sampling_params.max_tokens, 5);
  const resp = await postJson(
    `${on.url}/v1/responses/render`,
    { instructions: "Be terse.", input: "Name a river.", max_output_tokens: 5 },
    auth,
  );
  assert.equal(resp.status, 200, resp.text);
  // vLLM 0.32 adds special tokens to the rendered Responses template: a second BOS
  assert.deepEqual(resp.json.token_ids, [tok.json.tokens[0], ...tok.json.tokens]);

  // vLLM 0.32 derenders chats and completions only: /v1/responses/derender is the path of a stored
  // response (GET only), so a POST there is FastAPI's 405
  const gen = (await postJson(`${on.url}/inference/v1/generate`, m.json, auth)).json;
  const msg = await postJson(
    `${on.url}/v1/messages/derender`,
    { model: MODEL, generate_response: gen },
    auth,
  );
  assert.equal(msg.status, 404);
  const res = await fetch(`${on.url}/v1/responses/derender`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, generate_response: gen }),
  });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET");
  assert.deepEqual(await res.json(), { detail: "Method Not Allowed" });
  // and a GET of it asks for a response by that id
  const get = await fetch(`${on.url}/v1/responses/derender`, { headers: auth });
  assert.equal(get.status, 404);
  assert.equal(((await get.json()) as Json).error.param, "response_id");
});

test("generate streams one chunk per step with the ids, the reason on the last, usage, then [DONE]", async () => {
  const ids = (await postJson(`${on.url}/tokenize`, { prompt: "Once upon a time" })).json.tokens;
  const whole = await postJson(
    `${on.url}/inference/v1/generate`,
    { token_ids: ids, sampling_params: { max_tokens: 6 } },
    auth,
  );
  const s = await postSse(
    `${on.url}/inference/v1/generate`,
    {
      token_ids: ids,
      sampling_params: { max_tokens: 6 },
      stream: true,
      stream_options: { include_usage: true },
      output_mode: "text",
    },
    auth,
  );
  assert.equal(s.status, 200);
  assert.equal(s.events.at(-1)!.data, "[DONE]");
  const usage = s.events.at(-2)!.data;
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.completion_tokens, 6);
  const chunks = s.events.slice(0, -2).map((e) => e.data);
  const got = chunks.flatMap((c) => c.choices[0].token_ids);
  assert.deepEqual(got, whole.json.choices[0].token_ids);
  assert.deepEqual(
    chunks.map((c) => c.choices[0].finish_reason),
    [...chunks.slice(1).map(() => null), "length"],
  );
  for (const c of chunks) assert.equal(c.output_mode, "text");
  const text = chunks.map((c) => c.choices[0].text).join("");
  const cmpl = await postJson(`${on.url}/v1/completions`, { prompt: ids, max_tokens: 6 }, auth);
  assert.equal(text, cmpl.json.choices[0].text);
});

test("stop strings in SamplingParams end the output, with the string as stop_reason", async () => {
  const ids = (await postJson(`${on.url}/tokenize`, { prompt: "Tell me more" })).json.tokens;
  const body = { token_ids: ids, sampling_params: { max_tokens: 10 }, output_mode: "text" };
  const full = (await postJson(`${on.url}/inference/v1/generate`, body, auth)).json.choices[0];
  const stop = ` ${(full.text as string).split(" ")[3]}`;
  const cut = (
    await postJson(
      `${on.url}/inference/v1/generate`,
      { ...body, sampling_params: { max_tokens: 10, stop: [stop] } },
      auth,
    )
  ).json.choices[0];
  assert.equal(cut.finish_reason, "stop");
  assert.equal(cut.stop_reason, stop);
  assert.equal(cut.text, (full.text as string).slice(0, (full.text as string).indexOf(stop)));
  assert.deepEqual(cut.token_ids, full.token_ids.slice(0, cut.token_ids.length));
});

test("a stop string past the first 4,096 tokens is found as the tokens come and ends the output there", async () => {
  const ids = (await postJson(`${on.url}/tokenize`, { prompt: "Write at length" })).json.tokens;
  const body = {
    token_ids: ids,
    sampling_params: { max_tokens: 4600, ignore_eos: true },
    output_mode: "text",
  };
  const full = (await postJson(`${on.url}/inference/v1/generate`, body, auth)).json.choices[0];
  const text = full.text as string;
  // three words from token k ≥ 4,400 on (each token is one word with its leading space) that appear
  // nowhere earlier
  const words = text.split(" ").slice(1);
  const phrase = (k: number) => ` ${words.slice(k, k + 3).join(" ")}`;
  const offsetOf = (k: number) => words.slice(0, k).reduce((a, w) => a + w.length + 1, 0);
  let k = 4400;
  while (text.indexOf(phrase(k)) !== offsetOf(k)) k++;
  const stop = phrase(k);
  const cut = (
    await postJson(
      `${on.url}/inference/v1/generate`,
      { ...body, sampling_params: { ...body.sampling_params, stop: [stop] } },
      auth,
    )
  ).json.choices[0];
  assert.equal(cut.finish_reason, "stop");
  assert.equal(cut.stop_reason, stop);
  assert.equal(cut.text, text.slice(0, text.indexOf(stop)));
  assert.equal(cut.token_ids.length, k + 3);
  assert.deepEqual(cut.token_ids, full.token_ids.slice(0, k + 3));
});

test("abort_requests stops a streaming generation by its id; a body without request_ids is a 400", async () => {
  const missing = await postJson(`${on.url}/inference/v1/abort_requests`, {}, auth);
  assert.equal(missing.status, 400);
  assert.deepEqual(missing.json.error, {
    message: "Missing 'request_ids' in request body",
    type: "Bad Request",
    param: null,
    code: 400,
  });
  const res = await fetch(`${on.url}/inference/v1/generate`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "long-one", ...auth },
    body: JSON.stringify({
      token_ids: [128000, 9906],
      sampling_params: { max_tokens: 100000, ignore_eos: true },
      stream: true,
    }),
  });
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value), /generate-tokens-long-one/);
  const abort = await postJson(
    `${on.url}/inference/v1/abort_requests`,
    { request_ids: ["generate-tokens-long-one", "unknown"] },
    auth,
  );
  assert.equal(abort.status, 200);
  assert.equal(abort.text, "");
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    rest += new TextDecoder().decode(value);
  }
  assert.match(rest, /"finish_reason":"abort"/);
  assert.ok(rest.endsWith("data: [DONE]\n\n"));
});

test("generate refuses what vLLM refuses: negative ids, ids outside the vocabulary, n above max_num_seqs", async () => {
  const neg = await postJson(
    `${on.url}/inference/v1/generate`,
    { token_ids: [-1], sampling_params: {} },
    auth,
  );
  assert.equal(neg.status, 400);
  assert.match(neg.json.error.message, /token_ids must not contain negative values/);
  const vocab = await postJson(
    `${on.url}/inference/v1/generate`,
    { token_ids: [10_000_000], sampling_params: {} },
    auth,
  );
  assert.equal(vocab.status, 400);
  const many = await postJson(
    `${on.url}/inference/v1/generate`,
    { token_ids: [1, 2], sampling_params: { n: 100_000 } },
    auth,
  );
  assert.equal(many.status, 400);
  assert.match(many.json.error.message, /max_num_seqs/);
  const empty = await postJson(
    `${on.url}/inference/v1/generate`,
    { token_ids: [], sampling_params: {} },
    auth,
  );
  assert.equal(empty.status, 400);
});

test("generate cuts a max_tokens past the context to the room left and refuses a prompt that leaves none, in vLLM's engine words", async () => {
  const small = await startTestSim(MODEL, [
    "--time-scale",
    "0.02",
    "--vllm-version",
    "0.32.0",
    "--enable-scale-out",
    "--max-model-len",
    "64",
  ]);
  try {
    const ids = (n: number) => Array.from({ length: n }, (_, i) => 300 + i);
    const cut = await postJson(`${small.url}/inference/v1/generate`, {
      token_ids: ids(10),
      sampling_params: { max_tokens: 5000, ignore_eos: true },
    });
    assert.equal(cut.status, 200);
    assert.equal(cut.json.usage.completion_tokens, 54);
    assert.equal(cut.json.choices[0].finish_reason, "length");
    const full = await postJson(`${small.url}/inference/v1/generate`, {
      token_ids: ids(64),
      sampling_params: { max_tokens: 5 },
    });
    assert.equal(full.status, 400);
    assert.equal(full.json.error.param, null);
    assert.match(
      full.json.error.message,
      /^The decoder prompt \(length 64\) plus the number of requested output tokens/,
    );
    const past = await postJson(`${small.url}/inference/v1/generate`, {
      token_ids: ids(65),
      sampling_params: { max_tokens: 5 },
    });
    assert.equal(past.status, 400);
    assert.match(
      past.json.error.message,
      /^The decoder prompt \(length 65\) is longer than the maximum model length of 64\./,
    );
  } finally {
    await small.close();
  }
});
