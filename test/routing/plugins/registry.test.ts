// Scorers and policies composed from config (src/routing/plugins): the registry, the [0, 1] contract
// every scorer keeps (predictive's time cost included), an added scorer weighed beside predictive's
// TTFT, and every policy name registered.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createPolicy,
  createRegisteredPolicy,
  createScorer,
  registeredPolicyNames,
  registerPolicy,
  ROUTER_POLICY_NAMES,
  decide,
  registerScorer,
  rooflineTiming,
  scorerNames,
  scorersConfigSchema,
  type CacheOracle,
  type EngineView,
} from "../../../src/routing/index.js";
import { createLoraPolicyByName, LORA_POLICY_NAMES } from "../../../src/routing/lora.js";
import { parseConfig } from "../../../src/router/config/config.js";
import { defaultEngineConfig } from "../../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../../src/models/index.js";
import { eng } from "../../helpers/routing.js";

const h100 = rooflineTiming(
  defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100")),
);
const picked = (d: ReturnType<typeof decide>) => (d.kind === "picked" ? d.engine.id : d.kind);

/** engine `a` holds `cachedOnA` tokens of a 4,000-token prompt */
const oracle = (cachedOnA: number): CacheOracle => ({
  predict: (_req, engines) => ({
    promptTokens: 4000,
    cachedTokens: Float64Array.from(engines.map((e) => (e.id === "a" ? cachedOnA : 0))),
    source: engines.map(() => "kv" as const),
  }),
});

/** neither has prompts queued; a decodes two requests, b none */
const fleet = (): EngineView[] => [
  eng("a", { awaitingFirstToken: 0, inFlight: 2, running: 2, scrapedAt: 0, inFlightAtScrape: 2 }),
  eng("b", { awaitingFirstToken: 0, inFlight: 0, running: 0, scrapedAt: 0, inFlightAtScrape: 0 }),
];

test("an added scorer sways predictive's pick where the TTFTs are close, and not where a hit saves seconds", () => {
  const plain = () => createPolicy("predictive", { cache: oracle(512), predictive: { timing: () => h100 } });
  const withBatch = (weight: number, cached: number) =>
    createPolicy("predictive", {
      cache: oracle(cached),
      predictive: { timing: () => h100 },
      scorers: [createScorer("decode-batch", weight)],
    });
  // 512 cached tokens save tens of ms on a, and b's empty batch is worth more at weight 0.5
  assert.equal(picked(decide(plain(), { model: "m", seq: 0 }, { engines: fleet(), now: 0 })), "a");
  assert.equal(
    picked(decide(withBatch(0.5, 512), { model: "m", seq: 0 }, { engines: fleet(), now: 0 })),
    "b",
  );
  // a hit of 3,968 tokens on a slower GPU's scale: the TTFT saving outweighs the small weight
  const l4 = rooflineTiming(
    defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("l4")),
  );
  const slow = createPolicy("predictive", {
    cache: oracle(3968),
    predictive: { timing: () => l4 },
    scorers: [createScorer("decode-batch", 0.1)],
  });
  assert.equal(picked(decide(slow, { model: "m", seq: 0 }, { engines: fleet(), now: 0 })), "a");
});

test("every scorer of a policy writes scores in [0, 1], predictive's time cost included", () => {
  const p = createPolicy("predictive", {
    cache: oracle(1000),
    predictive: { timing: () => h100, slo: { defaultTtftMs: 1 } },
    scorers: [createScorer("decode-batch", 1), createScorer("load", 1), createScorer("kv-free", 1)],
  });
  const engines = [...fleet(), eng("c", { awaitingFirstToken: 5, inFlight: 5, kvUsage: 0.9 })];
  const out = new Float64Array(engines.length);
  for (const s of p.scorers) {
    s.score({ model: "m", seq: 1 }, engines, out, { engines, now: 0 });
    for (const x of out) assert.ok(x >= 0 && x <= 1, `${s.name} scored ${x}`);
  }
});

test("scorers come from config by name: unknown names and round-robin are refused with the reason", () => {
  assert.ok(scorerNames().includes("decode-batch"));
  assert.deepEqual(scorersConfigSchema.parse([{ name: "decode-batch" }]), [
    { name: "decode-batch", weight: 1 },
  ]);
  assert.throws(
    () => parseConfig({ scorers: [{ name: "nope" }] }),
    /scorers\.0\.name: expected a scorer: .*decode-batch/,
  );
  assert.throws(
    () => parseConfig({ policy: "round-robin", scorers: [{ name: "decode-batch" }] }),
    /round-robin does not pick by score/,
  );
  assert.equal(parseConfig({ scorers: [{ name: "decode-batch", weight: 0.3 }] }).scorers[0]!.weight, 0.3);
  assert.throws(() => registerScorer("decode-batch", () => createScorer("load", 1)), /registered twice/);
});

test("every policy the router or the LoRA placement names is registered, and nothing else is", () => {
  const named = [...ROUTER_POLICY_NAMES, ...LORA_POLICY_NAMES].sort();
  assert.deepEqual(registeredPolicyNames(), named);
  for (const name of ROUTER_POLICY_NAMES) assert.equal(createPolicy(name).name, name);
  for (const name of LORA_POLICY_NAMES) assert.equal(createLoraPolicyByName(name).name, name);
});

test("an unknown policy name is a config error naming the known ones; a name registered twice is a bug", () => {
  assert.throws(() => createRegisteredPolicy("nope", {}), /unknown policy 'nope' \(known: .*least-load/);
  assert.throws(() => registerPolicy("least-load", () => createPolicy("least-load")), /registered twice/);
});
