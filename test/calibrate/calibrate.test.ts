// `switchyard calibrate`: the engine model's timing fitted to measured runs. In virtual time, runs the
// fleet simulator made on an L4 profile are fitted from an H100 start and give back the L4's FLOP/s and
// bandwidth; the written profile loads where sim, simulate and plan load profiles. Against a live
// `switchyard sim` on L4 (its real-time driver, on a shared machine: generous bounds), the probe and
// the fit land near the L4's figures.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fitEngine, pooled, replayRequests, runsFromBench } from "../../src/calibrate/fit.js";
import { BenchClient } from "../../src/bench/client.js";
import { sampleArrays } from "../../src/bench/report.js";
import { main as calibrate, modelToProfile } from "../../src/calibrate/cli.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { resolveScenario } from "../../src/fleet/scenario.js";
import { loadProfilesFile, resolveGpu, resolveModel } from "../../src/models/index.js";
import { STEP_OVERHEAD_S } from "../../src/engine/index.js";
import { freePort, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { repoRoot } from "../deploy/tools.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const dir = mkdtempSync(join(tmpdir(), "calibrate-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** a bench result's per-request arrays from a virtual-time run of one L4 engine */
function virtualRun(prompt: number, output: number, concurrency: number, requests: number) {
  const r = resolveScenario({
    workload: { prompt_tokens: prompt, output_tokens: output, concurrency },
    fleet: { model: MODEL, gpu: "l4", engines: 1, max_model_len: 8192 },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: { requests },
  });
  return { ...sampleArrays(simulateFleet(fleetOptionsFor(r, "none")).records), server: null };
}

test("runs of a known profile, fitted from another GPU's, give back that profile's FLOP/s and bandwidth", async () => {
  const sweep = {
    sweep: [
      virtualRun(128, 32, 1, 6),
      virtualRun(1024, 32, 1, 6),
      virtualRun(4096, 32, 1, 6),
      virtualRun(256, 64, 4, 12),
      virtualRun(256, 64, 16, 32),
    ],
  };
  const runs = runsFromBench(sweep);
  assert.equal(runs.length, 5);
  const l4 = resolveGpu("l4");
  const fit = fitEngine(runs, resolveModel(MODEL), resolveGpu("h100"), { id: "l4-fit" });
  assert.ok(
    Math.abs(fit.gpu.bf16Flops / l4.bf16Flops - 1) < 0.1,
    `FLOP/s ${fit.gpu.bf16Flops} vs ${l4.bf16Flops}`,
  );
  assert.ok(
    Math.abs(fit.gpu.hbmBandwidth / l4.hbmBandwidth - 1) < 0.1,
    `bandwidth ${fit.gpu.hbmBandwidth} vs ${l4.hbmBandwidth}`,
  );
  assert.ok(fit.maxError < 0.2, `fit error ${fit.maxError}`);
  // the per-step term: where reading the weights dominates a step (an 8B model on an L4: 60 ms against
  // the model's 2 ms), a millisecond of it trades against a percent of bandwidth; it stays that order
  assert.ok(
    fit.stepOverheadS > STEP_OVERHEAD_S / 4 && fit.stepOverheadS < STEP_OVERHEAD_S * 4,
    `step overhead ${fit.stepOverheadS} s`,
  );
  // the same through the command, from a saved result with a held-out run (what `--check` adds): not
  // fitted, predicted by the fitted profile; the profile loads as sim/simulate/plan load it
  const saved = join(dir, "bench.json");
  const out = join(dir, "profile.yaml");
  const held = { ...virtualRun(512, 48, 2, 12), calibrate_probe: "check", calibrate_check: true };
  writeFileSync(saved, JSON.stringify({ sweep: [...sweep.sweep, held] }));
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    assert.equal(
      await calibrate(["--from-bench", saved, "--model", MODEL, "--out", out, "--id", "l4-fit"]),
      0,
    );
  } finally {
    console.log = log;
  }
  const text = lines.join("\n");
  assert.match(text, /fit error: at most \d+\.\d% on any run's figure/);
  // five runs fitted, the held-out one after them, predicted within the fit's own error's order
  assert.match(text, /\| 5 \| [^\n]*\n[^|]*fit error/);
  const heldErr = Number(/held-out error: at most (\d+\.\d)%/.exec(text)?.[1]);
  assert.ok(heldErr < 25, `held-out error ${heldErr}%\n${text}`);
  const doc = parse(readFileSync(out, "utf8"));
  assert.equal(doc.gpus[0].id, "l4-fit");
  const loaded = loadProfilesFile(out);
  assert.equal(loaded.gpus[0]!.id, "l4-fit");
  assert.ok(Math.abs(resolveGpu("l4-fit").bf16Flops / l4.bf16Flops - 1) < 0.1);
});

test("against a live sim engine on L4 serving an aliased name, the probe and the fit land near the L4's figures", async () => {
  const port = await freePort();
  const sim = spawnCli([
    "sim",
    MODEL,
    "--host=127.0.0.1",
    `--port=${port}`,
    "--gpu=l4",
    "--max-model-len=8192",
    // as `vllm serve MODEL --served-model-name tiny`: requests name "tiny", /v1/models' root names MODEL
    "--served-model-name=tiny",
    // four times faster than the L4 it models, and the fit told so: the probe takes a quarter of the time
    "--time-scale=0.25",
  ]);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/health`, 60_000, 200, sim);
    const out = join(dir, "live.yaml");
    const log = console.log;
    const lines: string[] = [];
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    try {
      const code = await calibrate([
        "--engine",
        `http://127.0.0.1:${port}`,
        "--out",
        out,
        "--requests",
        "2",
        "--rounds",
        "1",
        // a sim runs as fast at once as later: no pass to drop
        "--no-warmup",
        "--time-scale",
        "0.25",
        "--id",
        "l4-live",
      ]);
      assert.equal(code, 0);
    } finally {
      console.log = log;
    }
    const g = parse(readFileSync(out, "utf8")).gpus[0];
    const l4 = resolveGpu("l4");
    // a real-time engine on a shared machine: within a factor of two (the H100 start is 8-11x off)
    for (const [k, v] of [
      ["bf16Flops", g.bf16Flops / l4.bf16Flops],
      ["hbmBandwidth", g.hbmBandwidth / l4.hbmBandwidth],
    ] as const)
      assert.ok(v > 0.5 && v < 2, `${k}: ${v} of the L4's\n${lines.join("\n")}`);
  } finally {
    await sim.stop();
  }
});

