// The predictive policy: predicted TTFT per candidate from the engine model's timing, the prefill queue
// the router put on each engine, and the cached prefix; SLO admission; timing learned from counters.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createPolicy,
  decide,
  LearnedTiming,
  noteFirstToken,
  noteSent,
  parseSloHeader,
  predictiveOptions,
  PrefillLedger,
  RunningQuantile,
  rooflineTiming,
  type CacheOracle,
  type EngineView,
  type RequestView,
} from "../../src/routing/index.js";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { eng } from "../helpers/routing.js";

const llama = resolveModel("meta-llama/Llama-3.1-8B-Instruct");
const h100 = rooflineTiming(defaultEngineConfig(llama, resolveGpu("h100")));
const l4 = rooflineTiming(defaultEngineConfig(llama, resolveGpu("l4")));

/** an oracle that says engine `holder` caches `cached` of a `prompt`-token prompt */
function oracle(prompt: number, cached: Record<string, number>): CacheOracle {
  return {
    predict: (_req, engines) => ({
      promptTokens: prompt,
      cachedTokens: Float64Array.from(engines.map((e) => cached[e.id] ?? 0)),
      source: engines.map(() => "kv" as const),
    }),
  };
}

const req = (seq: number, over: Partial<RequestView> = {}): RequestView => ({ model: "m", seq, ...over });
const picked = (d: ReturnType<typeof decide>) => (d.kind === "picked" ? d.engine.id : d.kind);

test("predictive: the engine holding the prefix wins until the prefill queue there outweighs the miss", () => {
  const p = createPolicy("predictive", {
    cache: oracle(8000, { a: 7000 }),
    // the cost's placement of a burst sent at once (late binding would hold it in the router)
    predictive: { timing: () => h100, lateBinding: { queuedPrompts: 0 } },
  });
  const a = eng("a", { awaitingFirstToken: 0 });
  const b = eng("b", { awaitingFirstToken: 0 });
  const fleet = { engines: [a, b], now: 0 };
  // a burst of the prefix: the first few stay on a (1,000 tokens each to compute there)…
  const seen: string[] = [];
  for (let i = 0; i < 12; i++) {
    const d = decide(p, req(i), fleet);
    seen.push(picked(d));
    if (d.kind === "picked") noteSent(d.engine, 0);
  }
  assert.equal(seen[0], "a");
  const onA = seen.filter((x) => x === "a").length;
  // …until a's queue costs more than a cold 8,000-token prefill on b (twice: the miss's extra work)
  assert.ok(onA >= 6 && onA < 12, `a took ${onA} of 12: ${seen.join(",")}`);
  assert.ok(seen.includes("b"), "the burst spilled to b rather than queueing behind itself");
});

test("predictive: while every engine has prompts queued a miss costs more, so a burst stays longer on the engine holding its prefix", () => {
  const burst = (queueScaledMiss: boolean) => {
    const p = createPolicy("predictive", {
      cache: oracle(8000, { a: 7000 }),
      predictive: { timing: () => h100, queueScaledMiss, lateBinding: { queuedPrompts: 0 } },
    });
    const a = eng("a", { awaitingFirstToken: 0 });
    // b: other clients' prompts queued there (its last scrape), more than a has at first
    const b = eng("b", { awaitingFirstToken: 0, scrapedAt: 0, running: 4, waiting: 3, inFlightAtScrape: 0 });
    const fleet = { engines: [a, b], now: 0 };
    let onA = 0;
    for (let i = 0; i < 60; i++) {
      const d = decide(p, req(i), fleet);
      if (d.kind !== "picked") continue;
      if (d.engine.id === "a") onA++;
      noteSent(d.engine, 0);
    }
    return onA;
  };
  const flat = burst(false);
  const scaled = burst(true);
  // a's own queue, then b's spill: the weight alone spills sooner
  assert.ok(flat < 60, `a took ${flat} of 60 with the flat weight`);
  assert.ok(scaled > flat, `a took ${scaled} with the weight scaled by the queues, ${flat} without`);
});

