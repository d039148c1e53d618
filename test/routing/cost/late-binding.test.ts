// Late binding in the predictive policy: a request picked for an engine whose own queued prompts are
// enough waits in the router ("saturated"), and of the requests held for one engine the one with the
// least prefill to do is bound first; one held `maxHoldMs` is bound at once, room or not.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createPolicy,
  decide,
  LateBinding,
  noteFirstToken,
  noteSent,
  queuedPromptsOn,
  rooflineTiming,
  type CacheOracle,
  type EngineView,
  type LateBindingOptions,
  type RequestView,
} from "../../../src/routing/index.js";
import { defaultEngineConfig } from "../../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../../src/models/index.js";
import { eng } from "../../helpers/routing.js";

const l4 = rooflineTiming(
  defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("l4")),
);

/** 3,600-token prompts; one whose prompt is "hit" finds 3,000 of them cached on every engine */
const oracle: CacheOracle = {
  predict: (req, engines) => ({
    promptTokens: 3600,
    cachedTokens: Float64Array.from(engines.map(() => (req.prompt === "hit" ? 3000 : 0))),
    source: engines.map(() => "kv" as const),
  }),
};

const policy = (lateBinding?: Partial<LateBindingOptions>) =>
  createPolicy("predictive", {
    cache: oracle,
    predictive: {
      timing: () => l4,
      // one prompt being prefilled, one ready to follow (the default); held whatever the picks find
      // cached, but where a test sets the gate (minCachedShare)
      lateBinding: { queuedPrompts: 2, minCachedShare: 0, ...lateBinding },
    },
  });
const hit = (seq: number): RequestView => ({ model: "m", seq, prompt: "hit" });
const miss = (seq: number): RequestView => ({ model: "m", seq, prompt: "miss" });
const kind = (d: ReturnType<typeof decide>) => (d.kind === "picked" ? d.engine.id : d.kind);
/** one engine with `queued` of this router's prompts awaiting their first token */
const busy = (queued: number, over: Partial<EngineView> = {}) =>
  eng("a", { awaitingFirstToken: queued, inFlight: queued, ...over });

test("predictive binds a request at once while its engine has fewer than two prompts awaiting a first token", () => {
  const p = policy();
  const a = busy(1);
  assert.equal(kind(decide(p, miss(1), { engines: [a], now: 0 })), "a");
});

test("predictive holds a request in the router while the engine it picked has two prompts awaiting their first token, and binds it once one is answered", () => {
  const p = policy();
  const a = busy(2);
  const r = miss(1);
  assert.equal(kind(decide(p, r, { engines: [a], now: 0 })), "saturated");
  noteFirstToken(a, 10);
  assert.equal(kind(decide(p, r, { engines: [a], now: 10 })), "a");
});

test("of the requests held for an engine, the one with the least prefill to do is bound first", () => {
  const p = policy();
  const a = busy(2);
  const big = miss(1);
  const small = hit(2);
  assert.equal(kind(decide(p, big, { engines: [a], now: 0 })), "saturated");
  assert.equal(kind(decide(p, small, { engines: [a], now: 5 })), "saturated");
  noteFirstToken(a, 20);
  // room for one: the older miss yields to the cached prompt, whichever is decided first
  assert.equal(kind(decide(p, big, { engines: [a], now: 20 })), "saturated");
  assert.equal(kind(decide(p, small, { engines: [a], now: 20 })), "a");
  noteSent(a, 20);
  noteFirstToken(a, 40);
  assert.equal(kind(decide(p, big, { engines: [a], now: 40 })), "a");
});

test("a request held for maxHoldMs is bound at once, room or not, so none starves or waits out the queue's timeout", () => {
  const p = policy({ maxHoldMs: 1000 });
  const a = busy(2);
  const big = miss(1);
  const small = hit(2);
  assert.equal(kind(decide(p, big, { engines: [a], now: 0 })), "saturated");
  assert.equal(kind(decide(p, small, { engines: [a], now: 500 })), "saturated");
  // still two prompts queued on a: the cached one waits on, the miss has been held its second
  assert.equal(kind(decide(p, small, { engines: [a], now: 1000 })), "saturated");
  assert.equal(kind(decide(p, big, { engines: [a], now: 1000 })), "a");
  assert.equal(kind(decide(p, small, { engines: [a], now: 1500 })), "a");
});

test("a held request that left the queue, or was not decided again for seconds, no longer ranks ahead", () => {
  const p = policy();
  const a = busy(2);
  const small = hit(1);
  const big = miss(2);
  assert.equal(kind(decide(p, small, { engines: [a], now: 0 })), "saturated");
  assert.equal(kind(decide(p, big, { engines: [a], now: 0 })), "saturated");
  p.onLeftQueue?.(small);
  noteFirstToken(a, 10);
  assert.equal(kind(decide(p, big, { engines: [a], now: 10 })), "a");

  const q = policy();
  const b = busy(2);
  assert.equal(kind(decide(q, hit(3), { engines: [b], now: 0 })), "saturated");
  noteFirstToken(b, 10);
  // the cached prompt held at 0 was never decided again (its caller lost it): stale after 5 s
  const later = miss(4);
  assert.equal(kind(decide(q, later, { engines: [b], now: 1000 })), "saturated");
  assert.equal(kind(decide(q, later, { engines: [b], now: 6000 })), "a");
});

