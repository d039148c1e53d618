// The same scenario in virtual time and against `switchyard up` (real processes, HTTP, tokenizer,
// router) with the same seed: the live stack serves every request of the generator's workload, with the
// same prompts and outputs token for token as the virtual run. How closely their TTFT and throughput
// agree is a wall-clock measurement that a busy machine moves, so the tolerance stated in
// docs/fleet-simulator.md is checked by the benchmark `npm run bench -- fleet/vs-live` (its first scenario
// is this one); here the comparison is only printed.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { compare, runLive, runVirtual } from "../../bench/support/fleet-live.js";
import { resolveScenario } from "../../src/fleet/scenario.js";
import { freePort, freeUpPorts, spawnCli, waitForHttp, type Spawned } from "../../bench/support/cli.js";

// no tolerance is asserted here, so the engines may run fast: 0.2 wall seconds per modelled second
const TIME_SCALE = 0.2;

const scenario = resolveScenario({
  // prefill-heavy (TTFT ≈ 1.3 s modelled): the scenario the benchmark holds to the stated tolerance
  workload: { prompt_tokens: 2048, output_tokens: 32, concurrency: 8 },
  fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "l4", engines: 2, max_model_len: 4096 },
  ops: { kubernetes: true, hbm_monitoring: true },
  simulation: { seed: 3, requests: 16, policy: "round-robin" },
});

let stack: Spawned | null = null;
after(async () => {
  await stack?.stop();
});

test(
  "virtual time and switchyard up serve the same workload, token for token",
  { timeout: 180_000 },
  async (t) => {
    const port = await freePort();
    const { engineBase, kvBase } = await freeUpPorts(2);
    stack = spawnCli([
      "up",
      ...["--engines", "2", "--gpu", "l4", "--model", scenario.model.id, "--policy", "round-robin"],
      ...["--port", String(port), "--engine-base-port", String(engineBase)],
      ...["--kv-events-base-port", String(kvBase)],
      ...["--time-scale", String(TIME_SCALE), "--max-model-len", "4096", "--seed", "3"],
    ]);
    await waitForHttp(`http://127.0.0.1:${port}/v1/models`, 45_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${stack!.output()}`);
    });

    const v = runVirtual(scenario);
    const l = await runLive(scenario, { baseUrl: `http://127.0.0.1:${port}`, timeScale: TIME_SCALE });
    assert.equal(l.fields.failed, 0, JSON.stringify(l.fields.errors_by_kind));
    assert.equal(l.fields.completed, 16);
    assert.equal(v.fields.completed, 16);
    // the same prompts: the live tokenizer adds a BOS token per request, nothing else
    assert.equal(l.fields.total_output_tokens, v.fields.total_output_tokens);
    const inV = v.fields.total_input_tokens as number;
    const inL = l.fields.total_input_tokens as number;
    assert.ok(Math.abs(inL - inV) <= 2 * 16, `input tokens: virtual ${inV}, live ${inL}`);

    const table = compare(v.fields, l.fields);
    // printed, not asserted: see the opening comment
    t.diagnostic(
      table.map((a) => `${a.metric}: virtual ${a.virtual.toFixed(1)} live ${a.live.toFixed(1)}`).join("; "),
    );
    for (const a of table) assert.ok(a.virtual > 0 && a.live > 0, `${a.metric} measured on both sides`);
  },
);
