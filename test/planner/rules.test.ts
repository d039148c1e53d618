// Every rule and refusal of the seed (stable ids), each with a scenario that triggers it and one that
// does not. Predicates are pure over the scenario (and the simulator's baseline figures), so most cases
// need no simulation; the end-to-end cases run small fleets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveScenario, type ResolvedScenario } from "../../src/fleet/scenario.js";
import {
  offloadRefusals,
  planRefusal,
  REFUSALS,
  ROUTER_SELECTIONS,
  selectOffload,
  selectRouterPolicy,
  SELECTIONS,
  stackRefusals,
} from "../../src/planner/rules.js";
import { makePlan } from "../../src/planner/plan.js";
import { runScenario } from "../../src/fleet/run.js";

type Patch = { workload?: object; fleet?: object; ops?: object; simulation?: object };

function scenario(p: Patch = {}): ResolvedScenario {
  return resolveScenario({
    workload: {
      prompt_tokens: 6000,
      output_tokens: 300,
      concurrency: 120,
      shared_prefix_tokens: 4000,
      prefix_reuse: "multi-tenant",
      tenants: 20,
      ...p.workload,
    },
    fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "h100", engines: 4, ...p.fleet },
    ops: { kubernetes: true, hbm_monitoring: true, ...p.ops },
    ...(p.simulation ? { simulation: p.simulation } : {}),
  });
}

const ids = (fs: { rule: string }[]) => fs.map((f) => f.rule);

test("refuse.plan.no-hbm-monitoring: no HBM-pressure monitoring refuses to plan", async () => {
  const f = planRefusal(scenario({ ops: { hbm_monitoring: false } }));
  assert.equal(f?.rule, "refuse.plan.no-hbm-monitoring");
  assert.match(f!.reason, /first preemption will be a surprise/);
  assert.equal(planRefusal(scenario()), null);
  const out = await makePlan(scenario({ ops: { hbm_monitoring: false } }));
  assert.equal(out.ok, false);
});

test("refuse.chart.no-kubernetes: no Kubernetes refuses the chart", () => {
  assert.deepEqual(ids(stackRefusals(scenario({ ops: { kubernetes: false } }))), [REFUSALS.noKubernetes.id]);
  assert.deepEqual(ids(stackRefusals(scenario())), []);
});

test("refuse.stack.hand-rolled: hand-rolling what the chart covers is refused", () => {
  assert.deepEqual(ids(stackRefusals(scenario({ ops: { hand_rolled_stack: true } }))), [
    REFUSALS.handRolled.id,
  ]);
  assert.deepEqual(ids(stackRefusals(scenario({ ops: { hand_rolled_stack: false } }))), []);
});

test("refuse.offload.short-prompts-low-concurrency: prompts < 1K and concurrency < 100", () => {
  const short = { prompt_tokens: 800, shared_prefix_tokens: 0, prefix_reuse: "none" };
  const hit = scenario({ workload: { ...short, concurrency: 50 } });
  assert.ok(ids(offloadRefusals(hit, 0)).includes(REFUSALS.shortPromptsLowConcurrency.id));
  assert.ok(
    !ids(offloadRefusals(scenario({ workload: { ...short, concurrency: 150 } }), 0)).includes(
      REFUSALS.shortPromptsLowConcurrency.id,
    ),
  );
  assert.ok(
    !ids(
      offloadRefusals(
        scenario({ workload: { prompt_tokens: 2000, concurrency: 50, shared_prefix_tokens: 0 } }),
        0,
      ),
    ).includes(REFUSALS.shortPromptsLowConcurrency.id),
  );
});

test("refuse.lmcache.single-engine: fewer than 2 engines refuses LMCache", () => {
  assert.ok(
    ids(offloadRefusals(scenario({ fleet: { engines: 1 } }), 0)).includes(REFUSALS.lmcacheSingleEngine.id),
  );
  assert.ok(
    !ids(offloadRefusals(scenario({ fleet: { engines: 2 } }), 0)).includes(REFUSALS.lmcacheSingleEngine.id),
  );
});

test("refuse.lmcache.no-shared-prefix-no-preemption: no shared prefixes and no preemption refuses LMCache", () => {
  const plain = { shared_prefix_tokens: 0, prefix_reuse: "none" };
  const id = REFUSALS.lmcacheNoReuse.id;
  assert.ok(ids(offloadRefusals(scenario({ workload: plain }), 0)).includes(id));
  // shared prefixes, declared preemptions or simulated preemptions each lift it
  assert.ok(!ids(offloadRefusals(scenario(), 0)).includes(id));
  assert.ok(
    !ids(offloadRefusals(scenario({ workload: { ...plain, preemption_heavy: true } }), 0)).includes(id),
  );
  assert.ok(!ids(offloadRefusals(scenario({ workload: plain }), 12)).includes(id));
});

