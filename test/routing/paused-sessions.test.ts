// What predictive weighs for sessions paused between turns (held-contexts.ts, predictive.ts): the KV their
// contexts hold on an engine, which placing other work there may evict, and where a session's decode
// goes. Pure, virtual time: the tests pass the clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createPolicy,
  decide,
  noteSent,
  rooflineTiming,
  type CacheOracle,
  type EngineView,
  type RequestView,
} from "../../src/routing/index.js";
import { HeldContexts } from "../../src/routing/sessions/held-contexts.js";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { eng } from "../helpers/routing.js";

const MIN = 60_000;

test("a placement that fits an engine's free room evicts nothing; beyond it paused contexts count at the chance their sessions come back", () => {
  const h = new HeldContexts({ releaseOnDone: true });
  h.picked("old", "a", 10_000, 0, 0);
  h.done("old", "a", 1_000);
  h.picked("new", "a", 10_000, 0, 2_000);
  h.done("new", "a", 3_000);
  // 32k of KV, 20k of it paused contexts: 12k of room
  assert.equal(h.evictedTokens("a", 12_000, 32_000, 0, undefined, 4_000), 0);
  // 4k beyond the room, at the chance its session comes back (no gaps seen yet: one half)
  assert.equal(h.evictedTokens("a", 16_000, 32_000, 0, undefined, 4_000), 2_000);
  // KV in use by running requests takes room first
  assert.equal(h.evictedTokens("a", 12_000, 32_000, 8_000, undefined, 4_000), 4_000);
});

test("a session's own paused context is reused by its next turn, not counted as evicted", () => {
  const h = new HeldContexts({ releaseOnDone: true });
  h.picked("s", "a", 20_000, 0, 0);
  h.done("s", "a", 1_000);
  // the next turn needs 16k more than the engine holds of it: beyond the room, but only others' contexts count
  assert.equal(h.evictedTokens("a", 16_000, 32_000, 0, "s", 2_000), 0);
  assert.ok(h.evictedTokens("a", 16_000, 32_000, 0, "other", 2_000) > 0);
});

test("a context with a turn in flight is pinned: the engine cannot evict it", () => {
  const h = new HeldContexts({ releaseOnDone: true });
  h.picked("s", "a", 20_000, 0, 0);
  assert.deepEqual(h.tokensOn("a"), { paused: 0, active: 20_000 });
  assert.equal(h.evictedTokens("a", 30_000, 32_000, 0, undefined, 1_000), 0);
  // its first token does not pause it when completions are reported: it is decoding
  h.firstToken("s", "a", 500);
  assert.deepEqual(h.tokensOn("a"), { paused: 0, active: 20_000 });
  h.done("s", "a", 1_000);
  assert.deepEqual(h.tokensOn("a"), { paused: 20_000, active: 0 });
});

test("a caller that reports no completions has a context paused at its first token", () => {
  const h = new HeldContexts();
  h.picked("s", "a", 20_000, 0, 0);
  h.firstToken("s", "a", 500);
  assert.deepEqual(h.tokensOn("a"), { paused: 20_000, active: 0 });
  // a done() from such a caller changes nothing more
  h.done("s", "a", 600);
  assert.deepEqual(h.tokensOn("a"), { paused: 20_000, active: 0 });
});

test("only the footprint of a session counts: what the engine held before it came is shared with others", () => {
  const h = new HeldContexts({ releaseOnDone: true });
  // a sub-agent arriving where its parent's 30k context is: its own part is the 5k beyond
  h.picked("sub", "a", 35_000, 30_000, 0);
  h.done("sub", "a", 100);
  assert.equal(h.tokensOn("a").paused, 5_000);
  // its context grows with each turn there
  h.picked("sub", "a", 39_000, 35_000, 200);
  h.done("sub", "a", 300);
  assert.equal(h.tokensOn("a").paused, 9_000);
});

