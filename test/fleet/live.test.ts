// Acceptance 3 of the simulator: the same scenario in virtual time and against `switchyard up` (real
// processes, HTTP, tokenizer, router) with the same seed gives TTFT and throughput within the tolerance
// stated in docs/fleet-simulator.md. The live engines run at --time-scale 0.5 so the run is short; the
// work per wall second stays far below what two cores can do (a step of ~30 ms wall per engine).
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { compare, runLive, runVirtual } from "../../src/fleet/live.js";
import { resolveScenario } from "../../src/fleet/scenario.js";
import { freePort, freeUpPorts, spawnCli, waitForHttp, type Spawned } from "../helpers/cli.js";

const TIME_SCALE = 0.5;
/** throughput: output and total tokens/s agree within 10% */
const THROUGHPUT_TOLERANCE = 0.1;
/** mean TTFT within 25%: arrival jitter regroups prefills into different steps (see the docs) */
const TTFT_TOLERANCE = 0.25;

const scenario = resolveScenario({
  // prefill-heavy (TTFT ≈ 1.3 s modelled) so a loaded host's few ms of HTTP delay stay small beside it
  workload: { prompt_tokens: 2048, output_tokens: 32, concurrency: 8 },
  fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "l4", engines: 2, max_model_len: 4096 },
  ops: { kubernetes: true, hbm_monitoring: true },
  simulation: { seed: 3, requests: 32, policy: "round-robin" },
});

let stack: Spawned | null = null;
after(async () => {
  await stack?.stop();
});

test("virtual time and switchyard up agree on TTFT and throughput", { timeout: 90_000 }, async (t) => {
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
  assert.equal(l.fields.completed, 32);
  assert.equal(v.fields.completed, 32);
  // the same prompts: the live tokenizer adds a BOS token per request, nothing else
  assert.equal(l.fields.total_output_tokens, v.fields.total_output_tokens);
  const inV = v.fields.total_input_tokens as number;
  const inL = l.fields.total_input_tokens as number;
  assert.ok(Math.abs(inL - inV) <= 2 * 32, `input tokens: virtual ${inV}, live ${inL}`);

  const table = compare(v.fields, l.fields);
  const report = table.map((a) => `${a.metric}: virtual ${a.virtual.toFixed(1)} live ${a.live.toFixed(1)}`);
  t.diagnostic(report.join("; "));
  for (const a of table) {
    const tol = a.metric.includes("ttft") ? TTFT_TOLERANCE : THROUGHPUT_TOLERANCE;
    if (a.metric === "median_ttft_ms") continue; // bimodal at this size; the mean is the stated figure
    assert.ok(
      Math.abs(a.relDiff) <= tol,
      `${a.metric} differs by ${(a.relDiff * 100).toFixed(1)}%\n${report.join("\n")}`,
    );
  }
});
