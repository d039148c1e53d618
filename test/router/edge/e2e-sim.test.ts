// End to end against real `switchyard sim` engines: the openai client through the router gets what
// it gets from an engine directly, /v1/models lists the model once, and a killed engine fails over.
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { freePort, spawnCli, waitForHttp, type Spawned } from "../../../bench/support/cli.js";
import { routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "facebook/opt-125m";

test("router in front of two sims: openai client parity, merged models, failover on a killed engine", async () => {
  const sims: Spawned[] = [];
  const urls: string[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      sims.push(spawnCli(["sim", MODEL, "--port", String(port), "--host", "127.0.0.1"]));
      urls.push(`http://127.0.0.1:${port}`);
    }
    await Promise.all(urls.map((u) => waitForHttp(`${u}/health`, 30_000)));
    const router = await routerFor(urls, { policy: "round-robin" });
    try {
      await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both sims");
      const via = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "x", maxRetries: 0 });
      const direct = new OpenAI({ baseURL: `${urls[0]}/v1`, apiKey: "x", maxRetries: 0 });
      const models: string[] = [];
      for await (const m of via.models.list()) models.push(m.id);
      assert.deepEqual(models, [MODEL]);

      const req = {
        model: MODEL,
        prompt: "The capital of France is",
        max_tokens: 8,
        seed: 1,
        temperature: 0,
      };
      const a = await direct.completions.create(req);
      const b = await via.completions.create(req);
      assert.deepEqual(b.usage, a.usage);
      assert.equal(b.choices[0]!.finish_reason, a.choices[0]!.finish_reason);
      assert.equal(b.object, "text_completion");

      let usage: unknown;
      let text = "";
      const s = await via.completions.create({
        ...req,
        stream: true,
        stream_options: { include_usage: true },
      });
      for await (const c of s) {
        text += c.choices[0]?.text ?? "";
        if (c.usage) usage = c.usage;
      }
      assert.ok(text.length > 0);
      const u = usage as { prompt_tokens: number; completion_tokens: number };
      assert.equal(u.prompt_tokens, a.usage!.prompt_tokens);
      assert.equal(u.completion_tokens, a.usage!.completion_tokens);

      await sims[1]!.stop("SIGKILL");
      for (let i = 0; i < 6; i++) {
        const r = await via.completions.create({ ...req, max_tokens: 2 });
        assert.equal(r.choices.length, 1);
      }
      await waitUntil(
        () => router.router.registry.engines.get(urls[1]!)!.state === "ejected",
        3000,
        "ejection",
      );
    } finally {
      await router.close();
    }
  } finally {
    for (const s of sims) await s.stop("SIGKILL");
  }
});
