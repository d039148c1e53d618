// llm-d's sticky-until-saturated, kept as a baseline (src/routing/plugins/llm-d-sticky/), decides as its
// post describes: by its affinity filter (engines holding 0.8 of the prompt) until the warm engines'
// uncached tokens in flight lead a cold one's by its threshold, then by uncached tokens in flight.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPolicy, decide, type CacheOracle, type Decision } from "../../../src/routing/index.js";
import { eng } from "../../helpers/routing.js";

const pickedId = (d: Decision) => (d.kind === "picked" ? d.engine.id : d.kind);

// llm-d-sticky: an oracle with a fixed prompt length and what each engine holds of it, so that warmth and
// uncached tokens in flight are known numbers
const heldOracle = (promptTokens: number, held: Record<string, number> = {}): CacheOracle => ({
  predict: (_req, engines) => ({
    promptTokens,
    cachedTokens: Float64Array.from(engines, (e) => held[e.id] ?? 0),
    source: engines.map(() => "kv" as const),
  }),
});

test("llm-d-sticky keeps a prompt on the engine holding 0.8 of it while its uncached tokens in flight lead the coldest engine's by no more than the threshold", () => {
  // a holds 50k of the 60k prompt (0.83): warm; b holds nothing
  const policy = createPolicy("llm-d-sticky", {
    cache: heldOracle(60_000, { a: 50_000 }),
    llmdSticky: { saturationTokens: 200_000 },
  });
  let seq = 0;
  const on = (engines: ReturnType<typeof eng>[]) =>
    pickedId(decide(policy, { model: "m", seq: seq++ }, { engines }));
  // each pick leaves its 10k uncached tokens in flight on a (no first token yet): 20 of them are 200k
  for (let i = 0; i < 20; i++) assert.equal(on([eng("a", { inFlight: i }), eng("b")]), "a");
  // 200k ahead of b is not more than the threshold: still a; 210k is, and b takes the next
  assert.equal(on([eng("a", { inFlight: 20 }), eng("b")]), "a");
  assert.equal(on([eng("a", { inFlight: 21 }), eng("b")]), "b");
});

test("llm-d-sticky: an engine holding less than 0.8 of the prompt is cold, and with none warm the fewest uncached tokens in flight, this prompt's included, win", () => {
  // a holds 42k of 60k (0.7): cold like b, but the prompt's uncached part there is 18k against 60k
  const policy = createPolicy("llm-d-sticky", { cache: heldOracle(60_000, { a: 42_000 }) });
  let seq = 0;
  const on = (engines: ReturnType<typeof eng>[]) =>
    pickedId(decide(policy, { model: "m", seq: seq++ }, { engines }));
  // 0, 18k and 36k in flight on a, each + 18k, against b's 0 + 60k
  for (let i = 0; i < 3; i++) assert.equal(on([eng("a", { inFlight: i }), eng("b")]), "a");
  // 54k + 18k against 60k
  assert.equal(on([eng("a", { inFlight: 3 }), eng("b")]), "b");
});

test("llm-d-sticky counts tokens, not requests: many small prompts in flight weigh less than one long one", () => {
  const policy = createPolicy("llm-d-sticky", { cache: heldOracle(50_000) });
  decide(policy, { model: "m", seq: 0 }, { engines: [eng("a"), eng("b")] });
  // a has one 50k prompt awaiting its first token; b has five requests whose prefill is done
  const engines = [eng("a", { inFlight: 1 }), eng("b", { inFlight: 5, awaitingFirstToken: 0 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 1 }, { engines })), "b");
});

test("llm-d-sticky lets a request's tokens go at its first token, and counts none on an engine where nothing awaits one", () => {
  // cold 60k prompts: each counts 60k on its engine until its first token; exact ties rotate by seq, so
  // the decisive picks below use an odd seq, where a tie would have gone to b
  const policy = createPolicy("llm-d-sticky", { cache: heldOracle(60_000) });
  const r0 = { model: "m", seq: 0 };
  const r1 = { model: "m", seq: 1 };
  assert.equal(pickedId(decide(policy, r0, { engines: [eng("a"), eng("b")] })), "a");
  assert.equal(pickedId(decide(policy, r1, { engines: [eng("a", { inFlight: 1 }), eng("b")] })), "b");
  // r0's first token came back: a holds nothing queued (0 + 60k against b's 60k + 60k)
  policy.onFirstToken!(r0, eng("a"), 500);
  const both = [eng("a", { inFlight: 1 }), eng("b", { inFlight: 1 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 3 }, { engines: both })), "a");
  // an engine with nothing awaiting a first token holds nothing queued, whatever is still counted there
  const fresh = createPolicy("llm-d-sticky", { cache: heldOracle(60_000) });
  decide(fresh, { model: "m", seq: 0 }, { engines: [eng("a"), eng("b")] });
  decide(fresh, { model: "m", seq: 1 }, { engines: [eng("a", { inFlight: 1 }), eng("b")] });
  // 60k counted on each; nothing awaits a first token on a, so a is 0 + 60k against b's 120k
  const idle = [eng("a", { awaitingFirstToken: 0, inFlight: 1 }), eng("b", { inFlight: 1 })];
  assert.equal(pickedId(decide(fresh, { model: "m", seq: 3 }, { engines: idle })), "a");
});

test("llm-d-sticky: a request counted before its engine went idle does not lower what is counted there after", () => {
  const policy = createPolicy("llm-d-sticky", { cache: heldOracle(60_000) });
  const r0 = { model: "m", seq: 0 };
  assert.equal(pickedId(decide(policy, r0, { engines: [eng("a"), eng("b")] })), "a");
  // a says nothing awaits a first token there (r0's callback is late): its count starts again with r2's 60k
  const r2 = { model: "m", seq: 2 };
  const idle = [eng("a", { awaitingFirstToken: 0 }), eng("b")];
  assert.equal(pickedId(decide(policy, r2, { engines: idle })), "a");
  // r0's first token comes back now: r2's 60k stays counted on a, so the next cold prompt goes to b
  policy.onFirstToken!(r0, eng("a"), 500);
  const both = [eng("a", { inFlight: 1 }), eng("b")];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 4 }, { engines: both })), "b");
});
