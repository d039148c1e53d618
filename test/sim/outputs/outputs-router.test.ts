// Through the router, as `switchyard up` serves it: the openai client gets a sim's tool calls (whole
// and streamed), its schema-valid JSON and its logprobs unchanged, also where the router streams a
// plain answer from the engine and reassembles it.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { routerFor } from "../../helpers/router.js";
import { startTestSim } from "../helpers.js";
import { schemaProblems } from "../schema-check.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const params = {
  type: "object",
  properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 5 } },
  required: ["city", "days"],
};
const tools = [{ type: "function" as const, function: { name: "get_weather", parameters: params } }];
const messages = [{ role: "user" as const, content: "Weather in Oslo for three days?" }];

test("the openai client gets tool calls, structured JSON and logprobs through the router", async () => {
  // vLLM 0.32 answers a required or named tool_choice only with a tool parser to read the calls
  const sim = await startTestSim(MODEL, ["--time-scale", "0.02", "--tool-call-parser", "hermes"]);
  try {
    const router = await routerFor([sim.url], { policy: "round-robin" });
    try {
      const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "x", maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: MODEL,
        messages,
        tools,
        tool_choice: "required",
      });
      assert.equal(r.choices[0]!.finish_reason, "tool_calls");
      const call = r.choices[0]!.message.tool_calls![0]! as {
        id: string;
        function: { name: string; arguments: string };
      };
      assert.match(call.id, /^chatcmpl-tool-[0-9a-f]{32}$/);
      assert.equal(call.function.name, "get_weather");
      assert.deepEqual(schemaProblems(params, JSON.parse(call.function.arguments)), []);

      const stream = await client.chat.completions.create({
        model: MODEL,
        messages,
        tools,
        tool_choice: { type: "function", function: { name: "get_weather" } },
        stream: true,
      });
      let args = "";
      let name: string | undefined;
      let finish: string | null = null;
      for await (const chunk of stream) {
        const ch = chunk.choices[0];
        if (!ch) continue;
        finish = ch.finish_reason ?? finish;
        for (const d of ch.delta.tool_calls ?? []) {
          name ??= d.function?.name;
          args += d.function?.arguments ?? "";
        }
      }
      assert.equal(name, "get_weather");
      assert.equal(finish, "stop");
      assert.deepEqual(schemaProblems(params, JSON.parse(args)), []);

      const json = await client.chat.completions.create({
        model: MODEL,
        messages,
        response_format: { type: "json_schema", json_schema: { name: "w", schema: params } },
        logprobs: true,
        top_logprobs: 2,
      });
      assert.deepEqual(schemaProblems(params, JSON.parse(json.choices[0]!.message.content!)), []);
      const lp = json.choices[0]!.logprobs!.content!;
      assert.equal(lp.length, json.usage!.completion_tokens);
      for (const e of lp) assert.equal(e.top_logprobs.length, 2);

      // a plain answer the router may stream and reassemble (migration) keeps the engine's logprobs
      const direct = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: "x", maxRetries: 0 });
      const ask = { model: MODEL, messages, logprobs: true, top_logprobs: 3, max_tokens: 6, temperature: 0 };
      const a = await direct.chat.completions.create(ask);
      const b = await client.chat.completions.create(ask);
      assert.deepEqual(b.choices[0]!.logprobs, a.choices[0]!.logprobs);
      const c = { model: MODEL, prompt: "Oslo is", logprobs: 2, max_tokens: 5, temperature: 0 };
      const x = await direct.completions.create(c);
      const y = await client.completions.create(c);
      assert.deepEqual(y.choices[0]!.logprobs, x.choices[0]!.logprobs);
    } finally {
      await router.close();
    }
  } finally {
    await sim.close();
  }
});
