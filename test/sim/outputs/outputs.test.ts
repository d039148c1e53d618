// The official openai client against the sim: tool calls, structured outputs and logprobs come back in
// vLLM's shapes (non-streamed and streamed), obey the request (arguments and JSON validate against
// their schemas), count real tokens, are deterministic per request, and the bad requests get vLLM's 400s.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { RunningSim } from "../../../src/sim/app.js";
import { postJson, startTestSim } from "../helpers.js";
import { schemaProblems } from "../schema-check.js";
import type { Json } from "../../helpers/json.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let sim: RunningSim;
let client: OpenAI;

before(async () => {
  sim = await startTestSim(MODEL, [
    "--time-scale",
    "0.02",
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "hermes",
  ]);
  client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(async () => sim.close());

const weatherParams = {
  type: "object",
  properties: {
    city: { type: "string", minLength: 2, maxLength: 40 },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    days: { type: "integer", minimum: 1, maximum: 7 },
    when: { $ref: "#/$defs/When" },
  },
  required: ["city", "unit"],
  additionalProperties: false,
  $defs: {
    When: {
      type: "object",
      properties: { date: { type: "string", pattern: "^\\d{4}-\\d{2}-\\d{2}$" } },
      required: ["date"],
    },
  },
};
const tools = [
  {
    type: "function" as const,
    function: { name: "get_weather", description: "Weather", parameters: weatherParams },
  },
  {
    type: "function" as const,
    function: {
      name: "search",
      parameters: {
        type: "object",
        properties: { query: { type: "string" }, k: { type: "integer" } },
        required: ["query"],
      },
    },
  },
];
const schemaOf = (name: string) => tools.find((t) => t.function.name === name)!.function.parameters;
const messages = [{ role: "user" as const, content: "What is the weather in Paris this week?" }];

async function tokenCount(text: string): Promise<number> {
  const r = await postJson(`${sim.url}/tokenize`, { prompt: text, add_special_tokens: false });
  return r.json.count;
}

test("tool_choice required: tool_calls whose arguments validate, content '', finish_reason tool_calls, real token counts", async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: "required" });
  const c = r.choices[0]!;
  assert.equal(c.finish_reason, "tool_calls");
  assert.equal(c.message.content, "");
  assert.equal(c.message.tool_calls!.length, 1);
  const call = c.message.tool_calls![0]! as Json;
  assert.match(call.id, /^chatcmpl-tool-[0-9a-f]{32}$/);
  assert.equal(call.type, "function");
  const args = JSON.parse(call.function.arguments);
  assert.deepEqual(schemaProblems(schemaOf(call.function.name), args), []);
  // the model wrote vLLM's required form: the list of {name, parameters}, then EOS
  const raw = `[{"name": ${JSON.stringify(call.function.name)}, "parameters": ${call.function.arguments}}]`;
  assert.equal(r.usage!.completion_tokens, (await tokenCount(raw)) + 1);
  // the same request gives the same call (ids aside)
  const again = await client.chat.completions.create({
    model: MODEL,
    messages,
    tools,
    tool_choice: "required",
  });
  assert.deepEqual((again.choices[0]!.message.tool_calls![0] as Json).function, call.function);
});

test("a named function: that function's call, finish_reason stop (vLLM's forced-function convention)", async () => {
  const r = await client.chat.completions.create({
    model: MODEL,
    messages,
    tools,
    tool_choice: { type: "function", function: { name: "search" } },
  });
  const c = r.choices[0]!;
  assert.equal(c.finish_reason, "stop");
  const call = c.message.tool_calls![0]! as Json;
  assert.equal(call.function.name, "search");
  assert.deepEqual(schemaProblems(schemaOf("search"), JSON.parse(call.function.arguments)), []);
  assert.equal(r.usage!.completion_tokens, (await tokenCount(call.function.arguments)) + 1);
});

