// The fleet simulator keys sessions as the live router does by default (router-view.ts): the header
// `switchyard bench` sends where the workload sends one, else the session inferred from the prompt a later
// turn extends. Otherwise the planner would predict a policy that sees sessions live routing blind, or
// the reverse. A policy that reads no session key gets only the header's, as the live edge gives it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet, type FleetDecision, type SessionKeyMode } from "../../src/fleet/fleet.js";
import { multiRoundQaWorkload, MULTI_ROUND_QA_DEFAULTS } from "../../src/workload/multi-round-qa.js";
import { sharedPrefixWorkload } from "../../src/workload/shared-prefix.js";
import type { Workload } from "../../src/workload/types.js";
import type { PolicyName } from "../../src/routing/index.js";

const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
  maxModelLen: 8192,
  blockHashAlgo: "fast",
});

const qa = (): Workload =>
  multiRoundQaWorkload({
    ...MULTI_ROUND_QA_DEFAULTS,
    numUsers: 6,
    numRounds: 3,
    sharedSystemPrompt: 200,
    userHistoryPrompt: 300,
    questionLen: 20,
    answerLen: 10,
    seed: 2,
  });

function keys(
  workload: Workload,
  sessionKey?: SessionKeyMode,
  policy: PolicyName = "predictive",
): FleetDecision[] {
  const decisions: FleetDecision[] = [];
  simulateFleet({
    engine,
    engines: 2,
    policy,
    ...(sessionKey ? { sessionKey } : {}),
    scrapeIntervalS: 1,
    sharedServer: null,
    workload,
    qps: 4,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: Infinity,
    durationS: Infinity,
    seed: 2,
    recordItl: false,
    onDecision: (d) => decisions.push(d),
  });
  return decisions;
}

test("by default a workload the bench sends with x-session-id is keyed by it, every turn", () => {
  const ds = keys(qa());
  assert.equal(ds.length, 18);
  for (const d of ds) assert.equal(d.sessionKey, d.sessionId);
});

test("without the header a conversation's later turns are inferred into one session, its first turn unnamed", () => {
  const ds = keys({ ...qa(), sessionHeader: false });
  const bySession = new Map<string, (string | undefined)[]>();
  for (const d of [...ds].sort((x, y) => x.round - y.round)) {
    const list = bySession.get(d.sessionId) ?? [];
    list.push(d.sessionKey);
    bySession.set(d.sessionId, list);
  }
  const seen = new Set<string>();
  for (const [, list] of bySession) {
    assert.equal(list[0], undefined);
    assert.ok(list[1]?.startsWith("~p:"), `an inferred key: ${list[1]}`);
    assert.equal(list[2], list[1]);
    assert.ok(!seen.has(list[1]!), "each conversation its own session");
    seen.add(list[1]!);
  }
});

test("one-turn prompts sharing only a system prompt are no session; `none` keys nothing, `group` the tenant", () => {
  const tenants = () =>
    sharedPrefixWorkload({
      numGroups: 2,
      promptsPerGroup: 5,
      systemPromptLen: 300,
      questionLen: 50,
      outputLen: 10,
      seed: 4,
    });
  for (const d of keys(tenants())) assert.equal(d.sessionKey, undefined);
  for (const d of keys(qa(), "none")) assert.equal(d.sessionKey, undefined);
  for (const d of keys(tenants(), "group")) assert.match(d.sessionKey ?? "", /^g\d+$/);
});

test("under a policy that reads no session key a conversation is keyed by its header alone, never inferred", () => {
  for (const policy of ["round-robin", "least-load", "vllm-router-cache-aware"] as const) {
    for (const d of keys(qa(), undefined, policy)) assert.equal(d.sessionKey, d.sessionId, policy);
    const ds = keys({ ...qa(), sessionHeader: false }, undefined, policy);
    assert.equal(ds.length, 18);
    for (const d of ds) assert.equal(d.sessionKey, undefined, policy);
  }
});