test("select.offload.lmcache: multi-engine shared prompts under pressure; none without pressure", () => {
  const r = scenario();
  const calm = { refusals: [], baselineKvP99: 0.3, baselinePreemptions: 0, offloadGain: 0 };
  assert.equal(selectOffload(r, { ...calm, offloadGain: 0.2 }).choice, "lmcache");
  assert.equal(selectOffload(r, { ...calm, baselineKvP99: 0.95 }).finding.rule, SELECTIONS.lmcache.id);
  assert.equal(selectOffload(r, calm).choice, "none");
  assert.equal(selectOffload(r, calm).finding.rule, SELECTIONS.none.id);
});

test("select.offload.native: HBM pressure on a single engine (LMCache refused)", () => {
  const r = scenario({ fleet: { engines: 1 } });
  const refusals = offloadRefusals(r, 5);
  const sel = selectOffload(r, { refusals, baselineKvP99: 0.97, baselinePreemptions: 5, offloadGain: 0.1 });
  assert.equal(sel.choice, "native");
  assert.equal(sel.finding.rule, SELECTIONS.native.id);
  // no pressure, no offload
  assert.equal(
    selectOffload(r, { refusals, baselineKvP99: 0.4, baselinePreemptions: 0, offloadGain: 0 }).choice,
    "none",
  );
  // without cross-engine reuse, pressure on a fleet also means native
  const plain = scenario({ workload: { shared_prefix_tokens: 0, prefix_reuse: "none" } });
  const sel2 = selectOffload(plain, {
    refusals: offloadRefusals(plain, 9),
    baselineKvP99: 0.99,
    baselinePreemptions: 9,
    offloadGain: 0.1,
  });
  assert.equal(sel2.choice, "native");
});

test("select.offload.none: short prompts at low concurrency stay without offload even under pressure", () => {
  const r = scenario({
    workload: { prompt_tokens: 500, concurrency: 20, shared_prefix_tokens: 0, prefix_reuse: "none" },
  });
  const sel = selectOffload(r, {
    refusals: offloadRefusals(r, 3),
    baselineKvP99: 0.99,
    baselinePreemptions: 3,
    offloadGain: 0.3,
  });
  assert.equal(sel.choice, "none");
  assert.match(sel.finding.reason, /offload refused/);
});

test("plan end to end: no Kubernetes gives a single engine behind a proxy, with the refusal listed", async () => {
  const r = scenario({
    workload: { prompt_tokens: 2000, output_tokens: 64, concurrency: 8, shared_prefix_tokens: 1000 },
    fleet: { engines: 2 },
    ops: { kubernetes: false },
    simulation: { requests: 24 },
  });
  const out = await makePlan(r, { sweep: [] });
  assert.ok(out.ok);
  assert.equal(out.plan.stack.kind, "single-engine-proxy");
  assert.ok(ids(out.plan.refusals).includes(REFUSALS.noKubernetes.id));
  const withK8s = await makePlan(
    scenario({
      ...{ workload: { prompt_tokens: 2000, output_tokens: 64, concurrency: 8, shared_prefix_tokens: 1000 } },
      fleet: { engines: 2 },
      simulation: { requests: 24 },
    }),
    { sweep: [] },
  );
  assert.ok(withK8s.ok);
  assert.equal(withK8s.plan.stack.kind, "helm-chart");
  assert.equal(withK8s.plan.gate.promql, "max(quantile_over_time(0.99, vllm:kv_cache_usage_perc[24h]))");
});

test("select.router.hybrid: ≥ 2 engines with prefix reuse get the cache-aware router and its KV-event channel", () => {
  const sel = selectRouterPolicy(scenario());
  assert.equal(sel.policy, "hybrid");
  assert.equal(sel.finding.rule, ROUTER_SELECTIONS.hybrid.id);
  assert.equal(
    selectRouterPolicy(scenario({ workload: { prefix_reuse: "rag", shared_prefix_tokens: 0 } })).policy,
    "hybrid",
  );
  // the miss: one engine, or no reuse, or one deployed engine (no Kubernetes)
  assert.notEqual(selectRouterPolicy(scenario({ fleet: { engines: 1 } })).policy, "hybrid");
  assert.notEqual(selectRouterPolicy(scenario({ ops: { kubernetes: false } })).policy, "hybrid");
});

test("select.router.least-load: one engine or no prefix reuse routes by load only", () => {
  for (const r of [
    scenario({ fleet: { engines: 1 } }),
    scenario({ workload: { shared_prefix_tokens: 0, prefix_reuse: "none" } }),
  ]) {
    const sel = selectRouterPolicy(r);
    assert.equal(sel.policy, "least-load");
    assert.equal(sel.finding.rule, ROUTER_SELECTIONS.leastLoad.id);
  }
  assert.equal(selectRouterPolicy(scenario()).finding.rule, ROUTER_SELECTIONS.hybrid.id);
});

