// The fleet simulator's decision log (FleetOptions.onDecision): every routing decision with what the
// policy predicted per engine and what each engine held of the prompt, so that a benchmark can tell why a
// session's turn went where it did (bench/routing/agentic.ts --decisions).
import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet, type FleetDecision } from "../../src/fleet/fleet.js";
import { smallAgentic } from "../helpers/agentic.js";

const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
  maxModelLen: 8192,
  blockHashAlgo: "fast",
});

function run(policy: "predictive" | "round-robin") {
  const decisions: FleetDecision[] = [];
  const res = simulateFleet({
    engine,
    engines: 3,
    policy,
    sessionKey: "session",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload: smallAgentic(),
    qps: 4,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: Infinity,
    durationS: Infinity,
    seed: 3,
    recordItl: false,
    onDecision: (d) => decisions.push(d),
  });
  return { res, decisions };
}

test("the decision log has every turn's pick with the policy's predictions and each engine's cached tokens", () => {
  const { res, decisions } = run("predictive");
  assert.equal(decisions.length, res.records.length);
  for (const d of decisions) {
    assert.equal(d.picked, res.routedTo[d.index]);
    assert.equal(d.heldTokens.length, 3);
    // predictive explains itself: a TTFT and a cost for every candidate
    assert.ok(d.ttftMs.every((x) => Number.isFinite(x) && x >= 0));
    assert.ok(d.cost.every((x) => Number.isFinite(x)));
  }
  // round-robin predicts nothing: its entries are NaN, what the engines held is still there
  const rr = run("round-robin").decisions;
  assert.ok(rr.every((d) => d.ttftMs.every((x) => Number.isNaN(x))));
  assert.ok(rr.some((d) => d.heldTokens.some((x) => x > 0)));
});

test("predictive sends every resumed agent turn to the engine holding its session's context", () => {
  const { decisions } = run("predictive");
  const resumed = decisions.filter((d) => d.round > 0);
  assert.ok(resumed.length > 10, `${resumed.length} resumed turns`);
  for (const d of resumed) {
    const most = Math.max(...d.heldTokens);
    assert.ok(most > 2000, `${d.sessionId}#${d.round}: its context is held (${most} tokens)`);
    assert.equal(d.heldTokens[d.picked], most, `${d.sessionId}#${d.round} went to ${d.picked}`);
  }
});

test("the fleet marks the turns sent after a tool pause as resumed, as the live bench's records do", () => {
  const { res } = run("round-robin");
  // every session's first turn has no pause before it; its later turns wait on a tool (pauseMedianS 1)
  for (const r of res.records) assert.equal(r.resumed === true, r.round > 0, `${r.sessionId}#${r.round}`);
  assert.ok(res.records.some((r) => r.resumed));
});
