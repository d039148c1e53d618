// Planning over aggregated and disaggregated layouts, end to end through the real binary, in virtual
// time: on long prompts with short answers and a tight TPOT bound the plan picks a prefill/decode
// layout because it is cheaper at the SLO, with the evidence that one engine fewer of either role
// misses; `switchyard simulate` of the scenario it emits reproduces its predicted p90s; its front
// holds both kinds of layout with the choice marked; `--target-rps` sizes for the fewest GPUs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { cliCommand } from "../../bench/support/cli.js";
import { repoRoot } from "../deploy/tools.js";

const dir = mkdtempSync(join(tmpdir(), "plan-pd-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]): { code: number | null; out: string; err: string } {
  const { cmd, args: pre } = cliCommand();
  const r = spawnSync(cmd, [...pre, ...args], {
    encoding: "utf8",
    timeout: 300_000,
    maxBuffer: 32 * 2 ** 20,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const within = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol * Math.abs(b);

test("on 8k-token prompts with 200-token answers the plan picks a P/D layout cheaper than every aggregated one, and simulate of its emitted scenario gives its p90s", () => {
  const scenario = join(repoRoot(), "examples", "scenarios", "long-prompt-pd.yaml");
  const emitted = join(dir, "chosen.yaml");
  const svg = join(dir, "front.svg");
  const r = cli([
    "plan",
    "--scenario",
    scenario,
    "--format",
    "json",
    "--no-sweep",
    "--emit-scenario",
    emitted,
    "--emit-front",
    svg,
  ]);
  assert.equal(r.code, 0, r.err);
  const p = JSON.parse(r.out);
  assert.equal(p.slo_met, true);
  const d = p.fleet.disaggregated;
  assert.ok(d, `an aggregated fleet was chosen: ${p.summary[0]}`);
  assert.equal(p.fleet.engines, d.prefill_engines + d.decode_engines);
  assert.equal(
    p.fleet.gpus,
    d.prefill_engines * d.prefill_tensor_parallel_size + d.decode_engines * d.decode_tensor_parallel_size,
  );
  // cheaper than the cheapest aggregated fleet that meets the SLO
  const agg = p.search.shapes.filter(
    (s: { cost_usd_per_hour: number | null }) => s.cost_usd_per_hour !== null,
  );
  assert.ok(agg.length > 0);
  for (const s of agg) assert.ok(p.cost_usd_per_hour < s.cost_usd_per_hour, JSON.stringify(s));
  // one engine fewer of either role misses (where the role has more than one)
  for (const fewer of [p.one_engine_fewer, p.one_prefill_fewer])
    if (fewer) assert.equal(fewer.slo_met, false, JSON.stringify(fewer.fleet));
  assert.ok(p.one_engine_fewer || p.one_prefill_fewer);
  assert.match(p.summary[0], /^SLO met: \d+P( \(TP \d\))? \+ \d+D( \(TP \d\))? × /);
  // the front: both kinds tried, the chosen layout marked, the SLO as tokens/s per user
  const kinds = new Set(p.front.points.map((x: { kind: string }) => x.kind));
  assert.deepEqual([...kinds].sort(), ["aggregated", "disaggregated"]);
  assert.equal(p.front.points.filter((x: { chosen: boolean }) => x.chosen).length, 1);
  assert.ok(p.front.points.some((x: { on_front: boolean }) => x.on_front));
  assert.ok(within(p.front.slo_tok_s_per_user, 1000 / 18, 1e-9));
  const chart = readFileSync(svg, "utf8");
  assert.equal(p.front_svg, chart);
  assert.match(chart, /^<\?xml/);
  for (const name of ["aggregated", "disaggregated (P/D)", "Pareto front", "SLO: TPOT p90 bound", "chosen"])
    assert.ok(chart.includes(name), name);
  // simulate of the emitted scenario: the plan's p90s within 2%
  const sim = cli(["simulate", "--scenario", emitted, "--format", "json"]);
  assert.equal(sim.code, 0, sim.err);
  const b = JSON.parse(sim.out).bench;
  assert.ok(
    within(b.p90_ttft_ms, p.predicted.ttft_p90_ms, 0.02),
    `${b.p90_ttft_ms} vs ${p.predicted.ttft_p90_ms}`,
  );
  assert.ok(
    within(b.p90_tpot_ms, p.predicted.tpot_p90_ms, 0.02),
    `${b.p90_tpot_ms} vs ${p.predicted.tpot_p90_ms}`,
  );
  assert.ok(
    within(b.p90_e2el_ms, p.predicted.e2e_p90_ms, 0.02),
    `${b.p90_e2el_ms} vs ${p.predicted.e2e_p90_ms}`,
  );
});

test("--target-rps sizes for the fewest GPUs that meet the SLO at that rate, and one engine fewer misses", () => {
  const scenario = join(dir, "target.yaml");
  writeFileSync(
    scenario,
    stringify({
      name: "target",
      slo: { ttft_p90_ms: 600, tpot_p90_ms: 30 },
      workload: { prompt_tokens: 3000, output_tokens: 48, concurrency: 4 },
      fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", tensor_parallel_size: 1 },
      ops: { kubernetes: true, hbm_monitoring: true },
      simulation: { requests: 160 },
    }),
  );
  const r = cli([
    "plan",
    "--scenario",
    scenario,
    "--format",
    "json",
    "--no-sweep",
    "--layouts",
    "agg",
    "--target-rps",
    "20",
  ]);
  assert.equal(r.code, 0, r.err);
  const p = JSON.parse(r.out);
  assert.deepEqual(p.target.rps, 20);
  assert.equal(p.slo_met, true);
  assert.equal(p.predicted.requests, 160);
  // no shape that met the SLO used fewer GPUs
  for (const s of p.search.shapes)
    if (s.engines !== null) assert.ok(s.engines * s.tensor_parallel_size >= p.fleet.gpus, JSON.stringify(s));
  assert.equal(p.one_engine_fewer.slo_met, false);
  assert.ok(
    p.summary.some((l: string) => /^Target: 20 requests\/s: \d+ GPUs?, the fewest/.test(l)),
    p.summary.join("\n"),
  );
});

test("a fixed disaggregated fleet is checked as given, and a summary line without a colon is printed once, in bold", () => {
  const scenario = join(dir, "fixed-pd.yaml");
  writeFileSync(
    scenario,
    stringify({
      name: "fixed P/D",
      slo: { ttft_p90_ms: 2000, tpot_p90_ms: 20 },
      workload: { prompt_tokens: 8000, output_tokens: 200, qps: 4 },
      fleet: {
        model: "meta-llama/Llama-3.1-8B-Instruct",
        gpu: "h100",
        engines: 4,
        disaggregated: { prefill_engines: 3, decode_engines: 1, decode_tensor_parallel_size: 2 },
      },
      ops: { kubernetes: true, hbm_monitoring: true },
      simulation: { requests: 120 },
    }),
  );
  const r = cli(["plan", "--scenario", scenario, "--no-sweep"]);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split("\n").filter((l) => l.trim());
  assert.match(lines[1]!, /^\*\*SLO met:\*\* 3P \+ 1D \(TP 2\) × H100 at \$15\.00\/h/);
  // the line that names a cheaper fleet meeting the SLO has no colon: bold, once
  const also = lines.find((l) => l.includes("prefill engines would also meet it"));
  assert.ok(also, r.out.slice(0, 600));
  assert.match(also, /^\*\*\d+ prefill engines would also meet it \(\$\d+\.\d\d\/h\)\.\*\*$/);
});
