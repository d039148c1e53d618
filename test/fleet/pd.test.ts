// The disaggregated fleet in virtual time: a request's TTFT is its prefill on a prefill engine, the KV
// transfer (bytes ÷ bandwidth per rank) and the decode engine's first step; decode engines keep their
// steps free of prefills, so long prompts stream faster than on the same engines aggregated; a
// disaggregated scenario is checked once at the edge.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveScenario, ScenarioError, type ResolvedScenario } from "../../src/fleet/scenario.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { runScenario } from "../../src/fleet/run.js";
import { kvCapacity } from "../../src/engine/index.js";

function scen(fleet: object = {}, workload: object = {}, sim: object = {}): ResolvedScenario {
  return resolveScenario({
    workload: { prompt_tokens: 8000, output_tokens: 64, qps: 4, ...workload },
    fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "h100", engines: 4, ...fleet },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: { requests: 80, seed: 1, ...sim },
  });
}

const PD = { disaggregated: { prefill_engines: 2, decode_engines: 2 } };

test("one request's TTFT on a disaggregated fleet is its prefill, the KV transfer at the set bandwidth, and one decode step", () => {
  const one = (gbs: number) =>
    simulateFleet(
      fleetOptionsFor(
        scen(
          { disaggregated: { ...PD.disaggregated, kv_transfer_gb_s_per_rank: gbs } },
          { concurrency: 1, qps: undefined },
          { requests: 1 },
        ),
        "none",
      ),
    ).records[0]!;
  const fast = one(40);
  const slow = one(0.1);
  const o = fleetOptionsFor(scen(PD, { concurrency: 1 }, { requests: 1 }), "none");
  const bytes = fast.promptTokens * kvCapacity(o.pd!.decode.engine).kvBytesPerToken;
  // the same run but for the transfer: the TTFT difference is the transfer time difference
  const expected = (bytes / 0.1e9 - bytes / 40e9) * 1000;
  assert.ok(
    Math.abs(slow.ttft - fast.ttft - expected) < 1e-6 * expected,
    `${slow.ttft - fast.ttft} vs ${expected}`,
  );
  assert.equal(fast.outputTokens, 64);
  // the prefill engine ran the prompt once with max_tokens 1; the decode engine computed no more than its last block
  const res = simulateFleet(o);
  const [p0, p1, d0, d1] = res.counters;
  assert.equal(p0!.promptTokens + p1!.promptTokens, fast.promptTokens);
  assert.equal(p0!.generationTokens + p1!.generationTokens, 1);
  assert.ok(d0!.externalHitTokens + d1!.externalHitTokens >= fast.promptTokens - 16);
  assert.equal(d0!.generationTokens + d1!.generationTokens, 64);
});

test("long prompts stream faster on decode engines kept free of prefills than on the same engines aggregated", () => {
  const agg = runScenario(scen(), "none");
  const pd = runScenario(scen(PD), "none");
  assert.equal(pd.requests, 80);
  assert.match(pd.pd ?? "", /^2 prefill \(TP 1\) \+ 2 decode \(TP 1\) engines$/);
  assert.ok(
    (pd.bench.p90_tpot_ms as number) < (agg.bench.p90_tpot_ms as number) * 0.7,
    `P/D TPOT p90 ${String(pd.bench.p90_tpot_ms)} vs aggregated ${String(agg.bench.p90_tpot_ms)}`,
  );
  // the decode engines' external prefix is the transfer, not an offload hit
  assert.equal(pd.reprefill_avoided_tokens, 0);
  assert.ok((pd.kv_transferred_tokens ?? 0) >= 80 * (8000 - 16));
});

test("a disaggregated scenario is checked once: engines = prefill + decode, and each role's TP divides the heads", () => {
  assert.throws(
    () => scen({ engines: 5, disaggregated: { prefill_engines: 2, decode_engines: 2 } }),
    (e: unknown) =>
      e instanceof ScenarioError &&
      /fleet\.engines: must be prefill_engines \+ decode_engines \(4\)/.test(e.message),
  );
  assert.throws(
    () => scen({ disaggregated: { prefill_engines: 2, decode_engines: 2, decode_tensor_parallel_size: 3 } }),
    (e: unknown) =>
      e instanceof ScenarioError &&
      /fleet\.disaggregated\.decode_tensor_parallel_size: .* got 3/.test(e.message),
  );
});