test("the chance of coming back follows the gaps seen: likely within them, nothing past the longest, then forgotten", () => {
  const h = new HeldContexts({ releaseOnDone: true });
  // 20 sessions, each back after 5–10 s, four turns apiece
  for (let s = 0; s < 20; s++) {
    let t = s * 100;
    for (let turn = 0; turn < 4; turn++) {
      h.picked(`s${s}`, "a", 1000 * (turn + 1), 0, t);
      t += 50;
      h.done(`s${s}`, "a", t);
      t += 5_000 + 250 * (s % 20);
    }
  }
  assert.ok(h.resumeChance(1_000) > 0.6, `1 s idle: ${h.resumeChance(1_000)}`);
  assert.ok(h.resumeChance(8_000) < h.resumeChance(1_000));
  assert.equal(h.resumeChance(60_000), 0);
  // a context idle past twice the longest gap is dropped: its blocks are free room again
  const before = h.size;
  assert.equal(h.evictedTokens("a", 1, 1, 0, undefined, 10 * MIN), 0);
  assert.ok(h.size < before, `${h.size} of ${before} left`);
  assert.equal(h.tokensOn("a").paused, 0);
});

test("sessions tracked are bounded: past the cap the least recently used is forgotten", () => {
  const h = new HeldContexts({ maxSessions: 3, releaseOnDone: true });
  for (let s = 0; s < 5; s++) {
    h.picked(`s${s}`, "a", 1000, 0, s);
    h.done(`s${s}`, "a", s + 0.5);
  }
  assert.equal(h.size, 3);
  assert.equal(h.tokensOn("a").paused, 3000);
});

// Qwen3-32B at TP 2 on H100, 2,000 KV blocks (32,000 tokens) and 9,271 (the agentic b2b engines)
const qwen = { ...resolveModel("Qwen/Qwen3-32B"), maxContext: 131_072 };
const h100 = resolveGpu("h100");
const small = rooflineTiming(
  defaultEngineConfig(qwen, h100, { tensorParallelSize: 2, maxModelLen: 32_000, numGpuBlocksOverride: 2000 }),
);
const b2b = rooflineTiming(
  defaultEngineConfig(qwen, h100, { tensorParallelSize: 2, maxModelLen: 81_920, numGpuBlocksOverride: 9271 }),
);

/** an oracle answering per session: the prompt's length and what each engine holds of it */
function bySession(prompts: Record<string, { tokens: number; held: Record<string, number> }>): CacheOracle {
  return {
    predict: (req, engines) => {
      const p = prompts[req.sessionKey ?? Object.keys(prompts)[0]!]!;
      return {
        promptTokens: p.tokens,
        cachedTokens: Float64Array.from(engines.map((e) => p.held[e.id] ?? 0)),
        source: engines.map(() => "kv" as const),
      };
    },
  };
}

const turn = (seq: number, sessionKey: string, over: Partial<RequestView> = {}): RequestView => ({
  model: "m",
  seq,
  sessionKey,
  ...over,
});
const idle = (id: string): EngineView => eng(id, { awaitingFirstToken: 0 });

test("predictive places a new session where it evicts nothing, not onto a paused session's context for the shared prefix", () => {
  const prompts = {
    // a 28k-token session on a, paused on its tool
    paused: { tokens: 28_000, held: { a: 2_000, b: 0 } },
    // a new session: its 2k shared prefix is on a only
    fresh: { tokens: 22_000, held: { a: 2_000, b: 0 } },
  };
  const place = (pausedSessions: boolean) => {
    const p = createPolicy("predictive", {
      cache: bySession(prompts),
      predictive: { timing: () => small, reportsCompletions: true, pausedSessions, decode: false },
    });
    const a = idle("a");
    const b = idle("b");
    const first = turn(0, "paused");
    const d = decide(p, first, { engines: [a], now: 0 });
    assert.equal(d.kind, "picked");
    p.onDone!(first, a, 5_000);
    const next = decide(p, turn(1, "fresh"), { engines: [a, b], now: 10_000 });
    return next.kind === "picked" ? next.engine.id : next.kind;
  };
  // a's 32k of KV hold the paused session's own 26k: the new session's 20k would push 14k of it out
  assert.equal(place(true), "b");
  // without the paused context priced, the shared prefix wins
  assert.equal(place(false), "a");
});

test("predictive keeps a resumed session on the engine holding its context, whatever else is paused there", () => {
  const prompts = {
    s1: { tokens: 24_000, held: { a: 20_000, b: 0 } },
    s2: { tokens: 8_000, held: { a: 0, b: 0 } },
  };
  const p = createPolicy("predictive", {
    cache: bySession(prompts),
    predictive: { timing: () => small, reportsCompletions: true, decode: false },
  });
  const a = idle("a");
  const b = idle("b");
  for (const [seq, key] of [
    [0, "s2"],
    [1, "s1"],
  ] as const) {
    const r = turn(seq, key);
    decide(p, r, { engines: [a], now: seq * 1000 });
    p.onDone!(r, a, 500);
  }
  const d = decide(p, turn(2, "s1"), { engines: [a, b], now: 5_000 });
  assert.equal(d.kind === "picked" ? d.engine.id : d.kind, "a");
});

