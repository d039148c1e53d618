// `switchyard calibrate --engine URL --out FILE` or `--from-bench result.json --model M --out FILE`:
// fits the engine model's timing (engine-fit.ts) to a running engine or a saved bench result, writes
// the fitted GPU profile as a profiles YAML (`--profiles FILE` of sim, simulate and plan) and prints
// the fit's error per run. Against an engine it first sends a short probe: a few prompt lengths one
// at a time (the prefill term) and a few batch sizes of short prompts (the decode term), each a bench
// run with the engine's /metrics scraped before and after, so the engine's own TTFT and ITL
// histogram means are what the fit matches.
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "undici";
import { stringify } from "yaml";
import { CliError, parseCommand, type FlagSpecs } from "../config/args.js";
import {
  GPUS,
  isModelFolder,
  loadModelFolder,
  loadProfilesFile,
  resolveGpu,
  resolveModel,
} from "../models/index.js";
import { benchOptionsFrom } from "./cli.js";
import { fitEngine, profileDocument, runsFromBench, type FitRun } from "./engine-fit.js";
import { resolveModel as servedModel, runBench } from "./run.js";

/** the probe: [prompt tokens, output tokens, concurrency] per run */
export const PROBE: readonly [number, number, number][] = [
  [128, 32, 1],
  [1024, 32, 1],
  [4096, 32, 1],
  [256, 64, 4],
  [256, 64, 16],
];

const specs: FlagSpecs = {
  engine: { type: "string", help: "a running engine's base URL (vLLM or switchyard sim): probe it" },
  "from-bench": { type: "string", help: "fit to a saved `switchyard bench --out` result instead" },
  out: { type: "string", help: "write the fitted profile (profiles YAML, gpus:) here" },
  model: {
    type: "string",
    help: "the catalogue model the engine serves, or its Hugging Face folder (default: the engine's /v1/models)",
  },
  gpu: {
    type: "string",
    default: "h100",
    help: "the GPU profile to start from (its memory and links are kept)",
  },
  tp: { type: "int", default: 1, min: 1, help: "the engine's tensor-parallel size" },
  id: { type: "string", help: "the fitted profile's id (default: GPU-calibrated)" },
  "time-scale": {
    type: "number",
    default: 1,
    help: "a sim's --time-scale: measured durations are divided by it",
  },
  requests: { type: "int", default: 8, min: 2, help: "requests per probe run (×2 for the batch runs)" },
  profiles: { type: "string", help: "YAML with extra gpus:/models: profiles to resolve --gpu and --model" },
};

const USAGE =
  "usage: switchyard calibrate (--engine URL | --from-bench result.json --model M) --out FILE [--gpu BASE] [--tp N] [--time-scale S] [--id ID]";