test("an engine's served name the catalogue does not know is profiled from where its weights are, and neither known is refused by name", () => {
  const engine = { served: ["tiny"], root: MODEL, context: 8192 };
  assert.equal(modelToProfile("tiny", engine), MODEL);
  // a name the catalogue knows is its own answer, whatever the root
  assert.equal(modelToProfile(MODEL, { ...engine, root: "/models/elsewhere" }), MODEL);
  const folder = join(repoRoot(), "test", "fixtures", "tiny-model");
  assert.equal(modelToProfile("tiny", { ...engine, root: folder }), folder);
  assert.throws(
    () => modelToProfile("tiny", { ...engine, root: "acme/unheard-of-7b" }),
    /serves "tiny" from "acme\/unheard-of-7b".*give --model/,
  );
});

test("a model with no catalogue entry (its Hugging Face folder) goes into the profile, so a scenario can name it", async () => {
  const saved = join(dir, "tiny-bench.json");
  const out = join(dir, "tiny.yaml");
  const folder = join(repoRoot(), "test", "fixtures", "tiny-model");
  writeFileSync(
    saved,
    JSON.stringify({
      input_lens: [100, 200, 400],
      output_lens: [8, 8, 8],
      start_times: [0, 0.5, 1],
      ttfts: [0.01, 0.02, 0.04],
      e2els: [0.05, 0.06, 0.08],
    }),
  );
  const log = console.log;
  console.log = () => {};
  try {
    assert.equal(
      await calibrate(["--from-bench", saved, "--model", folder, "--out", out, "--id", "tiny-fit"]),
      0,
    );
  } finally {
    console.log = log;
  }
  const doc = parse(readFileSync(out, "utf8"));
  assert.equal(doc.models[0].id, folder);
  loadProfilesFile(out);
  const r = resolveScenario({
    workload: { prompt_tokens: 100, output_tokens: 8, concurrency: 1 },
    fleet: { model: folder, gpu: "tiny-fit", engines: 1 },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: { requests: 4 },
  });
  assert.equal(simulateFleet(fleetOptionsFor(r, "none")).records.length, 4);
});

