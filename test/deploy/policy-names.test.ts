// One list of router policy names (ROUTER_POLICY_NAMES, src/routing): the router's config, the fleet
// scenario, the planner's chart list and the Helm chart's values.schema.json must all accept exactly it.
// The schema is static JSON, so only this test keeps its enum from drifting when a policy is added.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parse as parseYaml } from "yaml";
import { resolveScenario } from "../../src/fleet/scenario.js";
import { CHART_ROUTER_POLICIES } from "../../src/planner/emit.js";
import { parseConfig } from "../../src/router/config/config.js";
import {
  CACHE_POLICY_NAMES,
  KV_EVENT_POLICY_NAMES,
  policyReadsKv,
  ROUTER_POLICY_NAMES,
} from "../../src/routing/index.js";
import { repoRoot } from "./tools.js";

const chart = join(repoRoot(), "deploy", "helm", "switchyard");
const sorted = (names: Iterable<string>): string[] => [...names].sort();

test("the chart's values.schema.json accepts exactly the router's policies for router.policy", () => {
  const schema = JSON.parse(readFileSync(join(chart, "values.schema.json"), "utf8"));
  const names: string[] = schema.properties.router.properties.policy.enum;
  assert.equal(new Set(names).size, names.length, `duplicate names in the schema's enum: ${names}`);
  assert.deepEqual(sorted(names), sorted(ROUTER_POLICY_NAMES));
});

test("the planner's chart list is the router's policies", () => {
  assert.deepEqual(sorted(CHART_ROUTER_POLICIES), sorted(ROUTER_POLICY_NAMES));
});

test("the router's config and the fleet scenario accept every router policy and nothing else", () => {
  for (const policy of ROUTER_POLICY_NAMES) {
    assert.equal(parseConfig({ policy }).policy, policy);
    const r = resolveScenario({
      name: "p",
      workload: { prompt_tokens: 1000, output_tokens: 16, concurrency: 4 },
      fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "h100", engines: 2 },
      ops: { kubernetes: true, hbm_monitoring: true },
      simulation: { policy },
    });
    assert.equal(r.scenario.simulation.policy, policy);
  }
  assert.throws(() => parseConfig({ policy: "fastest" }), /policy/);
});

test("the chart's default policy is the router's default", () => {
  const values = parseYaml(readFileSync(join(chart, "values.yaml"), "utf8"));
  assert.equal(values.router.policy, parseConfig({}).policy);
});

test("the policies that read KV events are cache-aware ones or a baseline that counts prompts in tokens (llm-d-sticky, vllm-router-program), and prefix is not among them", () => {
  const counting = ["llm-d-sticky", "vllm-router-program"];
  for (const name of KV_EVENT_POLICY_NAMES)
    assert.ok(CACHE_POLICY_NAMES.includes(name as never) || counting.includes(name), name);
  assert.deepEqual(
    ROUTER_POLICY_NAMES.filter(policyReadsKv),
    ROUTER_POLICY_NAMES.filter(
      (n) => n === "kv" || n === "hybrid" || n === "predictive" || counting.includes(n),
    ),
  );
  assert.equal(policyReadsKv("nope"), false);
});
