// The peers' designs kept as baselines (src/routing/baselines/) decide as their sources describe:
// vllm-router's cache_aware by match rate, in-flight counts and its balance thresholds; llm-d's
// sticky-until-saturated by session affinity until the engine's queued prefill tokens reach its threshold.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createPolicy,
  decide,
  PrefixOracle,
  type CacheOracle,
  type Decision,
} from "../../src/routing/index.js";
import { eng } from "../helpers/routing.js";

const pickedId = (d: Decision) => (d.kind === "picked" ? d.engine.id : d.kind);
const text = (group: number, question: number) =>
  `group ${group}: ${"shared words of a long system prompt ".repeat(40)} question ${question} ${"q".repeat(100)}`;

test("vllm-router-cache-aware sends a prompt to the engine that was sent its prefix, however busier within the balance thresholds", () => {
  const policy = createPolicy("vllm-router-cache-aware", { cache: new PrefixOracle() });
  let seq = 0;
  const first = decide(
    policy,
    { model: "m", seq: seq++, prompt: text(1, 0) },
    { engines: [eng("a"), eng("b")] },
  );
  assert.equal(pickedId(first), "a"); // no match: the least loaded, the first of equals
  // a is 60 requests busier than b: within balance_abs_threshold (64), so the prefix keeps it
  const engines = [eng("a", { inFlight: 61 }), eng("b", { inFlight: 1 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: seq++, prompt: text(1, 1) }, { engines })), "a");
  // another group matches nowhere: the least loaded
  assert.equal(pickedId(decide(policy, { model: "m", seq: seq++, prompt: text(2, 0) }, { engines })), "b");
});

test("vllm-router-cache-aware goes to the least loaded engine once the fleet is imbalanced, whatever it holds", () => {
  const policy = createPolicy("vllm-router-cache-aware", { cache: new PrefixOracle() });
  decide(policy, { model: "m", seq: 0, prompt: text(1, 0) }, { engines: [eng("a"), eng("b")] });
  // 70 apart (> 64) and 71 > 1.5 × 1: imbalanced
  const engines = [eng("a", { inFlight: 71 }), eng("b", { inFlight: 1 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 1, prompt: text(1, 1) }, { engines })), "b");
  // far apart in count but not in ratio (200 vs 150): balanced, the prefix wins
  const close = [eng("a", { inFlight: 200 }), eng("b", { inFlight: 150 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 2, prompt: text(1, 2) }, { engines: close })), "a");
});

test("vllm-router-cache-aware treats a match at or below the cache threshold as no match", () => {
  const policy = createPolicy("vllm-router-cache-aware", {
    cache: new PrefixOracle(),
    vllmRouterCacheAware: { cacheThreshold: 0.9 },
  });
  decide(policy, { model: "m", seq: 0, prompt: text(1, 0) }, { engines: [eng("a"), eng("b")] });
  // same system prompt, but the long question keeps the match rate under 0.9: least loaded
  const engines = [eng("a", { inFlight: 3 }), eng("b", { inFlight: 2 })];
  const prompt = `${text(1, 1)} ${"another long question ".repeat(60)}`;
  assert.equal(pickedId(decide(policy, { model: "m", seq: 1, prompt }, { engines })), "b");
});

// llm-d-sticky: a fixed-size prompt oracle, so that queued prefill tokens are known numbers
const tokensOracle = (promptTokens: number): CacheOracle => ({
  predict: (_req, engines) => ({
    promptTokens,
    cachedTokens: new Float64Array(engines.length),
    source: engines.map(() => "kv" as const),
  }),
});

test("llm-d-sticky keeps a session on its engine while the engine's queued prefill tokens stay under the threshold, however busier it is", () => {
  const policy = createPolicy("llm-d-sticky", {
    cache: tokensOracle(60_000),
    llmdSticky: { saturationTokens: 200_000 },
  });
  const first = decide(policy, { model: "m", seq: 0, sessionKey: "s1" }, { engines: [eng("a"), eng("b")] });
  assert.equal(pickedId(first), "a");
  // a holds the session's 60k queued tokens and one more request in flight; b is idle: the session stays on a
  const engines = [eng("a", { inFlight: 1 }), eng("b")];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 1, sessionKey: "s1" }, { engines })), "a");
  const busier = [eng("a", { inFlight: 2 }), eng("b")];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 2, sessionKey: "s1" }, { engines: busier })), "a");
});

