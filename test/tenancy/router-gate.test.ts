// The one tenancy gate both ways into the router call (HTTP ingress and the endpoint picker): it
// reads only a request's headers, so an ext_proc request authenticates exactly as an HTTP one, and a
// caller that cannot strip the usage event it would ask for leaves the client's stream as it is; what an
// answer without usage costs, and the background responses a limited tenant is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HttpError } from "../../src/http/errors.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { declaredMaxCompletion, RouterGate, UNKNOWN_CONTEXT_TOKENS } from "../../src/tenancy/router-gate.js";
import { TenancyState } from "../../src/tenancy/state.js";

const KEY = "sk-gate-00000000000000";

function gate(): RouterGate {
  const state = new TenancyState({
    cacheSaltSecret: "a-secret-of-sixteen-or-more",
    tenants: { a: { cacheIsolation: true, limits: { completionTokensPerMinute: 1000 } } },
    keys: [{ hash: hashKey(KEY), tenant: "a" }],
  });
  return new RouterGate(state, { finished() {}, tokens() {}, rejected() {} });
}

test("authenticates from headers alone: a tenant for its key, 401 in OpenAI's format without one", () => {
  const g = gate();
  assert.equal(g.authenticate({ headers: { authorization: `Bearer ${KEY}` } })?.name, "a");
  for (const authorization of [undefined, "Bearer sk-wrong-0000000000"]) {
    assert.throws(
      () => g.authenticate({ headers: { authorization } }),
      (e: unknown) => e instanceof HttpError && e.status === 401,
    );
  }
});

test("a caller that cannot strip the usage event gets the salt but leaves stream_options alone", async () => {
  const g = gate();
  const t = g.authenticate({ headers: { authorization: `Bearer ${KEY}` } })!;
  const asked: Record<string, unknown> = { model: "m", messages: [], stream: true, max_tokens: 5 };
  const withUsage = await g.admit(t, "/v1/chat/completions", asked, 100);
  assert.deepEqual(asked.stream_options, { include_usage: true, continuous_usage_stats: false });
  withUsage.request.finish(200);
  // token-in generate streams report usage when asked, as chat does
  const gen: Record<string, unknown> = { token_ids: [1], sampling_params: { max_tokens: 5 }, stream: true };
  (await g.admit(t, "/inference/v1/generate", gen, 100)).request.finish(200);
  assert.deepEqual(gen.stream_options, { include_usage: true, continuous_usage_stats: false });
  const kept: Record<string, unknown> = { model: "m", messages: [], stream: true, max_tokens: 5 };
  const without = await g.admit(t, "/v1/chat/completions", kept, 100, { usageEvent: false });
  assert.equal(kept.stream_options, undefined);
  assert.equal(kept.cache_salt, g.state.cacheSaltFor(t));
  assert.equal(without.mutated, true);
  without.request.finish(200);
  await g.state.close();
});

test("an answer without usage costs the declared maximum: the largest field each route's engine honours, vLLM's defaults, the context", () => {
  const ctx = 4096;
  const m = (path: string, obj: Record<string, unknown> | undefined) => declaredMaxCompletion(path, obj, ctx);
  assert.equal(m("/v1/chat/completions", { max_tokens: 90 }), 90);
  // chat honours both (max_completion_tokens first): the larger is what it may cost
  assert.equal(m("/v1/chat/completions", { max_completion_tokens: 40, max_tokens: 90 }), 90);
  assert.equal(m("/v1/chat/completions", { max_completion_tokens: 90, max_tokens: 40 }), 90);
  // Messages, completions and generate's sampling_params read max_tokens alone: a tiny
  // max_completion_tokens beside it lowers nothing
  assert.equal(m("/v1/messages", { max_tokens: 2000, max_completion_tokens: 1 }), 2000);
  assert.equal(m("/v1/completions", { max_tokens: 2000, max_completion_tokens: 1 }), 2000);
  assert.equal(m("/v1/completions", { max_completion_tokens: 1 }), 16, "the default, not the ignored field");
  assert.equal(
    m("/inference/v1/generate", { sampling_params: { max_tokens: 500, max_completion_tokens: 1 } }),
    500,
  );
  // /invocations as what it is served as: a chat, a completion (its prompts each), an embedding
  assert.equal(m("/invocations", { messages: [], max_completion_tokens: 1, max_tokens: 70 }), 70);
  assert.equal(m("/invocations", { prompt: Array(20).fill("a"), max_tokens: 100 }), 2000);
  assert.equal(m("/invocations", { prompt: "a" }), 16);
  assert.equal(m("/invocations", { input: "a" }), 0);
  assert.equal(m("/v1/chat/completions", { n: 3, max_tokens: 10 }), 30);
  assert.equal(m("/v1/chat/completions", {}), ctx, "chat without a maximum: what the context leaves");
  assert.equal(m("/v1/chat/completions", { max_tokens: 1e9 }), ctx, "never more than the context");
  assert.equal(m("/v1/completions", {}), 16, "vLLM's completion default");
  assert.equal(m("/v1/completions", { prompt: ["a", "b"], max_tokens: 5 }), 10);
  assert.equal(m("/v1/completions", { prompt: [1, 2, 3], max_tokens: 5 }), 5, "one prompt of token ids");
  assert.equal(m("/v1/messages", { max_tokens: 90 }), 90);
  assert.equal(m("/v1/responses", { max_output_tokens: 90, max_tokens: 1 }), 90);
  assert.equal(m("/v1/audio/transcriptions", undefined), ctx);
  assert.equal(
    m("/inference/v1/generate", { max_tokens: 1, sampling_params: { max_tokens: 90, n: 2 } }),
    180,
  );
  assert.equal(m("/v1/embeddings", { max_tokens: 90 }), 0, "a route that generates nothing");
  assert.equal(declaredMaxCompletion("/v1/messages", {}, undefined), UNKNOWN_CONTEXT_TOKENS);
});

test("a background response is refused (400, param background) for a limited tenant, and its slot comes back", async () => {
  const g = gate();
  const t = g.authenticate({ headers: { authorization: `Bearer ${KEY}` } })!;
  const body = { model: "m", input: "hi", background: true, store: true };
  await assert.rejects(
    g.admit(t, "/v1/responses", { ...body }, 100),
    (e: unknown) => e instanceof HttpError && e.status === 400 && e.param === "background",
  );
  assert.equal(g.state.localInFlight("a"), 0);
  // what vLLM's pydantic reads as true is background too
  for (const background of ["true", "True", 1, "yes"])
    await assert.rejects(g.admit(t, "/v1/responses", { ...body, background }, 100), HttpError);
  for (const background of [false, "false", 0, null]) {
    const a = await g.admit(t, "/v1/responses", { ...body, background }, 100);
    a.request.finish(400);
  }
  // the same request in the foreground is admitted
  const fg = await g.admit(t, "/v1/responses", { ...body, background: false }, 100);
  fg.request.finish(400);
  await g.state.close();
});