test("non-streamed requests on an engine do not count as its queued prompts: their first byte is their last", () => {
  const a = busy(3, { unstreamed: 2 });
  assert.equal(queuedPromptsOn(a), 1);
  assert.equal(kind(decide(policy(), miss(1), { engines: [a], now: 0 })), "a");
  // a router group's other processes count their own prompts
  assert.equal(queuedPromptsOn(busy(4, { peerAwaitingFirstToken: 3 })), 1);
  assert.equal(queuedPromptsOn(eng("x")), undefined, "a caller that counts no first tokens: nothing held");
});

test("a request with a TTFT SLO is bound at once: it was admitted by a prediction that binds it now", () => {
  const a = busy(2);
  assert.equal(kind(decide(policy(), miss(1), { engines: [a], now: 0 })), "saturated");
  const withSlo = { ...miss(2), sloTtftMs: 600_000 };
  assert.equal(kind(decide(policy(), withSlo, { engines: [a], now: 0 })), "a");
});

test("late binding is on by default with two queued prompts, and queuedPrompts 0 binds every request at once", () => {
  const a = busy(20);
  assert.equal(kind(decide(policy({ queuedPrompts: 0 }), miss(1), { engines: [a], now: 0 })), "a");
  assert.equal(policy({ queuedPrompts: 0 }).roomAtFirstToken, false);
  const plain = createPolicy("predictive", { cache: oracle, predictive: { timing: () => l4 } });
  assert.equal(plain.roomAtFirstToken, true);
  // once its picks find prefixes cached (below)
  const free = eng("b", { awaitingFirstToken: 0, inFlight: 0 });
  for (let i = 0; i < 10; i++) decide(plain, hit(10 + i), { engines: [free], now: 0 });
  assert.equal(kind(decide(plain, miss(2), { engines: [a], now: 0 })), "saturated");
});

test("a held request decided again toward an engine where it would compute more keeps waiting for its own; as cheap elsewhere, it goes there", () => {
  const late = new LateBinding({ queuedPrompts: 2, maxHoldMs: 5_000, minCachedShare: 0 });
  const a = busy(2);
  const free = eng("b", { awaitingFirstToken: 0, inFlight: 0 });
  const r = hit(1);
  assert.equal(late.holds(r, a, 600, 0, 2048), true);
  // b has room, but there the prompt misses: moving would buy a shorter wait with its cached prefix
  assert.equal(late.holds(r, free, 3600, 10, 2048), true);
  assert.equal(late.size, 1);
  assert.equal(late.holds(r, free, 600, 20, 2048), false, "as cheap on b: bound there");
  assert.equal(late.size, 0);
  // held for its longest hold, it is bound wherever it is picked
  const s = hit(2);
  assert.equal(late.holds(s, a, 600, 0, 2048), true);
  assert.equal(late.holds(s, free, 3600, 5_000, 2048), false);
});

test("late binding holds nothing until the router's picks find a fifth of their prompts cached, and nothing again once they find less", () => {
  const p = policy({ minCachedShare: 0.2 });
  const free = eng("b", { awaitingFirstToken: 0, inFlight: 0 });
  const a = busy(2);
  assert.equal(
    kind(decide(p, miss(1), { engines: [a], now: 0 })),
    "a",
    "no pick yet has shown a cached prefix",
  );
  // prompts that find five sixths cached: the moving mean of the share passes a fifth within a few picks
  for (let i = 0; i < 10; i++) decide(p, hit(100 + i), { engines: [free], now: 0 });
  assert.equal(kind(decide(p, miss(2), { engines: [a], now: 0 })), "saturated");
  // independent prompts: forty picks that find nothing cached bring it under a fifth again
  for (let i = 0; i < 40; i++) assert.equal(kind(decide(p, miss(200 + i), { engines: [free], now: 0 })), "b");
  assert.equal(kind(decide(p, miss(3), { engines: [a], now: 0 })), "a", "reordering misses gains nothing");
});

test("a prompt needing under an eighth of a step is never held: many share one step", () => {
  const a = busy(5);
  // 3,000 of 3,600 cached: 600 tokens, over an eighth of an L4's 2,048-token step; 200: under it
  assert.equal(kind(decide(policy(), hit(1), { engines: [a], now: 0 })), "saturated");
  const tiny: CacheOracle = {
    predict: (_r, engines) => ({
      promptTokens: 200,
      cachedTokens: new Float64Array(engines.length),
      source: engines.map(() => "kv" as const),
    }),
  };
  const p = createPolicy("predictive", {
    cache: tiny,
    predictive: { timing: () => l4, lateBinding: { queuedPrompts: 2, minCachedShare: 0 } },
  });
  assert.equal(kind(decide(p, miss(2), { engines: [a], now: 0 })), "a");
});

test("the requests late binding remembers are bounded, the least recently decided forgotten first", () => {
  const late = new LateBinding({ queuedPrompts: 1, maxHoldMs: 10_000, minCachedShare: 0 });
  const a = busy(1);
  const first = miss(0);
  late.holds(first, a, 3600, 0, 2048);
  for (let i = 1; i <= 16_384; i++) late.holds(miss(i), a, 3600, 0, 2048);
  assert.equal(late.size, 16_384);
  // the first was forgotten: deciding it again holds it as a newcomer, and the map stays at its cap
  assert.equal(late.holds(first, a, 3600, 0, 2048), true);
  assert.equal(late.size, 16_384);
  assert.throws(
    () => new LateBinding({ queuedPrompts: 1.5, maxHoldMs: 0, minCachedShare: 0 }),
    /whole number/,
  );
  assert.throws(() => new LateBinding({ queuedPrompts: 1, maxHoldMs: 0, minCachedShare: 2 }), /\[0, 1\]/);
});
