// A LoRA mix inside the fleet simulator's one loop (simulateFleet with `lora`): sessions of several
// turns with a shared system prompt, each session naming one adapter, loaded on demand by the router's
// books, with the engines' prefix caches and the session's history at work in the same run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { createLoraPolicy } from "../../src/routing/lora.js";
import { multiRoundQaWorkload } from "../../src/workload/multi-round-qa.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { simulateLoraFleet } from "../../src/fleet/lora-run.js";
import { createPolicy } from "../../src/routing/policies.js";

const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
  lora: { maxLoras: 2, maxCpuLoras: 4, maxLoraRank: 16 },
});

test("one simulateFleet run serves a LoRA mix of multi-turn sessions that share a system prompt", () => {
  const workload = multiRoundQaWorkload({
    numUsers: 24,
    numRounds: 3,
    sharedSystemPrompt: 512,
    userHistoryPrompt: 256,
    questionLen: 20,
    answerLen: 32,
    seed: 5,
    initUserId: 0,
  });
  const r = simulateFleet({
    engine,
    engines: 2,
    policy: "round-robin",
    scrapeIntervalS: 0.1,
    sharedServer: null,
    workload,
    qps: 6,
    arrival: "poisson",
    concurrency: 12,
    maxRequests: 72,
    durationS: 600,
    seed: 5,
    recordItl: false,
    // six adapters, user k naming adapter k mod 6, placed by ours
    lora: {
      mix: { adapters: 6, zipf: 1, rank: 16 },
      rankOf: (session) => session.index % 6,
      policy: () => createLoraPolicy(),
    },
  });
  assert.equal(r.records.length, 72);
  assert.ok(
    r.records.every((x) => x.ok),
    "every turn answered",
  );
  const books = r.lora!;
  assert.ok(books.loads >= 6 && books.maxLoaded <= 4, JSON.stringify(books));
  assert.ok(r.counters.reduce((n, c) => n + c.loraGpuLoads, 0) > 0, "adapters went into GPU slots");
  // later turns find their session's history (system prompt, own history, earlier rounds) cached where
  // the placement kept the session's adapter, most of them (ours reads no session key)
  const later = r.records.filter((x) => x.round > 0);
  const kept = later.filter((x) => r.cachedTokens[x.index]! >= 512 + 256).length;
  assert.ok(kept > later.length / 2, `${kept} of ${later.length} later turns found their history`);
  // a first turn finds the shared system prompt cached only where an earlier request of its adapter ran
  // (the engine's prefix cache is per adapter, as vLLM's): and some do
  const user = (id: string) => Number(id.slice("user-".length));
  const firsts = r.records.filter((x) => x.round === 0);
  let shared = 0;
  for (const rec of firsts) {
    if (r.cachedTokens[rec.index]! < 512) continue;
    shared++;
    const e = r.routedTo[rec.index];
    const before = r.records.filter(
      (x) =>
        x.index < rec.index && user(x.sessionId) % 6 === user(rec.sessionId) % 6 && r.routedTo[x.index] === e,
    );
    assert.ok(
      before.length > 0,
      `${rec.sessionId} found the system prompt with no earlier session of its adapter there`,
    );
  }
  assert.ok(shared > 0, "some first turns share the system prompt");
});

test("a load waits for room on an engine whose loaded adapters are all busy, as the live router's does", () => {
  const tight = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
    lora: { maxLoras: 1, maxCpuLoras: 2, maxLoraRank: 16 },
  });
  const r = simulateLoraFleet({
    engines: 1,
    engine: tight,
    workload: {
      adapters: 8,
      zipf: 0.6,
      rank: 16,
      systemPrompts: 1,
      systemPromptTokens: 128,
      userTokens: 64,
      outputTokens: 64,
    },
    policy: createPolicy("round-robin"),
    rate: 12,
    durationS: 10,
    warmupS: 0,
    seed: 2,
  });
  assert.ok(r.roomWaits > 0, "some loads waited");
  assert.ok(r.maxLoaded <= 2, `never over max_cpu_loras, saw ${r.maxLoaded}`);
  assert.ok(
    r.ttfts.every((t) => Number.isFinite(t)),
    "every request answered",
  );
});
