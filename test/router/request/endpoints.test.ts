// The endpoint table (src/router/endpoints.ts) through a live router: every route vLLM 0.32 serves is
// relayed with the engine's status and body, the router answers its own and refuses per-engine ones
// with a reason, and Anthropic Messages and Responses conversations are routed by their prompt as a
// chat is.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../../deploy/tools.js";
import {
  ENDPOINTS,
  anthropicToChat,
  matchEndpoint,
  responsesToChat,
  routingInput,
} from "../../../src/router/request/endpoints.js";
import { startFakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { post, routeOf, routerFor } from "../../helpers/router.js";

const MODEL = "fake/model-a";

test("paths with an id match their pattern and give the id; others match nothing", () => {
  const get = matchEndpoint("/v1/responses/resp_abc");
  assert.equal(get?.endpoint.path, "/v1/responses/{id}");
  assert.equal(get?.id, "resp_abc");
  const cancel = matchEndpoint("/v1/responses/resp%2Fx/cancel");
  assert.equal(cancel?.endpoint.path, "/v1/responses/{id}/cancel");
  assert.equal(cancel?.id, "resp/x");
  assert.equal(matchEndpoint("/v1/responses/render")?.endpoint.path, "/v1/responses/render");
  assert.equal(matchEndpoint("/v1/responses")?.endpoint.path, "/v1/responses");
  for (const p of ["/v1/responses/", "/v1/responses//cancel", "/v1/responses/a/b", "/v1/nothing"])
    assert.equal(matchEndpoint(p), undefined, p);
  // the same object each time for a fixed path: nothing allocated per request
  assert.equal(matchEndpoint("/v1/chat/completions"), matchEndpoint("/v1/chat/completions"));
});

test("Anthropic Messages and Responses bodies become the chat messages vLLM renders them as", () => {
  assert.deepEqual(
    anthropicToChat({
      system: [
        { type: "text", text: "Be " },
        { type: "text", text: "brief." },
      ],
      messages: [
        { role: "user", content: "Hi" },
        { role: "assistant", content: [{ type: "text", text: "Hello" }] },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "t1", content: [{ type: "text", text: "42" }] },
            { type: "text", text: "And?" },
          ],
        },
      ],
    }),
    [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello" },
      { role: "tool", content: "42", tool_call_id: "t1" },
      { role: "user", content: "And?" },
    ],
  );
  assert.deepEqual(responsesToChat({ instructions: "Be brief.", input: "Hi" }), [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
  ]);
  assert.deepEqual(
    responsesToChat({
      input: [
        { role: "user", content: [{ type: "input_text", text: "Hi" }] },
        { type: "function_call_output", call_id: "c", output: "x" },
      ],
    }),
    [{ role: "user", content: "Hi" }],
  );
  // vLLM 0.32 encodes a Responses prompt with special tokens added (a second BOS); chat does not
  const responses = matchEndpoint("/v1/responses")!.endpoint;
  assert.equal(routingInput(responses, { input: "Hi" }).addSpecialTokens, true);
  const chat = matchEndpoint("/v1/chat/completions")!.endpoint;
  assert.equal(routingInput(chat, { messages: [] }).addSpecialTokens, undefined);
  const gen = matchEndpoint("/inference/v1/generate")!.endpoint;
  assert.deepEqual(routingInput(gen, { token_ids: [1, 2, 3] }).prompt, [1, 2, 3]);
  const batch = matchEndpoint("/v1/chat/completions/batch")!.endpoint;
  assert.deepEqual(routingInput(batch, { messages: [[{ role: "user", content: "a" }], []] }).messages, [
    { role: "user", content: "a" },
  ]);
});

test("docs/router.md's endpoint table has a row for every path of the table", () => {
  const doc = readFileSync(join(repoRoot(), "docs/router.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Endpoint table"), doc.indexOf("## Response affinity"));
  for (const e of ENDPOINTS) assert.ok(section.includes(`| \`${e.path}\``), `${e.path} has no row`);
});

/** A request to one table route as a client would send it. */
function requestFor(path: string, method: "GET" | "POST", body: string): RequestInit {
  if (method === "GET") return { method };
  if (path.startsWith("/v1/audio/")) {
    const boundary = "----fake";
    return {
      method,
      headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
      body:
        `--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n${MODEL}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n--${boundary}--\r\n`,
    };
  }
  return { method, headers: { "content-type": "application/json" }, body };
}

