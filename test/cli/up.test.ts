// `switchyard up` (what `npm start` runs): the stack comes up, a chat completion through the router
// succeeds with the official openai client, and Ctrl-C stops every process it started.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { spawn } from "node:child_process";
import { cliCommand, spawnCli, upArgs, waitForHttp } from "../../bench/support/cli.js";
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
  const up = await upArgs(2, ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--time-scale", "0.2"]);
  const { port, engineBase } = up;
  const stack = spawnCli(up.args);
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
    // the banner names the Node the stack runs on (npm start's may be node_modules/.bin's)
    assert.match(stack.output(), /^ {2}node {5}v\d+\.\d+\.\d+$/m);
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

/** Reads a stream to its end; resolves what arrived and whether the connection broke. */
async function readStream(url: string, body: unknown): Promise<{ text: string; broken: boolean }> {
  let text = "";
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    return { text, broken: false };
  } catch {
    return { text, broken: true };
  }
}

test("up: Ctrl-C (SIGINT to the whole process group) drains a stream in flight; a second signal exits at once", async () => {
  // slow tokens: a 40-token stream takes seconds, a 2000-token one far longer than the test
  const up = await upArgs(1, ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--time-scale", "20"]);
  const { port, engineBase } = up;
  const { cmd, args } = cliCommand();
  // a process group of its own, as a shell gives a foreground job: the terminal signals all of it
  const child = spawn(cmd, [...args, ...up.args], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, SWITCHYARD_LOG_FORMAT: "json" },
  });
  let out = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString("utf8")));
  child.stderr!.on("data", (b: Buffer) => (out += b.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const group = (sig: NodeJS.Signals) => process.kill(-child.pid!, sig);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/ready`, 60_000);
    const url = `http://127.0.0.1:${port}/v1/chat/completions`;
    const msg = (n: number) => ({
      model: "Qwen/Qwen2.5-0.5B-Instruct",
      messages: [{ role: "user", content: "Hello!" }],
      max_tokens: n,
      ignore_eos: true,
      stream: true,
    });
    const short = readStream(url, msg(40));
    const long = readStream(url, msg(2000));
    // both streams are under way before the signal
    await new Promise((r) => setTimeout(r, 500));
    group("SIGINT");
    const s = await short;
    assert.equal(s.broken, false, "the short stream was not cut");
    assert.match(s.text, /data: \[DONE\]\n\n$/, "the short stream ended whole");
    assert.equal(s.text.match(/"content":"[^"]/g)?.length, 40, "all 40 tokens arrived");
    assert.equal(child.exitCode, null, "still draining the long stream");
    group("SIGINT");
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("hung"), 10_000))]);
    assert.equal(code, 130, out.slice(-2000));
    const l = await long;
    assert.ok(!/\[DONE\]/.test(l.text), "the long stream was cut by the second signal");
  } finally {
    if (child.exitCode === null) group("SIGKILL");
  }
  // nothing was left running
  await assert.rejects(fetch(`http://127.0.0.1:${engineBase}/health`));
  await assert.rejects(fetch(`http://127.0.0.1:${port}/health`));
});