test("the engine's own per-request timing (vLLM's per-request metrics) is what the fit matches: the medians, the rounds of one probe point pooled", () => {
  const round = (ttfts: number[], tpots: number[], label: string, client = 0.5) => ({
    input_lens: ttfts.map(() => 500),
    output_lens: ttfts.map(() => 48),
    start_times: ttfts.map((_, i) => i * 0.2),
    // the client's figures carry the API server's time: not what the engine model times
    ttfts: ttfts.map(() => client),
    e2els: ttfts.map(() => client + 0.001),
    engine_ttfts: ttfts,
    engine_tpots: tpots,
    server: { mean_ttft_ms: 400, mean_itl_ms: 40 },
    calibrate_probe: label,
    ...(label.endsWith("c=4") ? { calibrate_fit: "tpot" } : {}),
  });
  const runs = pooled(
    runsFromBench({
      sweep: [
        round([0.01, 0.012, 0.5], [0.002, 0.0021, 0.05], "in=500 out=48 c=1"),
        round([0.03, 0.03, 0.03, 0.03], [0.004, 0.004, 0.004, 0.004], "in=256 out=64 c=4"),
        round([0.011, 0.013, 0.014], [0.0022, 0.0023, 0.0024], "in=500 out=48 c=1"),
      ],
    }),
  );
  assert.equal(runs.length, 2);
  const [one, batch] = runs;
  assert.equal(one!.source, "engine-request");
  assert.equal(one!.statistic, "p50");
  // six requests over two rounds: the median of the engine's figures (a slow outlier does not move it)
  assert.equal(one!.inputLens.length, 6);
  assert.ok(Math.abs(one!.ttftMs - 12.5) < 1e-9, `TTFT ${one!.ttftMs}`);
  assert.ok(Math.abs(one!.tpotMs - 2.25) < 1e-9, `TPOT ${one!.tpotMs}`);
  // the second round follows the first on the replay's clock, never overlapping it
  assert.ok(one!.startTimes[3]! > one!.startTimes[2]! + 60);
  assert.equal(batch!.fitTtft, false);
});

test("requests sent at once reach the engine one by one as its API server hands them over: with a hand-over longer than a prefill, each is prefilled alone", () => {
  const run = { inputLens: [512, 512, 512, 512], outputLens: [8, 8, 8, 8], startTimes: [0, 0, 0, 0] };
  const model = resolveModel(MODEL);
  const h100 = resolveGpu("h100");
  const alone = replayRequests(
    { ...run, inputLens: [512], outputLens: [8], startTimes: [0] },
    model,
    h100,
    1,
    "queued",
  );
  const together = replayRequests(run, model, h100, 1, "queued");
  const handed = replayRequests(run, model, h100, 1, "queued", 1);
  const lone = alone.ttfts[0]!;
  // at once: the engine core takes the first in, the other three in one step after it
  assert.ok(Math.max(...together.ttfts) > lone * 1.5, `together ${together.ttfts} vs ${lone}`);
  // a second apart: each meets an idle engine (its clock starts at the engine's intake)
  for (const t of handed.ttfts)
    assert.ok(Math.abs(t / lone - 1) < 1e-9, `handed over ${handed.ttfts} vs ${lone}`);
  // a TTFT from the client's send cannot start at the engine's intake
  assert.throws(() => replayRequests(run, model, h100, 1, "arrival", 1), /intake/);
});

test("the bench records vLLM's per-request metrics from the final usage chunk as the engine's TTFT (queue + prefill) and TPOT", async () => {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      chunk({ choices: [{ index: 0, text: "a" }] });
      chunk({ choices: [{ index: 0, text: "b" }] });
      chunk({
        choices: [],
        usage: { prompt_tokens: 5, completion_tokens: 2 },
        metrics: { time_to_first_token_ms: 7.5, queue_time_ms: 2.5, mean_itl_ms: 1.25 },
      });
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const client = new BenchClient({
    baseUrl: `http://127.0.0.1:${port}`,
    model: "m",
    endpoint: "completions",
    apiKey: null,
    connections: 1,
    timeoutMs: 10_000,
    extraHeaders: {},
    extraBody: {},
  });
  try {
    const { record } = await client.send({
      index: 0,
      sessionId: "s",
      round: 0,
      prompt: "hi",
      messages: null,
      maxTokens: 2,
      intendedPromptTokens: 5,
      sessionHeader: false,
      keepText: false,
    });
    assert.equal(record.engineTtft, 10);
    assert.equal(record.engineTpot, 1.25);
    const arrays = sampleArrays([record]);
    assert.deepEqual(arrays.engine_ttfts, [0.01]);
    assert.deepEqual(arrays.engine_tpots, [0.00125]);
    // a server without them adds no arrays
    assert.equal(
      "engine_ttfts" in sampleArrays([{ ...record, engineTtft: undefined, engineTpot: undefined }]),
      false,
    );
  } finally {
    await client.close();
    server.close();
  }
});