test("predictive: a miss into cache room the rest of the fleet lacks pushes nothing out, so it costs only its time; with room alike everywhere the prefix holder keeps its pull", () => {
  const cap = l4.kvCapacityTokens;
  // a holds 2,000 of the 5,500-token prompt (a shared system prompt); the KV events say how full each is
  const pick = (heldA: number, heldB: number, roomAwareMiss = true) => {
    const p = createPolicy("predictive", {
      cache: {
        predict: (_req, engines) => ({
          promptTokens: 5500,
          cachedTokens: Float64Array.from(engines.map((e) => (e.id === "a" ? 2000 : 0))),
          source: engines.map(() => "kv" as const),
          heldTokens: Float64Array.from(engines.map((e) => (e.id === "a" ? heldA : heldB))),
        }),
      },
      predictive: { timing: () => l4, roomAwareMiss },
    });
    const fleet = {
      engines: [eng("a", { awaitingFirstToken: 0 }), eng("b", { awaitingFirstToken: 0 })],
      now: 0,
    };
    return picked(decide(p, req(0), fleet));
  };
  // a full, b empty: on a the 3,500 new tokens evict cached work; on b the 5,500 evict nothing
  assert.equal(pick(cap, 0), "b");
  // the same engines priced as if every miss pushed out its own size: the 2,000-token hit wins
  assert.equal(pick(cap, 0, false), "a");
  // both full, or both empty: room neither lacks is room the fleet fills anyway; the hit wins
  assert.equal(pick(cap, cap), "a");
  assert.equal(pick(0, 0), "a");
});

test("predictive: a session leaves the engine holding its context only at a full miss's price, room or not; a prompt with no home takes the room", () => {
  const cap = l4.kvCapacityTokens;
  // what the oracle says: per engine, what it holds of the prompt and what its cache holds in all
  let view = {
    prompt: 6000,
    cached: { a: 0, b: 0 } as Record<string, number>,
    held: { a: 0, b: 0 } as Record<string, number>,
  };
  const p = createPolicy("predictive", {
    cache: {
      predict: (_req, engines) => ({
        promptTokens: view.prompt,
        cachedTokens: Float64Array.from(engines.map((e) => view.cached[e.id] ?? 0)),
        source: engines.map(() => "kv" as const),
        heldTokens: Float64Array.from(engines.map((e) => view.held[e.id] ?? 0)),
      }),
    },
    predictive: { timing: () => l4 },
  });
  const a = eng("a", { awaitingFirstToken: 0 });
  const b = eng("b", { awaitingFirstToken: 0 });
  // session s's first turn and another 8,000-token prompt run on b: s's context is there, queued behind
  const first = decide(p, req(0, { sessionKey: "s" }), { engines: [b], now: 0 });
  assert.equal(picked(first), "b");
  noteSent(b, 0);
  noteFirstToken(b, 0);
  view = { prompt: 8000, cached: {}, held: {} };
  assert.equal(picked(decide(p, req(1), { engines: [b], now: 0 })), "b");
  noteSent(b, 0);
  // s's next turn: b holds 5,500 of its 6,000 tokens and is full; a is empty
  view = { prompt: 6000, cached: { b: 5500 }, held: { a: 0, b: cap } };
  const fleet = { engines: [a, b], now: 0 };
  assert.equal(picked(decide(p, req(2, { sessionKey: "s" }), fleet)), "b", "s waits at home");
  noteSent(b, 0);
  // the same prompt with no session behind it: a's room takes its 6,000 tokens, evicting nothing
  assert.equal(picked(decide(p, req(3), fleet)), "a");
});

test("predictive: with equal queues the faster GPU wins; first tokens free the queue", () => {
  const p = createPolicy("predictive", {
    cache: oracle(4000, {}),
    predictive: { timing: (e) => (e.id === "fast" ? h100 : l4) },
  });
  const fast = eng("fast", { awaitingFirstToken: 0 });
  const slow = eng("slow", { awaitingFirstToken: 0 });
  assert.equal(picked(decide(p, req(0), { engines: [slow, fast], now: 0 })), "fast");
  noteSent(fast, 0);
  noteFirstToken(fast, 0); // answered: nothing queued on it any more
  assert.equal(picked(decide(p, req(1), { engines: [slow, fast], now: 0 })), "fast");
});