test("every route the table relays answers through the router with the engine's status and body", async () => {
  const engine = await startFakeVllm("a");
  const router = await routerFor([engine.url], { policy: "round-robin" });
  try {
    const relayed = ENDPOINTS.filter((e) => e.served === "relay");
    assert.ok(relayed.length >= 30, `${relayed.length} relayed routes`);
    for (const e of relayed) {
      // a path with an id names one the engine stored (a single engine: the router just forwards)
      let path = e.path;
      if (path.includes("{id}")) {
        const made = await post(`${router.url}/v1/responses`, { model: MODEL, input: "hi" });
        path = path.replace("{id}", ((await made.json()) as { id: string }).id);
      }
      for (const method of e.methods) {
        const body = JSON.stringify({
          model: MODEL,
          messages: [{ role: "user", content: "hi" }],
          prompt: "hi",
          input: "hi",
          token_ids: [1, 2, 3],
          max_tokens: 2,
        });
        const direct = await fetch(`${engine.url}${path}`, requestFor(path, method, body));
        const want = { status: direct.status, body: await direct.text() };
        const before = engine.seen.length;
        const res = await fetch(`${router.url}${path}`, requestFor(path, method, body));
        const text = await res.text();
        assert.equal(res.status, want.status, `${method} ${path}: ${text}`);
        assert.equal(engine.seen.length, before + 1, `${method} ${path} reached the engine once`);
        const got = engine.seen.at(-1)!;
        assert.equal(got.method, method, path);
        assert.equal(got.path, path);
        if (method === "POST" && !path.startsWith("/v1/audio/") && e.body === "json")
          assert.equal(got.body, body, `${path}: the body arrived untouched`);
        // the engine's own answer, byte for byte (stored responses' ids differ per call)
        if (!path.startsWith("/v1/responses")) assert.equal(text, want.body, `${method} ${path}`);
      }
    }
    // an engine's non-200 answer is relayed as it was, status and body
    const teapot = await post(`${router.url}/v1/messages`, { model: MODEL, messages: [], fake_status: 418 });
    assert.equal(teapot.status, 418);
    assert.equal(((await teapot.json()) as { path: string }).path, "/v1/messages");
    // a route the table knows, with a method it does not: 405
    const wrong = await fetch(`${router.url}/v1/messages`, { method: "GET" });
    assert.equal(wrong.status, 405);
    await wrong.arrayBuffer();
  } finally {
    await router.close();
    await engine.close();
  }
});

test("the router answers /ping and /load itself and refuses per-engine routes with a reason", async () => {
  const engine = await startFakeVllm("a");
  const router = await routerFor([engine.url]);
  try {
    for (const method of ["GET", "POST"]) {
      const ping = await fetch(`${router.url}/ping`, { method });
      assert.equal(ping.status, 200, method);
      await ping.arrayBuffer();
    }
    const load = await fetch(`${router.url}/load`);
    assert.deepEqual(await load.json(), { server_load: 0 });
    const before = engine.seen.length;
    for (const p of ["/kv_event_sources", "/reset_prefix_cache", "/v1/load_lora_adapter"]) {
      const method = p === "/kv_event_sources" ? "GET" : "POST";
      const res = await fetch(`${router.url}${p}`, { method, body: method === "POST" ? "{}" : undefined });
      assert.equal(res.status, 404, p);
      const err = (await res.json()) as { error: { message: string } };
      assert.match(err.error.message, /acts on one engine/, p);
    }
    assert.equal(engine.seen.length, before, "nothing per-engine was relayed");
  } finally {
    await router.close();
    await engine.close();
  }
});

test("Messages, count_tokens and Responses conversations are routed by their prompt as a chat is", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "prefix" },
  );
  try {
    const system = "You answer questions about the rivers of Europe, carefully. ".repeat(20);
    const question = "Which is the longest?";
    const first = await routeOf(router.url, "/v1/messages", {
      model: MODEL,
      max_tokens: 4,
      system,
      messages: [{ role: "user", content: question }],
    });
    const home = first.engine!;
    const again = [
      await routeOf(router.url, "/v1/chat/completions", {
        model: MODEL,
        messages: [
          { role: "system", content: system },
          { role: "user", content: question },
        ],
      }),
      await routeOf(router.url, "/v1/messages/count_tokens", {
        model: MODEL,
        system: [{ type: "text", text: system }],
        messages: [{ role: "user", content: [{ type: "text", text: question }] }],
      }),
      await routeOf(router.url, "/v1/responses", { model: MODEL, instructions: system, input: question }),
    ];
    for (const r of again) {
      assert.equal(r.engine, home);
      assert.equal(r.source, "prefix");
      assert.equal(r.reason, "prefix-hit");
    }
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});
