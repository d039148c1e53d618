// How the router reads an engine's 500 before relaying it: vLLM's answer for a request its dead engine
// core held is retried on another engine (as a reset would be), any other 500 reaches the client as
// the engine wrote it, and the shutdown refusal is told apart from both.
import { test } from "node:test";
import assert from "node:assert/strict";
import { engineFailureKind, VLLM_ENGINE_DEAD_MESSAGE } from "../../../src/http/vllm-answers.js";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const answer = (message: string, status = 500) =>
  Buffer.from(JSON.stringify({ error: { message, type: "InternalServerError", param: null, code: status } }));

test("an engine's 500 is read as vLLM's shutdown refusal, its dead engine core, or neither", () => {
  assert.equal(engineFailureKind(500, answer("cannot schedule new futures after shutdown")), "shutdown");
  assert.equal(engineFailureKind(500, answer(VLLM_ENGINE_DEAD_MESSAGE)), "dead");
  assert.equal(engineFailureKind(500, answer("out of memory")), null);
  assert.equal(engineFailureKind(503, answer("cannot schedule new futures after shutdown", 503)), null);
  assert.equal(engineFailureKind(500, Buffer.from("not json")), null);
  assert.equal(engineFailureKind(500, undefined), null);
});

test("a request whose engine core died holding it is answered by another engine; any other 500 is relayed as the engine wrote it", async () => {
  const [a, b] = [await startFakeEngine(), await startFakeEngine()];
  const router = await routerFor([a.url, b.url], { policy: "round-robin" });
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 10_000, "both up");
    a.mode = "dead";
    for (let i = 0; i < 4; i++) {
      const r = await post(`${router.url}/v1/completions`, {
        model: "fake/model-a",
        prompt: `p${i}`,
        max_tokens: 2,
      });
      assert.equal(r.status, 200, await r.clone().text());
      await r.arrayBuffer();
    }
    a.mode = "500";
    b.mode = "500";
    const r = await post(`${router.url}/v1/completions`, {
      model: "fake/model-a",
      prompt: "x",
      max_tokens: 2,
    });
    assert.equal(r.status, 500);
    assert.equal(
      ((await r.json()) as { error: { message: string } }).error.message,
      "something else went wrong",
    );
  } finally {
    await router.close();
    await a.kill();
    await b.kill();
  }
});