test("predictive: no engine can meet the SLO → over-slo with the best prediction; one that can is picked", () => {
  const p = createPolicy("predictive", { cache: oracle(100_000, {}), predictive: { timing: () => h100 } });
  const a = eng("a", { awaitingFirstToken: 0 });
  const d = decide(p, req(0, { sloTtftMs: 50 }), { engines: [a], now: 0 });
  assert.equal(d.kind, "over-slo");
  if (d.kind !== "over-slo") return;
  assert.ok(d.predictedTtftMs > 1000, `a cold 100k-token prefill: ${d.predictedTtftMs} ms`);
  assert.equal(d.sloTtftMs, 50);
  assert.ok(Math.abs(d.retryAfterMs - (d.predictedTtftMs - 50)) < 1e-6);
  assert.equal(a.awaitingFirstToken, 0, "a refusal changes nothing");
  // with a per-model default, and a cached engine able to meet it
  const q = createPolicy("predictive", {
    cache: oracle(100_000, { b: 99_900 }),
    predictive: { timing: () => h100, slo: { models: { m: 200 } } },
  });
  const b = eng("b", { awaitingFirstToken: 0 });
  assert.equal(picked(decide(q, req(0), { engines: [a, b], now: 0 })), "b");
  assert.equal(
    picked(
      decide(q, req(0, { model: "other" }), {
        engines: [a, b].map((e) => ({ ...e, models: new Set(["other"]) })),
        now: 0,
      }),
    ),
    "b",
  );
});

test("predictive without a timing or an oracle still balances the prefill queue", () => {
  const p = createPolicy("predictive");
  const a = eng("a", { awaitingFirstToken: 0 });
  const b = eng("b", { awaitingFirstToken: 0 });
  noteSent(a, 0);
  assert.equal(picked(decide(p, req(1), { engines: [a, b], now: 0 })), "b");
});

test("the prefill ledger keeps the newest entries the caller still counts, and drains with time", () => {
  const l = new PrefillLedger();
  const e: EngineView = eng("a", { awaitingFirstToken: 0 });
  assert.equal(l.pending(eng("x"), 0), undefined, "no awaiting count: the ledger cannot tell");
  l.add(e, 1000, 0);
  e.awaitingFirstToken = 1;
  l.add(e, 500, 0);
  e.awaitingFirstToken = 2;
  assert.equal(l.pending(e, 0), 1500);
  e.awaitingFirstToken = 1; // the oldest answered
  assert.equal(l.pending(e, 0), 500);
  assert.equal(l.pending(e, 100, 2), 300, "100 ms at 2 tokens/ms");
  assert.equal(l.pending(e, 1000, 2), 0);
  assert.equal(l.size("a"), 1, "drained to 0 but still counted until its first token");
});

test("in a router group the ledger trims by its own count, and a withdrawn pick leaves only itself", () => {
  const l = new PrefillLedger();
  const e: EngineView = eng("a", { awaitingFirstToken: 0 });
  l.add(e, 9000, 0);
  l.add(e, 150, 0);
  // two of the group's four awaiting requests are another router's: both of this one's still count
  e.awaitingFirstToken = 4;
  e.peerAwaitingFirstToken = 2;
  assert.equal(l.pending(e, 0), 9150);
  // this router's oldest answered (the group's count fell by one, the peers' did not)
  e.awaitingFirstToken = 3;
  assert.equal(l.pending(e, 0), 150);
  // two more picks, then the first of them refused (the group's count falls back by one): its entry
  // goes, not the oldest
  l.add(e, 700, 0);
  l.add(e, 40, 0);
  e.awaitingFirstToken = 4;
  l.withdraw(e, 700);
  assert.equal(l.size("a"), 2);
  assert.equal(l.pending(e, 0), 190);
});