test("predictive sends a new session's decode to an idle engine rather than a busy batch holding the shared prefix", () => {
  const prompts = { s: { tokens: 5_700, held: { busy: 2_000, idle: 0 } } };
  const place = (r: RequestView, reportsCompletions: boolean) => {
    const p = createPolicy("predictive", {
      cache: bySession(prompts),
      predictive: { timing: () => b2b, reportsCompletions },
    });
    // 19 sessions decoding on `busy`, their 7k contexts half its KV
    const busy = eng("busy", { awaitingFirstToken: 0, kvUsage: 0.9 });
    for (let i = 0; i < 19; i++) noteSent(busy, 0);
    busy.awaitingFirstToken = 0;
    const d = decide(p, r, { engines: [busy, idle("idle")], now: 1_000 });
    return d.kind === "picked" ? d.engine.id : d.kind;
  };
  const withAnswer = turn(0, "s", { body: { max_tokens: 1000 } });
  assert.equal(place(withAnswer, true), "idle");
  // the time to first token alone favours the prefix (and a caller reporting no completions gets that)
  assert.equal(place(withAnswer, false), "busy");
  // as does a request with no session: its placement decides only its own decode
  assert.equal(place({ model: "m", seq: 0, body: { max_tokens: 1000 } }, true), "busy");
});

test("a pick that did not stand leaves the session's context paused, not pinned", () => {
  const h = new HeldContexts({ releaseOnDone: true });
  h.picked("s", "a", 20_000, 0, 0);
  h.done("s", "a", 100);
  h.picked("s", "a", 21_000, 20_000, 200);
  h.withdrawn("s", "a", 200);
  assert.deepEqual(h.tokensOn("a"), { paused: 21_000, active: 0 });
});

test("a turn abandoned on an engine (failed, moved, its client gone) leaves its context there paused, not pinned", () => {
  const prompts = {
    gone: { tokens: 28_000, held: { a: 2_000, b: 0 } },
    fresh: { tokens: 22_000, held: { a: 2_000, b: 0 } },
  };
  const place = (end: "abandoned" | "none") => {
    const p = createPolicy("predictive", {
      cache: bySession(prompts),
      predictive: { timing: () => small, reportsCompletions: true, decode: false },
    });
    const a = idle("a");
    const b = idle("b");
    const first = turn(0, "gone");
    decide(p, first, { engines: [a], now: 0 });
    if (end === "abandoned") p.onAbandoned!(first, a, 5_000);
    const next = decide(p, turn(1, "fresh"), { engines: [a, b], now: 10_000 });
    return next.kind === "picked" ? next.engine.id : next.kind;
  };
  // paused, its 26k on a are priced as what the new session would evict there
  assert.equal(place("abandoned"), "b");
  // left in flight it would be pinned, nothing evictable: the shared prefix wins
  assert.equal(place("none"), "a");
});

test("what a placement pushes out of an engine's room is no longer held there, oldest first, the placing session's own kept", () => {
  const h = new HeldContexts({ releaseOnDone: true });
  for (const [k, at] of [
    ["old", 0],
    ["mid", 1_000],
    ["own", 2_000],
  ] as const) {
    h.picked(k, "a", 10_000, 0, at);
    h.done(k, "a", at + 500);
  }
  // 32k of KV, 30k paused: 2k of room; 14k placed pushes out 12k: all of `old`, 2k of `mid`, none of `own`
  h.placed("a", 14_000, 32_000, 0, "own");
  assert.deepEqual(h.tokensOn("a"), { paused: 18_000, active: 0 });
  // what is gone no longer fills the room: 14k now fit, and 2k beyond push out `mid` (at one half)
  assert.equal(h.evictedTokens("a", 14_000, 32_000, 0, undefined, 3_000), 0);
  assert.equal(h.evictedTokens("a", 16_000, 32_000, 0, undefined, 3_000), 1_000);
});