test("auto: a seeded choice between text and a call, the same for the same request; text after a tool result", async () => {
  const outcomes = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const body = { model: MODEL, messages: [{ role: "user" as const, content: `question ${i}` }], tools };
    const a = await client.chat.completions.create(body);
    const b = await client.chat.completions.create(body);
    const kind = (x: typeof a) => (x.choices[0]!.message.tool_calls?.length ? "call" : "text");
    assert.equal(kind(a), kind(b), "deterministic per request");
    outcomes.add(kind(a));
    if (kind(a) === "call") {
      assert.equal(a.choices[0]!.finish_reason, "tool_calls");
      assert.equal(a.choices[0]!.message.content, null);
      const call = a.choices[0]!.message.tool_calls![0]! as Json;
      assert.deepEqual(schemaProblems(schemaOf(call.function.name), JSON.parse(call.function.arguments)), []);
      assert.deepEqual((b.choices[0]!.message.tool_calls![0] as Json).function, call.function);
    }
  }
  assert.equal(outcomes.size, 2, `8 questions gave only ${[...outcomes].join()}`);
  // where auto is served, an explicit null tool_choice answers as auto does
  const q = { model: MODEL, messages: [{ role: "user" as const, content: "question 0" }], tools };
  const auto = await client.chat.completions.create(q);
  const asNull = await client.chat.completions.create({ ...q, tool_choice: null } as never);
  assert.deepEqual(
    (asNull as typeof auto).choices[0]!.message.tool_calls?.map((c: Json) => c.function),
    auto.choices[0]!.message.tool_calls?.map((c: Json) => c.function),
  );
  const afterTool = await client.chat.completions.create({
    model: MODEL,
    tools,
    max_tokens: 5,
    messages: [
      ...messages,
      {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: "call_1",
            type: "function",
            function: { name: "get_weather", arguments: '{"city": "Paris"}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "sunny, 24C" },
    ],
  });
  assert.deepEqual(afterTool.choices[0]!.message.tool_calls ?? [], []);
  assert.ok(afterTool.choices[0]!.message.content!.length > 0);
  const none = await client.chat.completions.create({
    model: MODEL,
    messages,
    tools,
    tool_choice: "none",
    max_tokens: 4,
  });
  assert.deepEqual(none.choices[0]!.message.tool_calls ?? [], []);
  assert.equal(none.choices[0]!.finish_reason, "length");
});

/** The streamed tool-call deltas of a request, merged per index as the openai client's users do. */
async function streamedCalls(body: Record<string, unknown>) {
  const stream = await client.chat.completions.create({ ...body, stream: true } as Json);
  const calls: Array<{ id?: string; type?: string; name?: string; args: string }> = [];
  const firsts: Json[] = [];
  let finish: string | null = null;
  let content = "";
  for await (const chunk of stream as unknown as AsyncIterable<Json>) {
    const ch = chunk.choices[0];
    if (!ch) continue;
    if (ch.finish_reason) finish = ch.finish_reason;
    if (ch.delta.content) content += ch.delta.content;
    for (const d of ch.delta.tool_calls ?? []) {
      if (!calls[d.index]) {
        firsts.push(d);
        calls[d.index] = { id: d.id, type: d.type, name: d.function?.name, args: "" };
      }
      calls[d.index]!.args += d.function?.arguments ?? "";
    }
  }
  return { calls, firsts, finish, content };
}

test("streamed tool calls: the first delta names the call (id, type, name), later ones carry argument text", async () => {
  const req = await streamedCalls({ model: MODEL, messages, tools, tool_choice: "required" });
  assert.equal(req.finish, "tool_calls");
  assert.equal(req.calls.length, 1);
  const first = req.firsts[0];
  assert.match(first.id, /^chatcmpl-tool-[0-9a-f]{32}$/);
  assert.equal(first.type, "function");
  assert.equal(first.index, 0);
  assert.deepEqual(schemaProblems(schemaOf(req.calls[0]!.name!), JSON.parse(req.calls[0]!.args)), []);
  // streamed and whole answers agree
  const whole = await client.chat.completions.create({
    model: MODEL,
    messages,
    tools,
    tool_choice: "required",
  });
  assert.equal(req.calls[0]!.args, (whole.choices[0]!.message.tool_calls![0] as Json).function.arguments);

  const named = await streamedCalls({
    model: MODEL,
    messages,
    tools,
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  assert.equal(named.finish, "stop");
  assert.equal(named.calls[0]!.name, "get_weather");
  assert.deepEqual(schemaProblems(weatherParams, JSON.parse(named.calls[0]!.args)), []);
  assert.equal(named.content, "");
});

const answerSchema = {
  type: "object",
  properties: {
    city: { type: "string" },
    temperatures: {
      type: "array",
      items: { type: "number", minimum: -30, maximum: 45 },
      minItems: 3,
      maxItems: 7,
    },
    summary: { anyOf: [{ type: "string", maxLength: 30 }, { type: "null" }] },
    alerts: { type: "array", items: { $ref: "#/$defs/Alert" } },
  },
  required: ["city", "temperatures", "summary"],
  $defs: {
    Alert: {
      type: "object",
      properties: { level: { enum: ["low", "high"] }, code: { const: 7 } },
      required: ["level", "code"],
    },
  },
};

test("response_format json_schema: content is JSON that validates, the same per request, counted in real tokens", async () => {
  const body = {
    model: MODEL,
    messages,
    response_format: {
      type: "json_schema" as const,
      json_schema: { name: "forecast", schema: answerSchema },
    },
  };
  const r = await client.chat.completions.create(body);
  const text = r.choices[0]!.message.content!;
  assert.deepEqual(schemaProblems(answerSchema, JSON.parse(text)), []);
  assert.equal(r.choices[0]!.finish_reason, "stop");
  assert.equal(r.usage!.completion_tokens, (await tokenCount(text)) + 1);
  const again = await client.chat.completions.create(body);
  assert.equal(again.choices[0]!.message.content, text);

  let streamed = "";
  const stream = await client.chat.completions.create({ ...body, stream: true });
  for await (const c of stream) streamed += c.choices[0]?.delta.content ?? "";
  assert.equal(streamed, text);

  // max_tokens cuts the JSON short, as in vLLM: finish_reason length, a prefix of the whole answer
  const cut = await client.chat.completions.create({ ...body, max_tokens: 5 });
  assert.equal(cut.choices[0]!.finish_reason, "length");
  assert.equal(cut.usage!.completion_tokens, 5);
  assert.ok(text.startsWith(cut.choices[0]!.message.content!));

  const obj = await client.chat.completions.create({
    model: MODEL,
    messages,
    response_format: { type: "json_object" },
  });
  const parsed = JSON.parse(obj.choices[0]!.message.content!);
  assert.ok(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed));
});

test("structured_outputs choice and regex, and legacy guided_json, on completions and chat", async () => {
  const choice = await client.completions.create({
    model: MODEL,
    prompt: "Is it raining?",
    structured_outputs: { choice: ["yes", "no", "maybe"] },
  } as Json);
  assert.ok(["yes", "no", "maybe"].includes(choice.choices[0]!.text));
  const regex = "[A-Z]{2}-\\d{3,5}(-[a-f]+)?";
  const re = await client.chat.completions.create({
    model: MODEL,
    messages,
    structured_outputs: { regex },
  } as Json);
  assert.match(re.choices[0]!.message.content!, new RegExp(`^(?:${regex})$`));
  const schema = {
    type: "object",
    properties: { n: { type: "integer", minimum: 3, maximum: 3 } },
    required: ["n"],
  };
  const legacy = await client.completions.create({ model: MODEL, prompt: "n?", guided_json: schema } as Json);
  assert.deepEqual(JSON.parse(legacy.choices[0]!.text), { n: 3 });
});

test("chat logprobs: one entry per token with top_logprobs of the asked length; greedy picks the top token", async () => {
  const r = await client.chat.completions.create({
    model: MODEL,
    messages,
    logprobs: true,
    top_logprobs: 3,
    max_tokens: 6,
    temperature: 0,
    ignore_eos: true,
  } as Json);
  const content = r.choices[0]!.logprobs!.content!;
  assert.equal(content.length, r.usage!.completion_tokens);
  assert.equal(content.map((e) => e.token).join(""), r.choices[0]!.message.content);
  for (const e of content) {
    assert.equal(e.top_logprobs.length, 3);
    assert.ok(e.logprob <= 0);
    assert.deepEqual(e.bytes, [...Buffer.from(e.token, "utf8")]);
    assert.equal(e.top_logprobs[0]!.token, e.token, "greedy: the sampled token is the top one");
    for (const t of e.top_logprobs) assert.ok(t.logprob <= e.logprob);
  }
  // the same request gives the same values
  const again = await client.chat.completions.create({
    model: MODEL,
    messages,
    logprobs: true,
    top_logprobs: 3,
    max_tokens: 6,
    temperature: 0,
    ignore_eos: true,
  } as Json);
  assert.deepEqual(again.choices[0]!.logprobs, r.choices[0]!.logprobs);

  const stream = await client.chat.completions.create({
    model: MODEL,
    messages,
    logprobs: true,
    top_logprobs: 2,
    max_tokens: 5,
    stream: true,
    stream_options: { include_usage: true },
  });
  let entries = 0;
  let completion = 0;
  for await (const c of stream) {
    if (c.usage) completion = c.usage.completion_tokens;
    for (const e of c.choices[0]?.logprobs?.content ?? []) {
      entries++;
      assert.equal(e.top_logprobs.length, 2);
    }
  }
  assert.equal(entries, completion);
});

test("completions logprobs: vLLM's legacy columns, streamed too; a continued answer gets the unbroken one's values", async () => {
  const prompt = [9906, 1917, 11, 420, 374, 264, 1296];
  const body = { model: MODEL, prompt, max_tokens: 6, logprobs: 2, temperature: 0, ignore_eos: true };
  const r = await client.completions.create(body);
  const lp = r.choices[0]!.logprobs!;
  assert.equal(lp.tokens!.length, 6);
  assert.equal(lp.tokens!.join(""), r.choices[0]!.text);
  assert.equal(lp.token_logprobs!.length, 6);
  assert.equal(lp.top_logprobs!.length, 6);
  let offset = 0;
  lp.tokens!.forEach((t, i) => {
    assert.equal(lp.text_offset![i], offset);
    offset += t.length;
    // greedy: the sampled token is among the top 2, so its dict has 2 entries
    assert.equal(Object.keys(lp.top_logprobs![i]!).length, 2);
    assert.equal(lp.top_logprobs![i]![t], lp.token_logprobs![i]);
  });

  let streamed = 0;
  const stream = await client.completions.create({ ...body, stream: true });
  for await (const c of stream) {
    const l = c.choices[0]?.logprobs;
    if (!l) continue;
    for (let i = 0; i < l.tokens!.length; i++) {
      assert.equal(l.token_logprobs![i], lp.token_logprobs![streamed]);
      assert.equal(l.text_offset![i], lp.text_offset![streamed]);
      streamed++;
    }
  }
  assert.equal(streamed, 6);

  // the same prompt with the first three output tokens appended: the rest continues with the same values
  const ids = await postJson(`${sim.url}/v1/completions`, { ...body, return_token_ids: true });
  const out = ids.json.choices[0].token_ids as number[];
  const cont = await client.completions.create({
    ...body,
    prompt: [...prompt, ...out.slice(0, 3)],
    max_tokens: 3,
  });
  assert.deepEqual(cont.choices[0]!.logprobs!.token_logprobs, lp.token_logprobs!.slice(3));
  assert.deepEqual(cont.choices[0]!.logprobs!.tokens, lp.tokens!.slice(3));
});

test("prompt_logprobs and echo with logprobs cover the prompt, its first position null", async () => {
  const chat = await postJson(`${sim.url}/v1/chat/completions`, {
    messages,
    max_tokens: 2,
    prompt_logprobs: 1,
  });
  assert.equal(chat.status, 200);
  const pl = chat.json.prompt_logprobs;
  assert.equal(pl.length, chat.json.usage.prompt_tokens);
  assert.equal(pl[0], null);
  for (const entry of pl.slice(1)) {
    const values = Object.values(entry) as Json[];
    assert.ok(values.length >= 1 && values.length <= 2);
    for (const v of values) assert.ok(v.logprob <= 0 && v.rank >= 1 && typeof v.decoded_token === "string");
  }
  const echo = await client.completions.create({
    model: MODEL,
    prompt: "one two three",
    max_tokens: 2,
    logprobs: 1,
    echo: true,
  });
  const lp = echo.choices[0]!.logprobs!;
  assert.equal(lp.tokens!.length, echo.usage!.prompt_tokens + 2);
  assert.equal(lp.token_logprobs![0], null);
  assert.equal(lp.top_logprobs![0], null);
});

test("a chat with echo answers the prompt's logprobs too, with top_logprobs' count (0 when unset or null: each token's own)", async () => {
  const ask = (extra: Record<string, unknown>) =>
    postJson(`${sim.url}/v1/chat/completions`, { messages, max_tokens: 2, echo: true, ...extra });
  for (const extra of [{}, { top_logprobs: null }]) {
    const r = await ask(extra);
    assert.equal(r.status, 200, r.text);
    const pl = r.json.prompt_logprobs;
    assert.equal(pl.length, r.json.usage.prompt_tokens);
    assert.equal(pl[0], null);
    for (const entry of pl.slice(1)) assert.equal(Object.keys(entry).length, 1);
  }
  const top2 = await ask({ logprobs: true, top_logprobs: 2 });
  for (const entry of top2.json.prompt_logprobs.slice(1)) assert.ok(Object.keys(entry).length >= 2);
  // prompt_logprobs set wins over echo's; without echo there are none
  const own = await ask({ prompt_logprobs: 1 });
  assert.ok(Object.keys(own.json.prompt_logprobs[1]).length >= 1);
  const none = await postJson(`${sim.url}/v1/chat/completions`, { messages, max_tokens: 2 });
  assert.equal(none.json.prompt_logprobs, null);
});

test("prompt logprobs of a long prompt arrive whole in paced chunks (an answer over 1 MiB)", async () => {
  const prompt = "alpha beta gamma delta ".repeat(1500);
  const res = await fetch(`${sim.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: 1, prompt_logprobs: 8 }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-length"), null, "sent chunked");
  const text = await res.text();
  assert.ok(text.length > 1 << 20, `${text.length} characters`);
  const body = JSON.parse(text);
  const pl = body.choices[0].prompt_logprobs;
  assert.equal(pl.length, body.usage.prompt_tokens);
  assert.equal(pl[0], null);
  assert.ok(Object.keys(pl[pl.length - 1]).length >= 8);
});

test("bad requests get vLLM's 400s", async () => {
  const url = `${sim.url}/v1/chat/completions`;
  const cases: Array<[Record<string, unknown>, RegExp, string | null]> = [
    [{ tools: [] }, /`tools` must not be an empty array/, "tools"],
    [{ tool_choice: "required" }, /^When using `tool_choice`, `tools` must be set\.$/, "tool_choice"],
    [{ tools, tool_choice: "sometimes" }, /^Invalid value for `tool_choice`: sometimes!/, "tool_choice"],
    [
      { tools, tool_choice: { type: "function", function: { name: "nope" } } },
      /^The tool specified in `tool_choice` does not match any of the specified `tools`$/,
      "tool_choice",
    ],
    [
      { tools, tool_choice: { type: "function", function: {} } },
      /^Expected field `name` in `function` in `tool_choice`!/,
      "tool_choice.function.name",
    ],
    [
      {
        tools,
        tool_choice: { type: "function", function: { name: "search" } },
        structured_outputs: { choice: ["a"] },
      },
      /^You can only either use constraints for structured outputs or tools, not both\.$/,
      null,
    ],
    [{ structured_outputs: { choice: ["a"], regex: "a" } }, /one kind of constraints/, null],
    [
      { response_format: { type: "json_schema" } },
      /the 'json_schema' field must be provided/,
      "response_format",
    ],
    [{ structured_outputs: { regex: "(a)\\1" } }, /^Failed to transform regex into a grammar: /, null],
    [
      { structured_outputs: { grammar: "root ::= 'a'" } },
      /switchyard sim does not generate from a grammar/,
      "structured_outputs",
    ],
    [
      { logprobs: true, top_logprobs: 21 },
      /^Requested sample logprobs of 21, which is greater than max allowed: 20/,
      "logprobs",
    ],
    [{ top_logprobs: 2 }, /^when using `top_logprobs`, `logprobs` must be set to true\.$/, "top_logprobs"],
    [
      { prompt_logprobs: 1, stream: true },
      /^`prompt_logprobs` are not available when `stream=True`\.$/,
      "prompt_logprobs",
    ],
    [
      { prompt_logprobs: 30 },
      /^Requested prompt logprobs of 30, which is greater than max allowed: 20/,
      "prompt_logprobs",
    ],
  ];
  for (const [extra, message, param] of cases) {
    const r = await postJson(url, { messages, max_tokens: 2, ...extra });
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.match(r.json.error.message, message, JSON.stringify(extra));
    assert.equal(r.json.error.param, param, JSON.stringify(extra));
    assert.equal(r.json.error.type, "BadRequestError");
  }
  const c = await postJson(`${sim.url}/v1/completions`, { prompt: "hi", logprobs: 21 });
  assert.equal(c.status, 400);
  assert.match(
    c.json.error.message,
    /^Requested sample logprobs of 21, which is greater than max allowed: 20/,
  );
});

test("without a tool parser vLLM 0.32 refuses auto, required and named tool_choice; a null one answers text", async () => {
  const plain = await startTestSim("Qwen/Qwen2.5-0.5B-Instruct", ["--time-scale", "0.02"]);
  try {
    const url = `${plain.url}/v1/chat/completions`;
    for (const extra of [{ tools }, { tools, tool_choice: "auto" }]) {
      const r = await postJson(url, { messages, ...extra });
      assert.equal(r.status, 400);
      assert.equal(
        r.json.error.message,
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
      );
    }
    const required = await postJson(url, { messages, tools, tool_choice: "required" });
    assert.equal(required.status, 400);
    assert.equal(required.json.error.message, 'tool_choice="required" requires --tool-call-parser to be set');
    assert.equal(required.json.error.param, null);
    const named = await postJson(url, {
      messages,
      tools,
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    assert.equal(named.status, 400);
    assert.equal(
      named.json.error.message,
      'tool_choice=function "get_weather" requires --tool-call-parser to be set',
    );
    // an explicit null tool_choice skips vLLM's checks: plain text where auto is not served
    const asNull = await postJson(url, { messages, tools, tool_choice: null, max_tokens: 3 });
    assert.equal(asNull.status, 200);
    // vLLM 0.32 writes no tool_calls key when there are none
    assert.equal(asNull.json.choices[0].message.tool_calls, undefined);
  } finally {
    await plain.close();
  }
});
