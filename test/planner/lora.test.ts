// The LoRA part of a plan: a scenario whose requests name adapters gets max_loras / max_cpu_loras
// chosen in the LoRA fleet simulator (the fewest GPU slots, then the smallest host cache, that meet the
// SLO), the adapters the fleet holds at the SLO, and the flags in the engine args and Helm values. Small
// fleets and short virtual-time runs: the choice, not the figures, is under test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveScenario, ScenarioError, type ResolvedScenario } from "../../src/fleet/scenario.js";
import { makePlan } from "../../src/planner/plan.js";
import { helmValues } from "../../src/planner/emit.js";
import { planMarkdown } from "../../src/planner/format.js";
import { PlanInputError } from "../../src/planner/input.js";
import { loraCandidates, maxLoraRankFor, planLora } from "../../src/planner/lora.js";
import { targetsOf } from "../../src/planner/slo.js";

type Patch = { workload?: object; fleet?: object; slo?: object | null; simulation?: object };

function scenario(p: Patch = {}): ResolvedScenario {
  return resolveScenario({
    ...(p.slo === null ? {} : { slo: { ttft_p90_ms: 500, tpot_p90_ms: 60, ...p.slo } }),
    workload: {
      prompt_tokens: 512,
      output_tokens: 32,
      qps: 12,
      shared_prefix_tokens: 256,
      prefix_reuse: "multi-tenant",
      tenants: 2,
      lora: { adapters: 40, zipf: 1.0, rank: 16 },
      ...p.workload,
    },
    fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "h100", engines: 2, ...p.fleet },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: { requests: 96, ...p.simulation },
  });
}

test("the candidates keep max_cpu_loras at or above max_loras and no larger than the adapters need", () => {
  for (const adapters of [1, 3, 60, 5000]) {
    const cs = loraCandidates(adapters);
    assert.ok(cs.length > 0);
    for (const { maxLoras, cpu } of cs) {
      assert.ok(maxLoras <= Math.max(1, adapters));
      for (const m of cpu) {
        assert.ok(m >= maxLoras, `max_cpu_loras ${m} < max_loras ${maxLoras}`);
        assert.ok(m <= Math.max(adapters, maxLoras));
      }
      assert.deepEqual(
        cpu,
        [...cpu].sort((a, b) => a - b),
      );
    }
  }
  // fewer adapters than the largest slot count: one slot each is tried too
  assert.deepEqual(
    loraCandidates(3).map((x) => x.maxLoras),
    [1, 2, 3],
  );
  assert.deepEqual(loraCandidates(3).at(-1)!.cpu, [3]);
});

test("--max-lora-rank is vLLM's smallest accepted rank that serves the adapters", () => {
  assert.equal(maxLoraRankFor(16), 16);
  assert.equal(maxLoraRankFor(12), 16);
  assert.equal(maxLoraRankFor(300), 320);
  assert.throws(() => maxLoraRankFor(1024), /up to 512/);
});

test("the plan picks the fewest GPU slots that meet the SLO, and every pair with fewer slots missed", () => {
  const r = scenario();
  const p = planLora(r, 2, targetsOf(r.scenario.slo!));
  assert.equal(p.slo_met, true, p.reason);
  const met = p.runs.find((x) => x.max_loras === p.max_loras && x.max_cpu_loras === p.max_cpu_loras);
  assert.ok(met?.slo_met, "the chosen pair was run and met the SLO");
  // this workload needs more than one slot per engine: the rule is exercised, not vacuous
  assert.ok(p.runs.some((x) => x.max_loras < p.max_loras));
  for (const x of p.runs.filter((y) => y.max_loras < p.max_loras)) assert.equal(x.slo_met, false);
  // no smaller host cache with the same slots met it
  for (const x of p.runs.filter((y) => y.max_loras === p.max_loras && y.adapters === 40))
    if (x.max_cpu_loras < p.max_cpu_loras) assert.equal(x.slo_met, false);
  assert.ok(p.max_cpu_loras >= p.max_loras);
  assert.deepEqual(p.resident, {
    gpu_slots: 2 * p.max_loras,
    host_cache: Math.min(40, 2 * p.max_cpu_loras),
  });
  // held at the SLO: at least the workload's adapters, and every larger count tried below the first miss met it
  assert.ok(p.adapters_at_slo !== null && p.adapters_at_slo >= 40);
  if (p.adapters_missed !== null) assert.ok(p.adapters_missed > p.adapters_at_slo);
  assert.ok(p.engine_flags.includes(`--max-loras ${p.max_loras}`));
  assert.ok(p.engine_flags.includes(`--max-cpu-loras ${p.max_cpu_loras}`));
});

test("plan on a LoRA scenario names max_loras, max_cpu_loras and the adapters held, and emits the flags", async () => {
  const out = await makePlan(scenario(), { sweep: [] });
  assert.ok(out.ok);
  const plan = out.plan;
  const lora = plan.lora!;
  assert.ok(lora, "the plan has a LoRA part");
  const line = plan.summary.find((l) => l.startsWith("LoRA:"));
  assert.ok(line, plan.summary.join("\n"));
  assert.match(line, new RegExp(`--max-loras ${lora.max_loras} --max-cpu-loras ${lora.max_cpu_loras}`));
  assert.match(line, new RegExp(`holds ${lora.adapters_at_slo} adapters at the SLO`));
  // the engine args the plan prints, and the chart's values
  assert.ok(plan.router.engine_flags.includes("--enable-lora"));
  assert.equal(plan.router.engine_env.VLLM_ALLOW_RUNTIME_LORA_UPDATING, "True");
  const values = helmValues(plan, scenario()) as { engines: { lora: Record<string, unknown> } };
  assert.equal(values.engines.lora.enabled, true);
  assert.equal(values.engines.lora.maxLoras, lora.max_loras);
  assert.equal(values.engines.lora.maxCpuLoras, lora.max_cpu_loras);
  assert.equal(values.engines.lora.maxLoraRank, 16);
  assert.match(planMarkdown(plan), /## LoRA adapters/);
});

test("a plan without adapters has no LoRA part and no LoRA flags", async () => {
  const s = scenario();
  delete (s.scenario.workload as { lora?: unknown }).lora;
  const out = await makePlan(s, { sweep: [] });
  assert.ok(out.ok);
  assert.equal(out.plan.lora, null);
  assert.ok(!out.plan.router.engine_flags.some((f) => f.includes("lora")));
  assert.ok(!out.plan.summary.some((l) => l.startsWith("LoRA:")));
});

test("a LoRA scenario needs an SLO and an open loop, each refused with the field named", async () => {
  await assert.rejects(makePlan(scenario({ slo: null }), { sweep: [] }), (e: unknown) => {
    assert.ok(e instanceof PlanInputError);
    assert.match(e.message, /^slo: .*workload\.lora/);
    return true;
  });
  assert.throws(
    () => scenario({ workload: { qps: undefined, concurrency: 8 } }),
    (e: unknown) => e instanceof ScenarioError && /workload\.lora: .*needs workload\.qps/.test(e.message),
  );
  assert.throws(
    () => scenario({ workload: { lora: { adapters: 0 } } }),
    (e: unknown) => e instanceof ScenarioError && /workload\.lora\.adapters/.test(e.message),
  );
});
