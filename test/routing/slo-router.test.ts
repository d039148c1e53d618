// TTFT SLO admission through the live router: the predictive policy answers 429 with Retry-After, at
// once and without touching an engine, when no engine is predicted to serve the first token within the
// request's SLO (x-slo-ttft-ms, or the model's default); a bad header is a 400 in OpenAI's error format.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";

// ≈ 50,000 tokens by the router's estimate (4 characters a token): seconds of prefill at any speed
const LONG = "Tell me about the rivers of Europe, one by one, in detail. ".repeat(3400);

test("predictive: a request no engine can serve within its SLO gets 429 + Retry-After, the engine never sees it", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([e.url], { policy: "predictive" });
  try {
    await waitUntil(
      () => router.router.registry.engines.get(e.url)!.state === "healthy",
      5000,
      "engine ready",
    );
    const r = await post(
      `${router.url}/v1/completions`,
      { model: "fake/m", prompt: LONG, max_tokens: 2 },
      { "x-slo-ttft-ms": "50" },
    );
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get("retry-after")) >= 1, `retry-after ${r.headers.get("retry-after")}`);
    const body = (await r.json()) as { error: { message: string; type: string; code: number } };
    assert.equal(body.error.type, "RateLimitError");
    assert.equal(body.error.code, 429);
    assert.match(body.error.message, /TTFT SLO of 50 ms/);
    assert.equal(e.hits, 0, "refused before any engine was asked");
    const metrics = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(metrics, /switchyard_rejected_requests_total\{reason="slo"\} 1/);

    // the same request with room in its SLO (or none at all) is served
    const ok = await post(
      `${router.url}/v1/completions`,
      { model: "fake/m", prompt: LONG, max_tokens: 2 },
      { "x-slo-ttft-ms": "600000" },
    );
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const plain = await post(`${router.url}/v1/completions`, {
      model: "fake/m",
      prompt: LONG,
      max_tokens: 2,
    });
    assert.equal(plain.status, 200);
    await plain.arrayBuffer();

    const bad = await post(
      `${router.url}/v1/completions`,
      { model: "fake/m", prompt: "hi", max_tokens: 2 },
      { "x-slo-ttft-ms": "soon" },
    );
    assert.equal(bad.status, 400);
    const err = (await bad.json()) as { error: { message: string; param: string } };
    assert.equal(err.error.param, "x-slo-ttft-ms");
    assert.match(err.error.message, /x-slo-ttft-ms must be a number of milliseconds/);
  } finally {
    await router.close();
    await e.close();
  }
});

test("predictive: a model's default SLO applies to requests without the header", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([e.url], { policy: "predictive", slo: { models: { "fake/m": 50 } } });
  try {
    await waitUntil(
      () => router.router.registry.engines.get(e.url)!.state === "healthy",
      5000,
      "engine ready",
    );
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: LONG, max_tokens: 2 });
    assert.equal(r.status, 429);
    await r.arrayBuffer();
    const short = await post(`${router.url}/v1/completions`, {
      model: "fake/m",
      prompt: "hi",
      max_tokens: 2,
    });
    assert.equal(short.status, 200, "a short prompt fits the SLO");
    await short.arrayBuffer();
  } finally {
    await router.close();
    await e.close();
  }
});

test("predictive: the operator's SLO is a ceiling, so x-slo-ttft-ms above it does not lift it and a lower one tightens it", async () => {
  const e = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([e.url], { policy: "predictive", slo: { ttftMs: 20 } });
  try {
    await waitUntil(
      () => router.router.registry.engines.get(e.url)!.state === "healthy",
      5000,
      "engine ready",
    );
    const ask = (headers: Record<string, string>) =>
      post(`${router.url}/v1/completions`, { model: "fake/m", prompt: LONG, max_tokens: 2 }, headers);
    const without = await ask({});
    assert.equal(without.status, 429);
    assert.match(((await without.json()) as { error: { message: string } }).error.message, /SLO of 20 ms/);
    const lifted = await ask({ "x-slo-ttft-ms": "600000" });
    assert.equal(lifted.status, 429, "the header cannot lift the operator's SLO");
    assert.match(((await lifted.json()) as { error: { message: string } }).error.message, /SLO of 20 ms/);
    const tighter = await ask({ "x-slo-ttft-ms": "5" });
    assert.equal(tighter.status, 429);
    assert.match(((await tighter.json()) as { error: { message: string } }).error.message, /SLO of 5 ms/);
    assert.equal(e.hits, 0, "no engine saw the long prompt");
  } finally {
    await router.close();
    await e.close();
  }
});