test("llm-d-sticky releases a session once its engine's queued prefill reaches the threshold, to the engine with the fewest tokens in flight, and the session stays there", () => {
  const policy = createPolicy("llm-d-sticky", {
    cache: tokensOracle(60_000),
    llmdSticky: { saturationTokens: 150_000 },
  });
  let seq = 0;
  const on = (ids: string, engines: ReturnType<typeof eng>[]) =>
    pickedId(decide(policy, { model: "m", seq: seq++, sessionKey: ids }, { engines }));
  assert.equal(on("s1", [eng("a"), eng("b"), eng("c")]), "a");
  assert.equal(on("s1", [eng("a", { inFlight: 1 }), eng("b"), eng("c")]), "a");
  // a now holds 120k queued prefill tokens: under 150k, still sticky
  assert.equal(on("s1", [eng("a", { inFlight: 2 }), eng("b"), eng("c")]), "a");
  // 180k: saturated; b and c are idle, the tie goes round-robin's way
  const released = on("s1", [eng("a", { inFlight: 3 }), eng("b"), eng("c")]);
  assert.ok(released === "b" || released === "c", released);
  // the session's engine is now the one it went to
  const after = [
    eng("a", { inFlight: 3 }),
    eng("b", { inFlight: released === "b" ? 1 : 0 }),
    eng("c", { inFlight: released === "c" ? 1 : 0 }),
  ];
  assert.equal(on("s1", after), released);
});

test("llm-d-sticky sends a session's first request to the engine with the fewest tokens in flight, not by request count", () => {
  const policy = createPolicy("llm-d-sticky", { cache: tokensOracle(50_000) });
  // one big session on a, then many small ones would not matter: tokens decide
  decide(policy, { model: "m", seq: 0, sessionKey: "big" }, { engines: [eng("a"), eng("b")] });
  const engines = [eng("a", { inFlight: 1 }), eng("b")];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 2, sessionKey: "new" }, { engines })), "b");
});

test("llm-d-sticky lets a request's tokens go at its first token, and counts none on an engine where nothing awaits one", () => {
  const policy = createPolicy("llm-d-sticky", {
    cache: tokensOracle(60_000),
    llmdSticky: { saturationTokens: 100_000 },
  });
  const first = { model: "m", seq: 0, sessionKey: "s1" };
  assert.equal(pickedId(decide(policy, first, { engines: [eng("a"), eng("b")] })), "a");
  const second = { model: "m", seq: 1, sessionKey: "s1" };
  assert.equal(pickedId(decide(policy, second, { engines: [eng("a"), eng("b")] })), "a");
  // both prefilled: their first tokens came back, so a holds nothing queued and the session stays
  // (had they been counted still, 120k against 100k would have sent it to b)
  policy.onFirstToken!(first, eng("a"), 500);
  policy.onFirstToken!(second, eng("a"), 900);
  const third = { model: "m", seq: 2, sessionKey: "s1" };
  assert.equal(pickedId(decide(policy, third, { engines: [eng("a"), eng("b")] })), "a");
  // an engine with nothing awaiting a first token holds nothing queued, whatever was counted there
  const fresh = createPolicy("llm-d-sticky", {
    cache: tokensOracle(60_000),
    llmdSticky: { saturationTokens: 100_000 },
  });
  decide(fresh, { model: "m", seq: 0, sessionKey: "s" }, { engines: [eng("a"), eng("b")] });
  decide(fresh, { model: "m", seq: 1, sessionKey: "s" }, { engines: [eng("a"), eng("b")] });
  const idle = [eng("a", { awaitingFirstToken: 0, inFlight: 2 }), eng("b", { awaitingFirstToken: 0 })];
  assert.equal(pickedId(decide(fresh, { model: "m", seq: 2, sessionKey: "s" }, { engines: idle })), "a");
});

test("llm-d-sticky's earlier reading counts the whole prompts of requests in flight, decoding ones too", () => {
  const policy = createPolicy("llm-d-sticky", {
    cache: tokensOracle(60_000),
    llmdSticky: { saturationTokens: 100_000, saturationLoad: "in-flight-prompts" },
  });
  decide(policy, { model: "m", seq: 0, sessionKey: "s1" }, { engines: [eng("a"), eng("b")] });
  decide(
    policy,
    { model: "m", seq: 1, sessionKey: "s1" },
    { engines: [eng("a", { inFlight: 1 }), eng("b")] },
  );
  // both still in flight (decoding, nothing awaiting a first token): 120k against 100k, released
  const busy = [eng("a", { inFlight: 2, awaitingFirstToken: 0 }), eng("b")];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 2, sessionKey: "s1" }, { engines: busy })), "b");
});
