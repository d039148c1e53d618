// An agent's `vllm_xargs.agentic_context` in the router's admission queue: `priority` ranks a waiting
// request within its own flow and `deadline_seconds` bounds its wait (shortening the queue's timeout,
// never extending it), as vllm-router's request pool reads them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

test("admission: a waiting request with a higher agentic priority is served first, and one whose deadline_seconds passes gets a 429 saying so", async () => {
  const e = await startFakeEngine({ models: ["fake/m"], firstTokenDelayMs: 1000 });
  const router = await routerFor([e.url], {
    policy: "round-robin",
    admission: { maxInFlightPerEngine: 1, queueSize: 8, queueTimeout: 10_000 },
  });
  try {
    const order: string[] = [];
    const send = (name: string, ctx?: Record<string, unknown>) =>
      post(`${router.url}/v1/completions`, {
        model: "fake/m",
        prompt: name,
        ...(ctx ? { vllm_xargs: { agentic_context: { program_id: name, ...ctx } } } : {}),
      }).then(async (r) => {
        order.push(`${name} ${r.status}`);
        return r;
      });
    const q = router.router.queue;
    const first = send("first");
    await waitUntil(() => e.hits === 1, 5000, "the first request holds the engine's one slot");
    const plain = send("plain");
    await waitUntil(() => q.depth === 1, 5000, "plain waits");
    const urgent = send("urgent", { priority: 10 });
    await waitUntil(() => q.depth === 2, 5000, "urgent waits");
    // a deadline far shorter than the queue's 10 s: it cannot be met behind the second-long requests ahead
    const hurried = send("hurried", { deadline_seconds: 0.001 });
    const refused = await hurried;
    assert.equal(refused.status, 429);
    assert.match(
      ((await refused.json()) as { error: { message: string } }).error.message,
      /deadline \(1 ms\)/,
    );
    await Promise.all([first, plain, urgent]);
    assert.deepEqual(
      order.filter((x) => !x.startsWith("hurried")),
      ["first 200", "urgent 200", "plain 200"],
    );
  } finally {
    await router.close();
    await e.close();
  }
});