test("the prefill ledger says how many leading blocks a prompt shares with one still queued, and forgets it once answered", () => {
  const l = new PrefillLedger();
  const e: EngineView = eng("a", { awaitingFirstToken: 0 });
  l.add(e, 3600, 0, [1, 2, 3, 4]);
  l.add(e, 600, 0, [9, 8]);
  e.awaitingFirstToken = 2;
  l.pending(e, 0);
  assert.equal(l.sharedBlocks(e, [1, 2, 3, 7, 7]), 3);
  assert.equal(l.sharedBlocks(e, [9, 8, 7]), 2);
  assert.equal(l.sharedBlocks(e, [5]), 0);
  assert.equal(l.sharedBlocks(eng("b"), [1, 2]), 0, "an engine never picked shares nothing");
  // the oldest answered: its prompt is the engine's to report now (KV events), not the ledger's
  e.awaitingFirstToken = 1;
  l.pending(e, 0);
  assert.equal(l.sharedBlocks(e, [1, 2, 3]), 0);
  // a withdrawn pick takes its blocks with it
  l.withdraw(e, 600);
  assert.equal(l.sharedBlocks(e, [9, 8]), 0);
});

test("predictive: a prompt whose prefix is still being computed for a request queued on an engine follows it there, although no engine holds it yet", () => {
  // nothing is cached anywhere (the engines report blocks only once computed); every prompt carries the
  // same 3,000-token prefix and its own question
  let next = 100;
  const p = createPolicy("predictive", {
    cache: {
      predict: (_req, engines) => ({
        promptTokens: 3600,
        cachedTokens: new Float64Array(engines.length),
        source: engines.map(() => "kv" as const),
        blocks: { ids: [1, 2, 3, 4, 5, 6, next++], tokensPerBlock: 500 },
      }),
    },
    predictive: { timing: () => l4 },
  });
  const a = eng("a", { awaitingFirstToken: 0 });
  const b = eng("b", { awaitingFirstToken: 0 });
  const c = eng("c", { awaitingFirstToken: 0 });
  const fleet = { engines: [a, b, c], now: 0 };
  const first = decide(p, req(1), fleet);
  assert.equal(first.kind, "picked");
  if (first.kind !== "picked") return;
  noteSent(first.engine, 0);
  // the second prompt of the group goes behind the first rather than computing the prefix again on an
  // idle engine: 600 tokens there after the first's 3,600 beat 3,600 of its own elsewhere, miss included
  const second = decide(p, req(2), fleet);
  assert.equal(picked(second), first.engine.id);
});

test("predictive: another router's queued prefill on an engine counts as this router's own would", () => {
  const p = createPolicy("predictive", { cache: oracle(9000, {}), predictive: { timing: () => h100 } });
  const a = eng("a", { awaitingFirstToken: 0 });
  const b = eng("b", { awaitingFirstToken: 0 });
  // this router sent a cold 9,000-token prompt to b…
  assert.equal(picked(decide(p, req(0), { engines: [b], now: 0 })), "b");
  noteSent(b, 0);
  // …and another router of its group one of 18,000 tokens to a
  Object.assign(a, {
    inFlight: 1,
    awaitingFirstToken: 1,
    peerAwaitingFirstToken: 1,
    peerPrefillTokens: 18_000,
  });
  assert.equal(picked(decide(p, req(1), { engines: [a, b], now: 0 })), "b", "9,000 tokens ahead, not 18,000");
  // the same counts without the peer's prefill: a looked idle
  const blind = { ...a, peerPrefillTokens: 0 };
  assert.equal(picked(decide(p, req(2), { engines: [blind, b], now: 0 })), "a");
});

test("learned timing: the engine's prefill speed from its counters", () => {
  const counters = { prefillSeconds: 0, promptTokens: 0, cachedTokens: 0 };
  const lt = new LearnedTiming(() => counters);
  const e = eng("a");
  assert.ok(lt.timing(e), "a default speed until it learns");
  counters.promptTokens = 30_000;
  counters.cachedTokens = 10_000;
  counters.prefillSeconds = 1; // 20,000 computed tokens in 1 s
  const t = lt.timing(e)!;
  assert.equal(Math.round(t.prefillSeconds(40_000, 0, 0, 0) * 1000), 2000);
  counters.promptTokens = 0; // a restart: counters go back, the estimate stays
  assert.equal(lt.tokensPerSecond("a"), 20_000);
  lt.timing(e);
  assert.equal(lt.tokensPerSecond("a"), 20_000);
});

