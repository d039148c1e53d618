// `switchyard up` (what `npm start` runs): the stack comes up, a chat completion through the router
// succeeds with the official openai client, and Ctrl-C stops every process it started.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { spawnCli, freePort, freeUpPorts, waitForHttp } from "../helpers/cli.js";
import { splitArgs } from "../../src/cli/up.js";

test("up: own flags and engine flags are told apart", () => {
  const { own, engine } = splitArgs([
    "--engines",
    "3",
    "--time-scale",
    "0.1",
    "--policy=least-load",
    "--no-enable-prefix-caching",
    "--max-model-len",
    "4096",
  ]);
  assert.deepEqual(own, ["--engines", "3", "--policy=least-load"]);
  assert.deepEqual(engine, ["--time-scale", "0.1", "--no-enable-prefix-caching", "--max-model-len", "4096"]);
});

test("up: two engines and the router serve a chat completion, and SIGINT stops them all", async () => {
  const port = await freePort();
  const { engineBase, kvBase } = await freeUpPorts(2);
  const stack = spawnCli([
    "up",
    "--engines",
    "2",
    "--port",
    String(port),
    "--engine-base-port",
    String(engineBase),
    "--kv-events-base-port",
    String(kvBase),
    "--model",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "--time-scale",
    "0.2",
  ]);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/ready`, 60_000);
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused" });
    const chat = await client.chat.completions.create({
      model: "Qwen/Qwen2.5-0.5B-Instruct",
      messages: [{ role: "user", content: "Hello!" }],
      max_tokens: 8,
    });
    assert.equal(chat.choices[0]!.message.role, "assistant");
    assert.ok(chat.choices[0]!.message.content!.length > 0);
    assert.equal(chat.usage!.completion_tokens, 8);
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ["Qwen/Qwen2.5-0.5B-Instruct"],
    );
    assert.match(stack.output(), /Switchyard is up: 2 simulated/);
    assert.match(stack.output(), /curl -s http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions/);
  } finally {
    const code = await stack.stop("SIGINT");
    assert.equal(code, 0, stack.output().slice(-2000));
  }
  // every engine port is free again: nothing was left running
  for (const p of [engineBase, engineBase + 1]) {
    await assert.rejects(fetch(`http://127.0.0.1:${p}/health`));
  }
});