/** the engine's context as its /v1/models lists it (vLLM's `max_model_len`), or null */
async function contextOf(url: string): Promise<number | null> {
  try {
    const res = await request(`${url}/v1/models`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
    const body = (await res.body.json()) as { data?: { max_model_len?: unknown }[] };
    const n = body?.data?.[0]?.max_model_len;
    return typeof n === "number" && n > 0 ? n : null;
  } catch {
    return null;
  }
}

async function probe(
  url: string,
  model: string | null,
  requests: number,
  warn: (m: string) => void,
): Promise<unknown[]> {
  const out: unknown[] = [];
  // prompts fit the engine's context (an engine started with a short --max-model-len refuses longer ones)
  const context = (await contextOf(url)) ?? Infinity;
  for (const [want, output, conc] of PROBE) {
    const input = Math.max(16, Math.min(want, context - output - 64));
    const n = conc > 1 ? Math.max(requests * 2, conc * 2) : requests;
    const argv = [
      "--base-url",
      url,
      "--workload",
      "random",
      "--input-len",
      String(input),
      "--output-len",
      String(output),
      "--concurrency",
      String(conc),
      "--num-requests",
      String(n),
      "--warmup",
      "0",
      "--ignore-eos",
      "--no-progress",
      "--endpoint",
      "completions",
      ...(model ? ["--model", model] : []),
    ];
    const runs = await runBench(benchOptionsFrom(argv), { warn });
    for (const r of runs) out.push(r.result);
    process.stderr.write(`calibrate: probe ${input} prompt tokens × ${conc} at once: ${n} requests done\n`);
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, USAGE, specs);
  if (!parsed) return 0;
  const f = parsed.flags;
  const engine = typeof f.engine === "string" ? f.engine.replace(/\/+$/, "") : null;
  const fromBench = typeof f["from-bench"] === "string" ? f["from-bench"] : null;
  if ((engine === null) === (fromBench === null))
    throw new CliError(`give --engine URL or --from-bench FILE\n${USAGE}`);
  if (typeof f.out !== "string") throw new CliError(`--out FILE is required\n${USAGE}`);
  if (typeof f.profiles === "string") loadProfilesFile(f.profiles);
  const timeScale = Number(f["time-scale"]);
  if (!(timeScale > 0)) throw new CliError(`--time-scale: must be above 0, got ${timeScale}`);
  let modelId = typeof f.model === "string" ? f.model : null;
  if (modelId === null && engine !== null) modelId = await servedModel(engine, {});
  if (modelId === null)
    throw new CliError("--model: needed with --from-bench (the catalogue model the engine served)");
  let model;
  let base;
  try {
    // a model folder (config.json) is profiled as the sim profiles it
    model = isModelFolder(modelId) ? loadModelFolder(modelId, modelId).profile : resolveModel(modelId);
    base = resolveGpu(String(f.gpu));
  } catch (err) {
    throw new CliError(`${(err as Error).message} (GPUs: ${GPUS.map((g) => g.id).join(", ")})`);
  }
  let bodies: unknown[];
  if (fromBench !== null) {
    try {
      bodies = [JSON.parse(readFileSync(fromBench, "utf8"))];
    } catch (err) {
      throw new CliError(`--from-bench: cannot read ${fromBench}: ${(err as Error).message}`);
    }
  } else
    bodies = await probe(engine!, isModelFolder(modelId) ? null : modelId, Number(f.requests), (m) =>
      process.stderr.write(`calibrate: ${m}\n`),
    );
  let runs: FitRun[];
  try {
    runs = bodies.flatMap((b) => runsFromBench(b, timeScale));
  } catch (err) {
    throw new CliError(`--from-bench: ${(err as Error).message}`);
  }
  const fit = fitEngine(runs, model, base, {
    tp: Number(f.tp),
    ...(typeof f.id === "string" ? { id: f.id } : {}),
  });
  writeFileSync(f.out, stringify(profileDocument(fit.gpu, isModelFolder(modelId) ? model : undefined)));
  const pct = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x * 100).toFixed(1)}%`;
  console.log(
    `calibrated ${fit.gpu.id}: ${base.id} × ${fit.flopsFactor.toFixed(3)} dense FLOP/s (${(fit.gpu.bf16Flops / 1e12).toFixed(1)} TFLOP/s), × ${fit.bandwidthFactor.toFixed(3)} HBM bandwidth (${(fit.gpu.hbmBandwidth / 1e12).toFixed(3)} TB/s), step overhead ${(fit.stepOverheadS * 1000).toFixed(2)} ms → ${f.out}`,
  );
  console.log(
    "| run | source | requests | TTFT measured | TTFT model | error | TPOT measured | TPOT model | error |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  fit.runs.forEach((r, i) =>
    console.log(
      `| ${i + 1} | ${runs[i]!.source} | ${runs[i]!.inputLens.length} | ${r.ttftMs.toFixed(1)} ms | ${r.predTtftMs.toFixed(1)} ms | ${pct(r.ttftErr)} | ${r.tpotMs.toFixed(2)} ms | ${r.predTpotMs.toFixed(2)} ms | ${pct(r.tpotErr)} |`,
    ),
  );
  console.log(`fit error: at most ${(fit.maxError * 100).toFixed(1)}% on any run's mean`);
  return 0;
}