test("the engine model's timing: a bigger batch of decodes slows a prefill; an H100 beats an L4", () => {
  assert.ok(h100.prefillSeconds(8000, 0, 0, 0) < l4.prefillSeconds(8000, 0, 0, 0) / 3);
  assert.ok(h100.prefillSeconds(8000, 0, 200, 200 * 4000) > h100.prefillSeconds(8000, 0, 0, 0));
  assert.equal(h100.prefillSeconds(0, 0, 0, 0), 0);
});

test("the engine model's timing knows an engine's KV even when the model's full context would not fit it (the engine serves a shorter one)", () => {
  // Llama-3.1-8B's 131,072-token context needs 16 GiB of KV; an L4 has 4.45 GiB left, so vLLM would
  // refuse that length: the engine runs with less, and its cache is what memory leaves either way
  const served = rooflineTiming(defaultEngineConfig(llama, resolveGpu("l4"), { maxModelLen: 16_384 }));
  assert.ok(served.kvCapacityTokens > 30_000, String(served.kvCapacityTokens));
  assert.equal(l4.kvCapacityTokens, served.kvCapacityTokens);
});

test("x-slo-ttft-ms: milliseconds above 0 and at most 10 minutes, else a clear error", () => {
  assert.equal(parseSloHeader(undefined), undefined);
  assert.equal(parseSloHeader("250"), 250);
  assert.equal(parseSloHeader(["1500.5"]), 1500.5);
  for (const bad of ["", "abc", "0", "-5", "600001", "Infinity"]) {
    const r = parseSloHeader(bad);
    assert.ok(r instanceof Error && /x-slo-ttft-ms must be a number of milliseconds/.test(r.message), bad);
  }
});

test("a running quantile settles where that fraction of values falls below it", () => {
  const q = new RunningQuantile(0.9, 0.02);
  // values 1..10 uniformly: the 90th percentile is about 9
  for (let i = 0; i < 20_000; i++) q.add(1 + (i % 10));
  assert.ok(q.value > 8.5 && q.value < 10.5, `p90 estimate ${q.value}`);
  q.add(NaN);
  q.add(-1);
  assert.equal(q.count, 20_000, "non-positive or non-finite values are ignored");
});

test("configuration: engines are timed by their GPU profile for a known model, learned otherwise", () => {
  const o = predictiveOptions(
    {
      gpu: "h100",
      tensorParallelSize: 1,
      timeScale: 2,
      engines: { "http://b": { gpu: "l4" } },
      missWeight: 1,
      queuedPrompts: 2,
      maxHoldMs: 10_000,
      minCachedShare: 0.2,
    },
    { models: { m: 100 }, onMiss: "reject" },
  );
  const a = eng("http://a");
  const b = eng("http://b");
  const model = "meta-llama/Llama-3.1-8B-Instruct";
  const ta = o.timing!(a, model)!;
  const tb = o.timing!(b, model)!;
  const h = h100.prefillSeconds(8000, 0, 0, 0);
  assert.ok(Math.abs(ta.prefillSeconds(8000, 0, 0, 0) - 2 * h) < 1e-9, "time scale 2: twice the H100's");
  assert.ok(tb.prefillSeconds(8000, 0, 0, 0) > ta.prefillSeconds(8000, 0, 0, 0), "b is an L4");
  assert.equal(o.timing!(a, "no/such-model"), undefined, "no profile, no counters yet: the policy's default");
  assert.deepEqual(o.slo?.models, { m: 100 });
});

/**
 * One engine's predicted TTFT and cost for a 5,500-token prompt of which 3,000 tokens are where `where`
 * says: on its GPU, in a tier it loads from in `loadS` seconds, or nowhere (computed). `held`: what its
 * cache holds in all (its KV events); `decoding`: the sequences it is decoding; `queued`: prompts this
 * router sent it first (a 4,000-token miss each), awaiting their first token.
 */
