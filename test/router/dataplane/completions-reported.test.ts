// The proxy reports each attempt's end to the routing policy: a finished answer as a completion
// (Policy.onDone: the predictive policy pauses the session's context there and learns answers' lengths),
// anything else as abandoned (the turn is no longer in flight there). A failed attempt must never read as
// a completion, or its timings would teach the policy answers' lengths it never saw.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { startFakeEngine, type FakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";
import type { RunningRouter } from "../../../src/router/index.js";
import type { EngineView, Policy, RequestView } from "../../../src/routing/index.js";

let good: FakeEngine;
let bad: FakeEngine;
let router: RunningRouter;
const done: { engine: string; elapsedMs: number; req: RequestView }[] = [];
const abandoned: { engine: string; req: RequestView }[] = [];

before(async () => {
  good = await startFakeEngine({ models: ["m"] });
  bad = await startFakeEngine({ models: ["m"] });
  router = await routerFor([good.url, bad.url], { policy: "round-robin" });
  await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both engines");
  // round-robin keeps no per-request state: the hooks are the test's spies
  const policy = router.router.routingPolicy as Policy;
  policy.onDone = (req: RequestView, engine: EngineView, elapsedMs: number) =>
    void done.push({ engine: engine.id, elapsedMs, req });
  policy.onAbandoned = (req: RequestView, engine: EngineView) =>
    void abandoned.push({ engine: engine.id, req });
});
after(async () => {
  await router.close();
  await good.close();
  await bad.close();
});

const chat = (stream: boolean) => ({
  model: "m",
  messages: [{ role: "user", content: "hi" }],
  max_tokens: 3,
  stream,
});

test("a finished answer, streamed or not, is reported once as done on the engine that answered", async () => {
  bad.mode = "503";
  done.length = 0;
  abandoned.length = 0;
  for (const stream of [false, true]) {
    const res = await post(`${router.url}/v1/chat/completions`, chat(stream));
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  }
  await waitUntil(() => done.length === 2, 5000, "both completions reported");
  for (const d of done) {
    assert.equal(d.engine, good.url);
    assert.ok(d.elapsedMs >= 0);
    assert.equal(d.req.body?.max_tokens, 3);
  }
  // a try on the failing engine first is let go there, never reported as a completion
  for (const a of abandoned) assert.equal(a.engine, bad.url);
});

test("a request no engine answers is never reported as done, only let go where it was tried", async () => {
  bad.mode = "503";
  good.mode = "503";
  done.length = 0;
  abandoned.length = 0;
  try {
    const res = await post(`${router.url}/v1/chat/completions`, chat(false));
    assert.equal(res.status, 503);
    await res.arrayBuffer();
    await waitUntil(() => abandoned.length >= 1, 5000, "the failed attempt reported");
    assert.equal(done.length, 0);
  } finally {
    good.mode = "ok";
    bad.mode = "ok";
  }
});
