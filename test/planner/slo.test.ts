// Planning from an SLO, end to end through the real binary, in virtual time: the fleet a plan sizes
// meets the SLO when `switchyard simulate` runs it and one engine fewer does not; a fixed fleet that
// misses says so first; infeasible scenarios exit 2 with one line naming the field; the plain rule
// file passes promtool. Small loads (a few hundred requests) keep each plan to seconds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { cliCommand } from "../../bench/support/cli.js";
import { requireTool, run } from "../deploy/tools.js";
import { assertPlanTextClean } from "./plan-text.js";
import { certainMisses, checkSlo, missCounter, p90Interval, targetsOf } from "../../src/planner/slo.js";
import type { RequestRecord } from "../../src/workload/record.js";

const dir = mkdtempSync(join(tmpdir(), "plan-slo-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, body: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof body === "string" ? body : stringify(body));
  return p;
}

function cli(args: string[]): { code: number | null; out: string; err: string } {
  const { cmd, args: pre } = cliCommand();
  const r = spawnSync(cmd, [...pre, ...args], {
    encoding: "utf8",
    timeout: 120_000,
    maxBuffer: 32 * 2 ** 20,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** 8B on H100 at 40 QPS of 3000-token prompts: the engine count is left to the planner */
const OPEN = {
  name: "sized chat",
  slo: { ttft_p90_ms: 600, tpot_p90_ms: 30 },
  workload: { prompt_tokens: 3000, output_tokens: 48, qps: 40 },
  fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "h100", tensor_parallel_size: 1 },
  ops: { kubernetes: true, hbm_monitoring: true },
  simulation: { requests: 160 },
};

test("the sized fleet, router and offload meet SLO × (1 − headroom) under `simulate`; one engine fewer does not", () => {
  // aggregated layouts only: the disaggregated search has its own test (pd.test.ts)
  const plan = cli([
    "plan",
    "--scenario",
    write("open.yaml", OPEN),
    "--format",
    "json",
    "--no-sweep",
    "--layouts",
    "agg",
  ]);
  assert.equal(plan.code, 0, plan.err);
  const p = JSON.parse(plan.out);
  assert.equal(p.slo_met, true);
  assert.equal(p.headroom, 0.1);
  assert.equal(p.fleet.gpu, "h100");
  assert.ok(p.fleet.engines >= 2, `engines ${p.fleet.engines}`);
  assert.equal(p.cost_usd_per_hour, 3 * p.fleet.engines * p.fleet.tensor_parallel_size);
  assert.match(p.summary[0], /^SLO met: \d+ × H100 at \$\d+\.\d\d\/h/);
  const bound = { ttft: 600 * 0.9, tpot: 30 * 0.9 };
  const simulate = (engines: number) => {
    const s = structuredClone(OPEN) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    s.fleet = { ...s.fleet, gpu: p.fleet.gpu, engines, tensor_parallel_size: p.fleet.tensor_parallel_size };
    s.simulation = { ...s.simulation, policy: p.router.policy, offload: { mode: p.kv_offload.choice } };
    const r = cli(["simulate", "--scenario", write(`sim-${engines}.yaml`, s), "--format", "json"]);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out).bench as { p90_ttft_ms: number; p90_tpot_ms: number };
  };
  const at = simulate(p.fleet.engines);
  assert.ok(at.p90_ttft_ms <= bound.ttft && at.p90_tpot_ms <= bound.tpot, JSON.stringify(at));
  // the plan's predicted figures are that very run
  assert.equal(at.p90_ttft_ms, p.predicted.ttft_p90_ms);
  const fewer = simulate(p.fleet.engines - 1);
  assert.ok(fewer.p90_ttft_ms > bound.ttft || fewer.p90_tpot_ms > bound.tpot, JSON.stringify(fewer));
  assert.equal(p.one_engine_fewer.slo_met, false);
});

test("a fixed fleet that misses its SLO is called under-sized in the first line and in JSON, with the fleet that meets it", () => {
  const fixed = {
    ...OPEN,
    fleet: { ...OPEN.fleet, engines: 2 },
    ops: { ...OPEN.ops, budget_usd_per_hour: 12 },
  };
  const scen = write("fixed.yaml", fixed);
  const j = cli(["plan", "--scenario", scen, "--format", "json", "--no-sweep"]);
  assert.equal(j.code, 0, j.err);
  const p = JSON.parse(j.out);
  assert.equal(p.slo_met, false);
  assert.deepEqual(p.fleet, { gpu: "h100", engines: 2, tensor_parallel_size: 1, gpus: 2 });
  assert.ok(p.undersized.over_by.ttft_p90 > 1);
  const meets = p.undersized.meets_slo_with;
  assert.ok(meets.fleet.engines > 2 && meets.fleet.gpu === "h100", JSON.stringify(meets.fleet));
  assert.ok(meets.predicted.ttft_p90_ms <= 540);
  assert.equal(p.kv_spill.sweep.length, 0, "an under-sized fleet is not swept");
  const md = cli(["plan", "--scenario", scen]);
  assert.equal(md.code, 0, md.err);
  const lines = md.out.split("\n").filter((l) => l.trim());
  assert.match(lines[1]!, /^\*\*UNDER-SIZED:\*\* 2 × H100 misses the SLO by [\d.]+×: TTFT p90/);
  assert.match(lines[2]!, new RegExp(`^\\*\\*${meets.fleet.engines} × H100 meet it`));
  // the budget of $12/h buys 4 H100s: meeting the SLO costs more, and the plan says so
  assert.match(md.out, /Over budget:\*\* meeting the SLO costs \$\d+\.00\/h against a budget of \$12\.00\/h/);
});

test("infeasible and invalid scenarios exit 2 with one line naming the field, never a stack trace", () => {
  const cases: [unknown, RegExp][] = [
    [
      {
        ...OPEN,
        workload: { prompt_tokens: 32000, output_tokens: 512, qps: 6 },
        fleet: {
          model: "meta-llama/Llama-3.1-70B-Instruct",
          gpu: "h100",
          engines: 2,
          tensor_parallel_size: 2,
        },
      },
      /fleet\.tensor_parallel_size: meta-llama\/Llama-3\.1-70B-Instruct cannot start on h100 with tensor_parallel_size 2: .*; tensor_parallel_size 4 fits on h100/,
    ],
    [
      { ...OPEN, slo: { ttft_p90_ms: 20, tpot_p90_ms: 30 } },
      /^switchyard plan: invalid scenario: slo: no fleet meets TTFT p90 ≤ 20 ms/,
    ],
    [{ ...OPEN, slo: undefined }, /slo: needed when fleet\.engines is left to the planner/],
    [
      { ...OPEN, workload: { prompt_tokens: 3000, output_tokens: 48 } },
      /workload: needs qps \(an open loop\) or concurrency/,
    ],
    [
      { ...OPEN, ops: { ...OPEN.ops, gpu_usd_per_hour: { h800: 2 } } },
      /ops\.gpu_usd_per_hour\.h800: unknown GPU/,
    ],
    [{ ...OPEN, slo: { ttft_p90_ms: 600, tpot_p90_ms: 30, headroom: 1.5 } }, /slo\.headroom: /],
  ];
  for (const [scenario, re] of cases) {
    const r = cli(["plan", "--scenario", write("bad.yaml", scenario), "--no-sweep"]);
    assert.equal(r.code, 2, `${re}: exit ${r.code}\n${r.err}`);
    const lines = r.err.trim().split("\n");
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0]!, re);
    assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
  }
  const flag = cli(["plan", "--scenario", write("ok.yaml", OPEN), "--gpu-price", "h100=-1"]);
  assert.equal(flag.code, 2);
  assert.match(flag.err, /--gpu-price: cannot read 'h100=-1'/);
});

