// vllm-router's program scheduling as a baseline (src/routing/plugins/vllm-router-program): a program is admitted
// to an engine only while the engine has logical KV-token capacity for it, keeps that capacity while a
// request of it runs and for its acting TTL after, and otherwise waits in the router's pool ("saturated",
// which both callers keep waiting), until its deadline forces it through.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createPolicy,
  decide,
  type CacheOracle,
  type Decision,
  type EngineView,
} from "../../../src/routing/index.js";
import { defaultEngineConfig } from "../../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../../src/models/index.js";
import { simulateFleet } from "../../../src/fleet/fleet.js";
import { smallAgentic } from "../../helpers/agentic.js";
import { eng } from "../../helpers/routing.js";

const pickedId = (d: Decision) => (d.kind === "picked" ? d.engine.id : d.kind);

/** every prompt is `tokens` long: a program's demand is that plus the 100-token output allowance */
const tokensOracle = (tokens: number): CacheOracle => ({
  predict: (_req, engines) => ({
    promptTokens: tokens,
    cachedTokens: new Float64Array(engines.length),
    source: engines.map(() => "kv" as const),
  }),
});

function program(capacity: (e: EngineView) => number | undefined) {
  return createPolicy("vllm-router-program", {
    cache: tokensOracle(60_000),
    vllmRouterProgram: { tokenCapacity: capacity },
  });
}

const retain = (s: number, more: Record<string, unknown> = {}) => ({
  vllm_xargs: { agentic_context: { program_id: "x", kv_retention_ttl_seconds: s, ...more } },
});

test("vllm-router-program admits a program while its engine has token capacity for it, and holds the next one (saturated) until an engine has room", () => {
  const policy = program(() => 100_000);
  const a = [eng("a")];
  assert.equal(
    pickedId(decide(policy, { model: "m", seq: 0, sessionKey: "p1" }, { engines: a, now: 0 })),
    "a",
  );
  // 60,100 + 60,100 tokens do not fit 100,000: the second program waits in the pool
  const p2 = { model: "m", seq: 1, sessionKey: "p2" };
  assert.equal(decide(policy, p2, { engines: a, now: 10 }).kind, "saturated");
  // an engine with room joins: the program it waited for goes there
  assert.equal(pickedId(decide(policy, p2, { engines: [eng("a"), eng("b")], now: 20 })), "b");
});

test("vllm-router-program sends an active program's next request to its engine past every gate, and frees its capacity when its acting TTL runs out", () => {
  const policy = program(() => 100_000);
  const first = { model: "m", seq: 0, sessionKey: "p1", body: retain(10) };
  assert.equal(pickedId(decide(policy, first, { engines: [eng("a")], now: 0 })), "a");
  // the engine has a waiting request (the gate blocks admission) and no room, but p1 is acting there
  const busy = [eng("a", { inFlight: 1, waiting: 3 })];
  const second = { model: "m", seq: 1, sessionKey: "p1", body: retain(10) };
  assert.equal(pickedId(decide(policy, second, { engines: busy, now: 500 })), "a");
  policy.onDone!(first, busy[0]!, 1000);
  policy.onDone!(second, busy[0]!, 1500); // ended at 2,000 ms: acting until 12,000
  const other = { model: "m", seq: 2, sessionKey: "p2" };
  assert.equal(decide(policy, other, { engines: [eng("a")], now: 11_000 }).kind, "saturated");
  assert.equal(pickedId(decide(policy, other, { engines: [eng("a")], now: 12_500 })), "a");
});

test("vllm-router-program forces a request through to its program's engine once it has waited the force-resume timeout", () => {
  const policy = program(() => 100_000);
  assert.equal(
    pickedId(decide(policy, { model: "m", seq: 0, sessionKey: "p1" }, { engines: [eng("a")], now: 0 })),
    "a",
  );
  const late = { model: "m", seq: 1, sessionKey: "p2" };
  assert.equal(decide(policy, late, { engines: [eng("a")], now: 1000 }).kind, "saturated");
  assert.equal(decide(policy, late, { engines: [eng("a")], now: 300_900 }).kind, "saturated");
  assert.equal(pickedId(decide(policy, late, { engines: [eng("a")], now: 301_000 })), "a");
});

test("vllm-router-program moves a paused program off its engine only to one with its engine's free capacity plus 1.2 times its demand", () => {
  let roomy = ""; // the engine given 300,000 tokens of capacity
  const policy = program((e) => (e.id === roomy ? 300_000 : 200_000));
  const first = { model: "m", seq: 0, sessionKey: "p1" };
  const home = pickedId(decide(policy, first, { engines: [eng("a"), eng("b")], now: 0 }));
  const away = home === "a" ? "b" : "a";
  policy.onDone!(first, eng(home), 1000); // no TTL yet (fewer than 100 intervals seen): paused at once
  // its engine now has a waiting request: the gate refuses the resume there
  const views = () => [eng(home, { waiting: 2 }), eng(away)];
  const resume = { model: "m", seq: 1, sessionKey: "p1" };
  // the other engine's 200,000 free is under 200,000 + 1.2 × 60,100: the program waits
  assert.equal(decide(policy, resume, { engines: views(), now: 5000 }).kind, "saturated");
  roomy = away;
  assert.equal(pickedId(decide(policy, resume, { engines: views(), now: 6000 })), away);
});