test("select.router.pinned: a policy the scenario names is planned and simulated as named", () => {
  const sel = selectRouterPolicy(scenario({ simulation: { policy: "session" } }));
  assert.equal(sel.policy, "session");
  assert.equal(sel.finding.rule, ROUTER_SELECTIONS.pinned.id);
  assert.notEqual(selectRouterPolicy(scenario()).finding.rule, ROUTER_SELECTIONS.pinned.id);
});

test("plan simulates with the policy it recommends: hybrid with KV events, least-load without", async () => {
  const small = { prompt_tokens: 2000, output_tokens: 32, concurrency: 8, shared_prefix_tokens: 1500 };
  const sim = { requests: 24 };
  const cases = [
    { r: scenario({ workload: small, fleet: { engines: 2 }, simulation: sim }), policy: "hybrid", kv: true },
    {
      r: scenario({
        workload: { ...small, shared_prefix_tokens: 0, prefix_reuse: "none" },
        fleet: { engines: 2 },
        simulation: sim,
      }),
      policy: "least-load",
      kv: false,
    },
  ];
  for (const c of cases) {
    const out = await makePlan(c.r, { sweep: [] });
    assert.ok(out.ok);
    const p = out.plan;
    assert.equal(p.router.policy, c.policy);
    assert.equal(p.router.kv_events, c.kv);
    assert.equal(
      p.router.engine_flags.some((f) => f.startsWith("--kv-events-config")),
      c.kv,
    );
    assert.ok(ids(p.decisions).includes(c.kv ? ROUTER_SELECTIONS.hybrid.id : ROUTER_SELECTIONS.leastLoad.id));
    // the impact table is the recommended policy's run, not the simulator's own default (session)
    // (round-robin equals least-load on this uniform load, so only the hybrid case has a contrast run)
    const runs: [string, boolean][] = c.kv
      ? [
          [c.policy, true],
          ["session", false],
        ]
      : [[c.policy, true]];
    for (const [policy, same] of runs) {
      const pinned = {
        ...c.r,
        scenario: { ...c.r.scenario, simulation: { ...c.r.scenario.simulation, policy } },
      };
      const rep = runScenario(pinned, "none", { recordItl: false });
      const match =
        rep.bench.total_token_throughput === p.impact.none.throughput_tok_s &&
        rep.bench.mean_ttft_ms === p.impact.none.ttft_mean_ms;
      assert.equal(match, same, `${c.policy} plan against a ${policy} run`);
    }
  }
});

test("select.offload.none without the refusal says there was no HBM pressure, with the figures, not 'short prompts'", () => {
  const r = scenario();
  const sel = selectOffload(r, {
    refusals: offloadRefusals(r, 0),
    baselineKvP99: 0.43,
    baselinePreemptions: 0,
    offloadGain: -0.003,
  });
  assert.equal(sel.choice, "none");
  assert.doesNotMatch(sel.finding.reason, /short prompts/);
  assert.match(
    sel.finding.reason,
    /KV usage P99 43\.0% < 92\.0%, 0 preemptions, best offload gain −0\.3% < \+3\.0%/,
  );
  // a rule that fired names the conditions that fired it, and only those
  const lm = selectOffload(r, {
    refusals: [],
    baselineKvP99: 0.5,
    baselinePreemptions: 7,
    offloadGain: 0.01,
  });
  assert.equal(lm.choice, "lmcache");
  assert.match(
    lm.finding.reason,
    /Fired by cross-engine reuse: 4 engines, prefix_reuse multi-tenant, 4000 shared prefix tokens; HBM pressure: 7 preemptions in the simulated baseline\.$/,
  );
});

test("refuse.offload.short-prompts-low-concurrency with QPS only: concurrency is QPS × mean E2E, and the plan says so", () => {
  const r = scenario({
    workload: {
      prompt_tokens: 800,
      shared_prefix_tokens: 0,
      prefix_reuse: "none",
      concurrency: undefined,
      qps: 4,
    },
  });
  const f = offloadRefusals(r, 0, { value: 10, basis: "4 QPS × 2.50 s mean E2E, Little's law" });
  assert.match(f[0]!.reason, /concurrency ≈ 10 \(4 QPS × 2\.50 s mean E2E, Little's law\) < 100/);
  assert.deepEqual(
    ids(offloadRefusals(r, 0, { value: 150, basis: "x" })).includes(REFUSALS.shortPromptsLowConcurrency.id),
    false,
  );
});
