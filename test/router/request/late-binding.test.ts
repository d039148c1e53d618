// Late binding through the live router (`predictive.queuedPrompts: 2`, the default): `predictive` keeps a
// request in the router's queue while the engine it picked has two streamed prompts awaiting their first
// token, and sends it when a first token comes back (not only when a request ends); non-streamed
// requests, whose first byte is their last, are not counted as queued prompts and are never held for
// them. The gate on the picks' cached share is off (`minCachedShare: 0`): these prompts share nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

test("predictive holds a third streamed request in the router until a first token comes back, then sends it while the others still stream", async () => {
  // wide margins: the third request is queued long before the first tokens, sent long before any end
  const e = await startFakeEngine({ models: ["fake/m"], firstTokenDelayMs: 2000, tokenDelayMs: 300 });
  const router = await routerFor([e.url], {
    policy: "predictive",
    predictive: { queuedPrompts: 2, minCachedShare: 0 },
  });
  try {
    const send = (i: number) =>
      post(`${router.url}/v1/chat/completions`, {
        model: "fake/m",
        // a prompt of some hundreds of tokens: one under an eighth of a step is never held
        messages: [{ role: "user", content: `question ${i}: ${"lorem ipsum dolor ".repeat(150)}` }],
        max_tokens: 12,
        stream: true,
      }).then((r) => r.text());
    const q = router.router.queue;
    const answers = [send(1), send(2)];
    await waitUntil(() => e.hits === 2, 5000, "two prompts sent to the engine");
    answers.push(send(3));
    await waitUntil(() => q.depth === 1, 5000, "the third waits in the router");
    assert.equal(e.hits, 2);
    // the first answers' first tokens free room: the third goes out while they are still streaming
    await waitUntil(() => e.hits === 3, 5000, "the third sent at a first token");
    assert.equal(e.active, 3, "sent before any answer ended");
    assert.equal(q.depth, 0);
    for (const a of await Promise.all(answers)) assert.match(a, /\[DONE\]/);
  } finally {
    await router.close();
    await e.close();
  }
});

test("predictive never holds non-streamed requests for each other: their first byte is their last", async () => {
  const e = await startFakeEngine({ models: ["fake/m"], firstTokenDelayMs: 800 });
  const router = await routerFor([e.url], {
    policy: "predictive",
    predictive: { queuedPrompts: 2, minCachedShare: 0 },
  });
  try {
    const answers = [1, 2, 3, 4].map((i) =>
      post(`${router.url}/v1/chat/completions`, {
        model: "fake/m",
        messages: [{ role: "user", content: `question ${i}: ${"lorem ipsum dolor ".repeat(150)}` }],
        max_tokens: 4,
      }),
    );
    await waitUntil(() => e.hits === 4, 5000, "all four sent at once");
    assert.equal(router.router.queue.depth, 0);
    for (const r of await Promise.all(answers)) assert.equal(r.status, 200);
    // every count let go once answered
    for (const u of router.router.registry.engines.values()) assert.equal(u.view.unstreamed ?? 0, 0);
  } finally {
    await router.close();
    await e.close();
  }
});
