// A moved greedy stream continues from the exact token ids, so it is the unbroken answer token for
// token: against real `switchyard sim` processes serving Llama 3.1 (whose chat template trims message
// text, so re-rendering a partial answer through it changes the context), eight long streams, one
// engine SIGKILLed mid-stream, compared with the same requests on a third sim that nobody kills. And
// an engine that returns no token ids: a greedy stream cannot continue exactly and says so, a sampled
// one still continues from the text.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  continuedMigrations,
  eightStreamsOneEngineKilled,
  type StreamRequest,
} from "../../helpers/migration-kill.js";
import { routerFor, waitUntil } from "../../helpers/router.js";
import { readStream } from "../../../bench/support/sse-client.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const MAX_TOKENS = 320;
/** slow enough that the kill lands mid-stream; a mean answer length far past max_tokens */
const SIM_FLAGS = ["--time-scale", "2", "--seed", "11", "--output-len-mean", "100000"];

function requestOf(i: number): StreamRequest {
  const common = {
    model: MODEL,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    return_token_ids: true,
    stream_options: { include_usage: true },
  };
  // two of each kind on each engine (round-robin puts even requests on one engine, odd on the other)
  if (i % 4 < 2)
    return {
      kind: "chat",
      body: {
        ...common,
        messages: [
          { role: "system", content: "You tell long stories." },
          { role: "user", content: `Tell story number ${i}, slowly.` },
        ],
      },
    };
  return { kind: "completion", body: { ...common, prompt: `Once upon a time, story ${i} began` } };
}

test("8 greedy Llama 3.1 streams of 320 tokens, one engine SIGKILLed mid-stream: each ends once, without an error, with the unbroken answer's text and token ids", async () => {
  await eightStreamsOneEngineKilled(MODEL, SIM_FLAGS, requestOf, async ({ routerUrl, streams, unbroken }) => {
    for (let i = 0; i < 8; i++) {
      const s = streams[i]!;
      const kind = requestOf(i).kind;
      const want = unbroken[i]!;
      const what = `stream ${i} (${kind}, started on ${s.route})`;
      assert.equal(s.status, 200);
      assert.deepEqual(s.errors, [], `${what}: no error event`);
      assert.equal(s.dones, 1, `${what}: exactly one [DONE]`);
      assert.deepEqual(s.oddities, [], `${what}: nothing unexpected`);
      assert.equal(s.ids.size, 1, `${what}: one response id throughout`);
      assert.deepEqual(
        [...s.objects],
        [kind === "chat" ? "chat.completion.chunk" : "text_completion"],
        `${what}: chunks of the client's API throughout`,
      );
      assert.equal(want.tokenIds.length, MAX_TOKENS);
      assert.deepEqual(s.tokenIds, want.tokenIds, `${what}: the unbroken answer's token ids`);
      assert.equal(s.text, want.text, `${what}: the unbroken answer's text`);
      assert.equal(s.finish, want.finish);
      assert.equal(s.finish, "length");
      assert.deepEqual(s.usage, want.usage, `${what}: usage counts the prompt once and every token`);
    }
    const m = await (await fetch(`${routerUrl}/metrics`)).text();
    assert.equal(continuedMigrations(m), 4, "the four streams on the killed engine moved");
    assert.doesNotMatch(m, /outcome="no_token_ids"/);
  });
});

/**
 * An engine older than vLLM 0.10.2: it ignores `return_token_ids`. A chat's first request streams a
 * few words and ends without [DONE]; a continuation (the partial answer as an open assistant
 * message) is answered to its end. It records what it is asked.
 */
async function engineWithoutIds(model: string): Promise<{
  url: string;
  seen: Record<string, unknown>[];
  close(): Promise<void>;
}> {
  const seen: Record<string, unknown>[] = [];
  const models = JSON.stringify({ object: "list", data: [{ id: model, object: "model", parent: null }] });
  const server: Server = createServer((req, res) => {
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": req.url === "/v1/models" ? "application/json" : "text/plain" });
      return void res.end(req.url === "/v1/models" ? models : "");
    }
    let raw = "";
    req.on("data", (c: Buffer) => (raw += c.toString()));
    req.on("end", () => {
      const doc = JSON.parse(raw) as Record<string, unknown>;
      seen.push({ path: req.url, ...doc });
      const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
        `data: ${JSON.stringify({
          id: "chatcmpl-old",
          object: "chat.completion.chunk",
          created: 1,
          model,
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        })}\n\n`;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk({ role: "assistant", content: "" }));
      if (doc.continue_final_message === true) {
        res.end(chunk({ content: " end." }, "stop") + "data: [DONE]\n\n");
        return;
      }
      res.end(chunk({ content: " Once" }) + chunk({ content: " upon" }) + chunk({ content: " a" }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

test("an engine that returns no token ids: a greedy stream ends with an error event saying so (no_token_ids), a sampled one continues from the text", async () => {
  const model = "old/engine";
  const engines = await Promise.all([engineWithoutIds(model), engineWithoutIds(model)]);
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "round-robin" },
  );
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 10_000, "both engines");
    const messages = [{ role: "user", content: "a story" }];
    const greedy = readStream(router.url, { model, messages, max_tokens: 50, temperature: 0 }, "chat");
    await greedy.done;
    assert.equal(greedy.status, 200);
    assert.equal(greedy.text, " Once upon a", "what was delivered stays");
    assert.equal(greedy.errors.length, 1);
    assert.match(
      greedy.errors[0]!,
      /engine ended the stream before \[DONE\]; the stream could not move to another engine: the engine returned no token ids/,
    );
    assert.equal(greedy.dones, 1);
    assert.equal(
      engines.reduce((n, e) => n + e.seen.length, 0),
      1,
      "no continuation was sent from the text",
    );
    let m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_migrations_total\{[^}]*reason="closed",outcome="no_token_ids"\} 1/);

    const sampled = readStream(router.url, { model, messages, max_tokens: 50, temperature: 0.8 }, "chat");
    await sampled.done;
    assert.deepEqual(sampled.errors, []);
    assert.equal(sampled.dones, 1);
    assert.equal(sampled.text, " Once upon a end.");
    const asked = engines.flatMap((e) => e.seen).find((s) => s.continue_final_message === true);
    assert.ok(asked, "a continuation from the text was sent");
    assert.equal(asked.path, "/v1/chat/completions");
    assert.deepEqual(asked.messages, [...messages, { role: "assistant", content: " Once upon a" }]);
    m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_migrations_total\{[^}]*reason="closed",outcome="continued"\} 1/);
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});
