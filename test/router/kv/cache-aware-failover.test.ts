// Cache-aware routing and failover: an engine that holds a request's prefix but fails it must not pull
// the retry back (the tried-engines filter runs before the cache scorer), and once it fails live
// traffic it gets no cache credit, so follow-ups go elsewhere too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const PROMPT = "You answer questions about the rivers of Europe in detail. ".repeat(20);

test("hybrid: the engine holding the prefix answers 503 → the request fails over and succeeds", async () => {
  const a = await startFakeEngine({ models: ["fake/m"] });
  const b = await startFakeEngine({ models: ["fake/m"] });
  // passive ejection off for this test (a large threshold): the retry alone must avoid the engine
  const router = await routerFor([a.url, b.url], {
    policy: "hybrid",
    retry: { maxAttempts: 2 },
    health: { interval: 100, timeout: 1000, failuresToEject: 50, successesToReadmit: 2, passiveFailures: 50 },
  });
  try {
    await waitUntil(
      () => [a, b].every((e) => router.router.registry.engines.get(e.url)!.state === "healthy"),
      5000,
      "both engines in rotation",
    );
    // the first request teaches the prefix index where the prompt lives; repeats follow it
    const first = await post(`${router.url}/v1/completions`, {
      model: "fake/m",
      prompt: PROMPT,
      max_tokens: 2,
    });
    assert.equal(first.status, 200);
    await first.arrayBuffer();
    const holder = a.hits === 1 ? a : b;
    const other = holder === a ? b : a;
    for (let i = 0; i < 3; i++) {
      const r = await post(`${router.url}/v1/completions`, {
        model: "fake/m",
        prompt: PROMPT,
        max_tokens: 2,
      });
      await r.arrayBuffer();
    }
    assert.equal(holder.hits, 4, "repeats went to the engine holding the prefix");
    assert.equal(other.hits, 0);

    holder.mode = "503";
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: PROMPT, max_tokens: 2 });
    const body = (await r.json()) as { choices?: { text: string }[] };
    assert.equal(r.status, 200, "failed over to the other engine");
    assert.equal(body.choices![0]!.text, "tok tok");
    assert.equal(other.hits, 1, "the retry went to the other engine, not back to the holder");
    const retries = async () =>
      Number(
        /switchyard_retries_total\{[^}]*\} (\d+)/.exec(
          await (await fetch(`${router.url}/metrics`)).text(),
        )?.[1],
      );
    assert.equal(await retries(), 1, "the holder was tried first (it holds the prefix), then one retry");

    // the holder now has a passive failure on record: its cache credit no longer attracts requests
    const next = await post(`${router.url}/v1/completions`, {
      model: "fake/m",
      prompt: PROMPT,
      max_tokens: 2,
    });
    assert.equal(next.status, 200);
    await next.arrayBuffer();
    assert.equal(other.hits, 2);
    assert.equal(await retries(), 1, "no cache credit for an engine failing live traffic: not tried again");
  } finally {
    await router.close();
    await a.close();
    await b.close();
  }
});