function tierPrice(
  where: "gpu" | "tier" | "nowhere",
  o: { held: number; decoding?: number; queued?: number; loadS?: number },
): { ttftMs: number; cost: number } {
  let first = true;
  const p = createPolicy("predictive", {
    cache: {
      predict: (_req, engines) => {
        const n = engines.length;
        if (first) return { promptTokens: 4000, cachedTokens: new Float64Array(n), source: ["kv"] };
        return {
          promptTokens: 5500,
          cachedTokens: new Float64Array(n).fill(where === "gpu" ? 3000 : 0),
          source: ["kv"],
          heldTokens: new Float64Array(n).fill(o.held),
          ...(where === "tier"
            ? {
                tierTokens: new Float64Array(n).fill(3000),
                tierLoadSeconds: new Float64Array(n).fill(o.loadS ?? 0.03),
              }
            : {}),
        };
      },
    },
    predictive: { timing: () => l4, lateBinding: { queuedPrompts: 0 } },
  });
  const e = eng("e", { awaitingFirstToken: 0, inFlight: o.decoding ?? 0 });
  for (let i = 0; i < (o.queued ?? 0); i++) {
    assert.equal(picked(decide(p, req(i), { engines: [e], now: 0 })), "e");
    noteSent(e, 0);
  }
  first = false;
  const r = req(100);
  assert.equal(picked(decide(p, r, { engines: [e], now: 0 })), "e");
  const x = p.explain!(r)!;
  return { ttftMs: x.ttftMs![0]!, cost: x.cost[0]! };
}

test("predictive: a prefix loaded from a tier takes GPU blocks as a computed one does: in a full cache it costs the cached work it pushes out, beside its load time", () => {
  const cap = l4.kvCapacityTokens;
  const gpu = tierPrice("gpu", { held: cap });
  const tier = tierPrice("tier", { held: cap });
  const miss = tierPrice("nowhere", { held: cap });
  // first token: the load (30 ms) instead of a 3,000-token prefill
  assert.ok(tier.ttftMs > gpu.ttftMs && tier.ttftMs < miss.ttftMs, JSON.stringify({ gpu, tier, miss }));
  assert.ok(Math.abs(tier.ttftMs - gpu.ttftMs - 30) < 50, JSON.stringify({ gpu, tier }));
  // the 3,000 loaded tokens push out as much cached work as 3,000 computed ones would
  const pushedExtra = (l4.prefillSeconds(5500, 0, 0, 0) - l4.prefillSeconds(2500, 3000, 0, 0)) * 0.5;
  assert.ok(tier.cost - gpu.cost > pushedExtra, JSON.stringify({ gpu, tier, pushedExtra }));
  // and still less than computing them: the load is shorter than their prefill
  assert.ok(tier.cost < miss.cost, JSON.stringify({ tier, miss }));
});

test("predictive: a tier load stalls the engine's step, so every sequence decoding there pays it; queued behind others it still adds its load", () => {
  const cap = l4.kvCapacityTokens;
  const extra = (decoding: number) =>
    tierPrice("tier", { held: cap, decoding, loadS: 0.2 }).cost -
    tierPrice("gpu", { held: cap, decoding, loadS: 0.2 }).cost;
  // 16 more sequences decoding: 16 more waits of 0.2 s (the decode term is alike on both sides)
  assert.ok(Math.abs(extra(16) - extra(0) - 16 * 0.2) < 0.2, `${extra(0)} → ${extra(16)}`);
  // two prompts queued ahead: the prompt starts after them and then waits for its load
  const queued = {
    gpu: tierPrice("gpu", { held: 0, queued: 2, loadS: 0.2 }),
    tier: tierPrice("tier", { held: 0, queued: 2, loadS: 0.2 }),
  };
  assert.ok(Math.abs(queued.tier.ttftMs - queued.gpu.ttftMs - 200) < 50, JSON.stringify(queued));
});
