// `switchyard up --lora-dir DIR`: the engines serve LoRA with their load API on, the router loads an
// adapter of the folder on its first request, and a name in no registry is an OpenAI 404.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnCli, upArgs, waitForHttp } from "../../bench/support/cli.js";
import { writePeftAdapter } from "../../bench/support/peft.js";
import type { Json } from "../helpers/json.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

test("up --lora-dir: a request for an adapter no engine has loaded is answered, an unknown name is a 404", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-up-lora-"));
  writePeftAdapter(join(dir, "sql"), { rank: 8, hidden: 64, layers: 2, baseModel: MODEL });
  const up = await upArgs(2, [
    "--model",
    MODEL,
    "--time-scale",
    "0.2",
    "--lora-dir",
    dir,
    "--max-loras",
    "2",
  ]);
  const stack = spawnCli(up.args);
  try {
    await waitForHttp(`http://127.0.0.1:${up.port}/ready`, 60_000);
    const post = (model: string) =>
      fetch(`http://127.0.0.1:${up.port}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, prompt: "SELECT", max_tokens: 4 }),
      });
    const r = await post("sql");
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(((await r.json()) as Json).model, "sql");
    const unknown = await post("nosuch");
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as Json).error.type, "NotFoundError");
  } finally {
    const code = await stack.stop("SIGINT");
    assert.equal(code, 0, stack.output().slice(-2000));
    rmSync(dir, { recursive: true, force: true });
  }
});