test("vllm-router-program routes a request that names no program by fewest in flight, without holding it", () => {
  const policy = program(() => 1000);
  const engines = [eng("a", { inFlight: 3, waiting: 5 }), eng("b", { inFlight: 1, waiting: 5 })];
  assert.equal(pickedId(decide(policy, { model: "m", seq: 0 }, { engines, now: 0 })), "b");
});

test("the fleet simulator keeps the requests vllm-router-program holds waiting, answers every one, and times each from its arrival", () => {
  const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
    maxModelLen: 8192,
    blockHashAlgo: "fast",
    numGpuBlocksOverride: 1200, // 19,200 tokens: three or four programs' demand per engine
  });
  const decidedAt = new Map<number, number>();
  const res = simulateFleet({
    engine,
    engines: 2,
    policy: "vllm-router-program",
    sessionKey: "session",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload: smallAgentic({ sessions: 16, turns: 3, startTokens: 4000, capTokens: 6000, seed: 5 }),
    qps: 20,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: Infinity,
    durationS: Infinity,
    seed: 5,
    recordItl: false,
    onDecision: (d) => decidedAt.set(d.index, d.at * 1000),
  });
  assert.equal(res.records.length, 16 * 3);
  assert.ok(res.records.every((r) => r.ok && r.httpStatus === 200));
  const waited = res.records.filter((r) => decidedAt.get(r.index)! > r.start + 1);
  assert.ok(waited.length > 0, "some requests waited in the router for room");
  // a waited request's TTFT counts its wait, as the client saw it
  for (const r of waited) assert.ok(r.ttft >= decidedAt.get(r.index)! - r.start, `request ${r.index}`);
});

test("a policy with a filter after the capacity stage still says saturated, not unavailable, when every engine is at its in-flight cap", () => {
  const policy = program(() => 100_000);
  const full = [eng("a", { maxInFlight: 1, inFlight: 1 }), eng("b", { maxInFlight: 1, inFlight: 1 })];
  assert.equal(
    decide(policy, { model: "m", seq: 0, sessionKey: "p1" }, { engines: full, now: 0 }).kind,
    "saturated",
  );
  // unhealthy everywhere is still unavailable
  const down = [eng("a", { healthy: false })];
  assert.equal(
    decide(policy, { model: "m", seq: 1, sessionKey: "p1" }, { engines: down, now: 0 }).kind,
    "unavailable",
  );
});

test("vllm-router-program keeps an active program's request waiting while only its engine's in-flight cap keeps it out, rather than moving it", () => {
  const policy = program(() => 100_000);
  const first = { model: "m", seq: 0, sessionKey: "p1" };
  const home = pickedId(decide(policy, first, { engines: [eng("a"), eng("b")], now: 0 }));
  const away = home === "a" ? "b" : "a";
  const full = [eng(home, { maxInFlight: 1, inFlight: 1 }), eng(away)];
  const second = { model: "m", seq: 1, sessionKey: "p1" };
  assert.equal(decide(policy, second, { engines: full, now: 10 }).kind, "saturated");
  // its engine gone unhealthy: it may go elsewhere
  const down = [eng(home, { healthy: false }), eng(away)];
  assert.equal(pickedId(decide(policy, second, { engines: down, now: 20 })), away);
});

test("vllm-router-program holds a client's own kv_retention_ttl_seconds to the 10 s cap", () => {
  const policy = program(() => 100_000);
  const first = { model: "m", seq: 0, sessionKey: "p1", body: retain(1e9) };
  assert.equal(pickedId(decide(policy, first, { engines: [eng("a")], now: 0 })), "a");
  policy.onDone!(first, eng("a"), 1000); // ended at 1 s: held until 11 s, not for ever
  const other = { model: "m", seq: 1, sessionKey: "p2" };
  assert.equal(decide(policy, other, { engines: [eng("a")], now: 10_900 }).kind, "saturated");
  assert.equal(pickedId(decide(policy, other, { engines: [eng("a")], now: 11_100 })), "a");
});

test("vllm-router-program puts a program back where it was when a router group takes its pick back", () => {
  const policy = program(() => 200_000);
  const first = { model: "m", seq: 0, sessionKey: "p1", body: retain(10) };
  const home = pickedId(decide(policy, first, { engines: [eng("a"), eng("b")], now: 0 }));
  const away = home === "a" ? "b" : "a";
  policy.onDone!(first, eng(home), 1000); // acting on its engine until 11 s
  // its engine down: the next turn goes elsewhere, and the group's claim refuses that pick
  const second = { model: "m", seq: 1, sessionKey: "p1" };
  const moved = decide(policy, second, { engines: [eng(home, { healthy: false }), eng(away)], now: 2000 });
  assert.equal(pickedId(moved), away);
  policy.onUnpicked!(second, eng(away));
  // its engine back: the program is still acting there, so its turn goes there
  const third = { model: "m", seq: 2, sessionKey: "p1" };
  assert.equal(pickedId(decide(policy, third, { engines: [eng("a"), eng("b")], now: 3000 })), home);
});
