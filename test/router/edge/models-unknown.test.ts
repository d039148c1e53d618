// A router that has not yet heard an engine's /v1/models cannot tell a served model from a wrong name:
// it answers 503 with Retry-After rather than a 404 that may be false, and 404 once it knows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startRouter } from "../../../src/router/index.js";
import { post, waitUntil } from "../../helpers/router.js";

test("before an engine's model list is known a model is answered 503 + Retry-After; after, a wrong name is 404", async () => {
  let release: () => void = () => undefined;
  const listed = new Promise<void>((r) => (release = r));
  const engine = createServer((req, res) => {
    if (req.url === "/v1/models") {
      void listed.then(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({ object: "list", data: [{ id: "m", object: "model", max_model_len: 4096 }] }),
        );
      });
      return;
    }
    res.writeHead(req.url === "/health" ? 200 : 404, { "content-type": "text/plain" });
    res.end(req.url === "/metrics" ? "" : "ok");
  });
  await new Promise<void>((r) => engine.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(engine.address() as AddressInfo).port}`;
  // not routerFor: it waits for an engine in rotation, which this one is not before its models answer
  const router = await startRouter({
    host: "127.0.0.1",
    port: 0,
    backends: [url],
    health: { interval: 100, timeout: 2_000 },
    discovery: { modelsInterval: 300, metricsInterval: 100, metricsTimeout: 2_000 },
  });
  try {
    const early = await post(`${router.url}/v1/completions`, { model: "m", prompt: "hi", max_tokens: 1 });
    assert.equal(early.status, 503);
    assert.equal(early.headers.get("retry-after"), "1");
    const body = (await early.json()) as { error: { param: string; message: string } };
    assert.equal(body.error.param, "model");
    assert.match(body.error.message, /not yet learned/);
    release();
    await waitUntil(() => router.router.registry.knowsModel("m"), 5000, "the engine's models");
    const wrong = await post(`${router.url}/v1/completions`, { model: "nope", prompt: "hi", max_tokens: 1 });
    assert.equal(wrong.status, 404);
  } finally {
    release();
    await router.close();
    engine.closeAllConnections();
    await new Promise<void>((r) => engine.close(() => r()));
  }
});