test("--gpu-price and ops.gpu_usd_per_hour set the cost; --emit-prometheus-rules writes a plain rule file with the SLO alerts", (t) => {
  const scen = write("priced.yaml", { ...OPEN, ops: { ...OPEN.ops, gpu_usd_per_hour: { h100: 2 } } });
  const rules = join(dir, "rules.yaml");
  const r = cli([
    "plan",
    "--scenario",
    scen,
    "--format",
    "json",
    "--no-sweep",
    "--emit-prometheus-rules",
    rules,
  ]);
  assert.equal(r.code, 0, r.err);
  const p = JSON.parse(r.out);
  assert.equal(p.prices.usd_per_gpu_hour.h100, 2);
  assert.equal(p.cost_usd_per_hour, 2 * p.fleet.engines);
  const flagged = JSON.parse(
    cli(["plan", "--scenario", scen, "--format", "json", "--no-sweep", "--gpu-price", "h100=2.5"]).out,
  );
  assert.equal(flagged.cost_usd_per_hour, 2.5 * flagged.fleet.engines);
  const file = parse(readFileSync(rules, "utf8"));
  assert.equal(file.apiVersion, undefined, "a plain rule file, not the CRD");
  const names = file.groups.flatMap((g: { rules: { alert?: string; record?: string }[] }) =>
    g.rules.map((x) => x.alert ?? x.record),
  );
  assert.deepEqual(names, [
    "SwitchyardKVCacheSustainedPressure",
    "switchyard:kv_cache_usage_perc:p99_24h",
    "SwitchyardSloTtftP90",
    "SwitchyardSloTpotP90",
  ]);
  const ttft = file.groups[1].rules[0];
  assert.equal(
    ttft.expr,
    "histogram_quantile(0.9, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket[5m]))) > 0.6",
  );
  const promtool = requireTool(t, "promtool");
  if (!promtool) return;
  const check = run(promtool, ["check", "rules", rules]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
});

function record(ttft: number, e2el: number, outputTokens = 11): RequestRecord {
  return {
    index: 0,
    sessionId: "s",
    round: 0,
    start: 0,
    ok: true,
    ttft,
    itl: [],
    e2el,
    promptTokens: 10,
    outputTokens,
    usageReported: true,
    httpStatus: 200,
    errorKind: null,
    error: "",
  };
}

test("a run stops once its p90 is certain to miss, not before", () => {
  // 100 samples: the p90 sits at rank 89 (0-based) and above, so 11 misses make it certain
  assert.equal(certainMisses(100), 11);
  const t = targetsOf({ ttft_p90_ms: 1000, tpot_p90_ms: 100, headroom: 0.1 });
  assert.deepEqual(t, { ttft: 900, tpot: 90, e2e: null });
  const stop = missCounter(t, 100);
  for (let i = 0; i < 10; i++) assert.equal(stop(record(950, 1000)), false);
  assert.equal(stop(record(100, 200)), false, "a request within every bound does not count");
  assert.equal(stop(record(950, 1000)), true, "the 11th miss");
  // TPOT = (E2E − TTFT) / (outputs − 1): 10 tokens over 1000 ms is 100 ms > 90
  const tpot = missCounter(t, 100);
  let stopped = false;
  for (let i = 0; i < 11; i++) stopped = tpot(record(100, 1100));
  assert.equal(stopped, true);
  const check = checkSlo(
    {
      ttft_p50_ms: 1,
      ttft_p90_ms: 800,
      ttft_p99_ms: 1,
      tpot_p50_ms: 1,
      tpot_p90_ms: 95,
      e2e_p50_ms: 1,
      e2e_p90_ms: 1,
      throughput_tok_s: 1,
      request_throughput: 1,
      requests: 1,
    },
    t,
    false,
  );
  assert.deepEqual(check.misses, ["TPOT p90 95 ms > 90 ms"]);
  const [lo, hi] = p90Interval(500);
  assert.ok(lo > 87 && lo < 88 && hi > 92 && hi < 93, `${lo} ${hi}`);
});

test("no plan's Markdown names a machine path or an internal source, for every example (JSON: plan-values.test)", async () => {
  const examples = join(process.cwd(), "examples", "scenarios");
  const files = readdirSync(examples)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -".yaml".length));
  assert.ok(files.length >= 5, files.join(", "));
  const { cmd, args: pre } = cliCommand();
  const runs = files.map((f) => {
    const s = parse(readFileSync(join(examples, `${f}.yaml`), "utf8"));
    // the text, not the figures, is under test: a short load keeps each plan to a second or two
    s.simulation = { ...s.simulation, requests: 60 };
    return { f, scen: write(`${f}.yaml`, s) };
  });
  // two plans at a time, one simulation thread each: thread pools per plan cost more than they save here
  for (let i = 0; i < runs.length; i += 2) {
    await Promise.all(
      runs.slice(i, i + 2).map(async ({ f, scen }) => {
        const args = ["plan", "--scenario", scen, "--format", "md", "--jobs", "1"];
        if (f !== "chat-multi-tenant") args.push("--no-sweep");
        const r = await promisify(execFile)(cmd, [...pre, ...args], {
          encoding: "utf8",
          timeout: 120_000,
          maxBuffer: 32 * 2 ** 20,
        }).catch((err: { code?: number; stderr?: string }) => assert.fail(`${f}: ${err.code} ${err.stderr}`));
        assertPlanTextClean(r.stdout + r.stderr, `${f} (md)`);
      }),
    );
  }
});
