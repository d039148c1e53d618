// `switchyard calibrate --engine URL --out FILE` or `--from-bench result.json --model M --out FILE`:
// fits the engine model's timing (fit.ts) to a running engine or a saved bench result, writes
// the fitted GPU profile as a profiles YAML (`--profiles FILE` of sim, simulate and plan) and prints
// the fit's error per run. Against an engine it first sends a short probe: a few prompt lengths one
// at a time (the prefill term) and a few batch sizes (the decode term), each a bench run with the
// engine's /metrics scraped before and after, so the engine's own TTFT and ITL (per request where
// vLLM returns them, else its histogram means) are what the fit matches. A fit's error on its own
// runs flatters it: `--check IN:OUT:CONC` runs a held-out workload between the probe's points (so that
// a busy machine's slow and fast moments fall on both alike), fits nothing to it, and reports the
// fitted profile's error on it.
import { randomInt } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "undici";
import { stringify } from "yaml";
import { z } from "zod";
import { CliError } from "../config/args.js";
import { commandFlags, parseCommandFlags } from "../config/command.js";
import { flag } from "../config/schema-flags.js";
import {
  GPUS,
  isModelFolder,
  loadModelFolder,
  loadProfilesFile,
  resolveGpu,
  resolveModel,
} from "../models/index.js";
import { benchOptionsFrom } from "../bench/cli.js";
import {
  fitEngine,
  pooled,
  predict,
  profileDocument,
  runsFromBench,
  ttftMatched,
  type FitResult,
  type FitRun,
} from "./fit.js";
import { runBench } from "../bench/run.js";
import { PeerError } from "../errors/index.js";

/** the probe: [prompt tokens, output tokens, concurrency] per run */
export const PROBE: readonly [number, number, number][] = [
  [128, 32, 1],
  [512, 32, 1],
  [1024, 32, 1],
  [4096, 32, 1],
  [1024, 64, 2],
  [256, 64, 4],
  [256, 64, 16],
];

/** The command's options: each field declares its flag, type, bounds, default and help. */
const calibrateOptions = z.object({
  engine: flag(z.string().optional(), {
    flag: "engine",
    help: "a running engine's base URL (vLLM or switchyard sim): probe it",
  }),
  fromBench: flag(z.string().optional(), {
    flag: "from-bench",
    help: "fit to a saved `switchyard bench --out` result instead",
  }),
  out: flag(z.string().optional(), {
    flag: "out",
    help: "write the fitted profile (profiles YAML, gpus:) here",
  }),
  model: flag(z.string().optional(), {
    flag: "model",
    help: "the catalogue model the engine serves, or its Hugging Face folder (default: the engine's /v1/models: the name it serves, else where its weights are, `root`)",
  }),
  gpu: flag(z.string().default("h100"), {
    flag: "gpu",
    help: "the GPU profile to start from (its memory and links are kept)",
  }),
  tp: flag(z.number().int().min(1).default(1), { flag: "tp", help: "the engine's tensor-parallel size" }),
  id: flag(z.string().optional(), { flag: "id", help: "the fitted profile's id (default: GPU-calibrated)" }),
  timeScale: flag(z.number().default(1), {
    flag: "time-scale",
    help: "a sim's --time-scale: measured durations are divided by it",
  }),
  requests: flag(z.number().int().min(2).default(8), {
    flag: "requests",
    help: "requests per probe run (×2 for the batch runs)",
  }),
  rounds: flag(z.number().int().min(1).default(3), {
    flag: "rounds",
    help: "times the probe's runs are repeated, one after another, and pooled per run (a busy machine's slow moments fall on every run)",
  }),
  profiles: flag(z.string().optional(), {
    flag: "profiles",
    help: "YAML with extra gpus:/models: profiles to resolve --gpu and --model",
  }),
  predict: flag(z.boolean().optional(), {
    flag: "predict",
    help: "fit nothing: replay --from-bench's runs on --gpu as it is (a fitted profile, with --profiles) and print the error",
  }),
  format: flag(z.string().default("text"), {
    flag: "format",
    help: "text or json (the per-run table as JSON)",
  }),
  probeOut: flag(z.string().optional(), {
    flag: "probe-out",
    help: "also write the probe's bench results here ({sweep: [...]}, which --from-bench reads)",
  }),
  intakeMs: flag(z.number().default(0), {
    flag: "intake-ms",
    help: "with --predict: the API server's hand-over time a request that the fit printed (engine-timed runs only)",
  }),
  warmup: flag(z.boolean().default(true), {
    flag: "warmup",
    negatable: true,
    help: "first one pass over the probe's points, not fitted (a fresh engine runs its first requests slower)",
  }),
  check: flag(z.string().optional(), {
    flag: "check",
    help: "a held-out workload, PROMPT:OUTPUT:CONCURRENCY tokens and streams: run between the probe's points (--requests a time), not fitted, its error reported",
  }),
});
const FLAGS = commandFlags(calibrateOptions);

const USAGE =
  "usage: switchyard calibrate (--engine URL | --from-bench result.json --model M) --out FILE [--gpu BASE] [--tp N] [--time-scale S] [--id ID] [--check IN:OUT:CONC]\n       switchyard calibrate --predict --from-bench held-out.json --model M --profiles fitted.yaml --gpu ID";

/**
 * what an engine's /v1/models says of the model it serves, as vLLM writes it (`serving_models.py`):
 * `id` the served names (`--served-model-name`, or the model as given), `root` where its weights are
 * (the Hugging Face id or folder `vllm serve` was given), `max_model_len` its context
 */
export interface EngineModel {
  /** the names the engine answers to, its base model first (a LoRA adapter's `parent` is the base) */
  served: string[];
  root: string | null;
  context: number | null;
}

/**
 * the engine's /v1/models, asked three times a second apart (a busy engine's API server can stall for
 * seconds), then refused: a probe that guessed the context would send prompts the engine refuses
 */
async function engineModel(url: string): Promise<EngineModel> {
  let last = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 1000));
    try {
      const res = await request(`${url}/v1/models`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
      const body = (await res.body.json()) as {
        data?: { id?: unknown; root?: unknown; parent?: unknown; max_model_len?: unknown }[];
      };
      const listed = (Array.isArray(body?.data) ? body.data : []).filter((m) => typeof m?.id === "string");
      // base models (no parent) before LoRA adapters
      listed.sort((a, b) => Number(typeof a.parent === "string") - Number(typeof b.parent === "string"));
      if (res.statusCode !== 200 || listed.length === 0)
        throw new PeerError(`HTTP ${res.statusCode}, no model listed`);
      const base = listed[0]!;
      const n = base.max_model_len;
      return {
        served: listed.map((m) => m.id as string),
        root: typeof base.root === "string" && base.root !== "" ? base.root : null,
        context: typeof n === "number" && n > 0 ? n : null,
      };
    } catch (err) {
      last = (err as Error).message;
    }
  }
  throw new CliError(`--engine ${url}: /v1/models did not answer (${last})`);
}

function known(model: string): boolean {
  if (isModelFolder(model)) return true;
  try {
    resolveModel(model);
    return true;
  } catch {
    return false;
  }
}

/**
 * the model to profile for an engine: the name it serves where the catalogue knows it (or it is a model
 * folder here), else its weights' `root` (`vllm serve Qwen/Qwen2.5-0.5B-Instruct --served-model-name
 * tiny` serves "tiny" from "Qwen/Qwen2.5-0.5B-Instruct"); a clear refusal where neither is known
 */
export function modelToProfile(name: string, engine: EngineModel): string {
  if (known(name)) return name;
  if (engine.root !== null && known(engine.root)) return engine.root;
  const from = engine.root === null ? "" : ` from "${engine.root}"`;
  throw new CliError(
    `the engine serves "${name}"${from}, and neither is a catalogue model or a model folder on this machine: give --model (a catalogue model or the weights' folder) or a profiles YAML with --profiles`,
  );
}

/** a held-out workload (`--check`): prompt and output tokens, concurrency */
export interface CheckShape {
  input: number;
  output: number;
  concurrency: number;
}

export function parseCheck(v: string): CheckShape {
  const m = /^(\d+):(\d+):(\d+)$/.exec(v.trim());
  const [input, output, concurrency] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  if (!(input >= 1 && output >= 2 && concurrency >= 1))
    throw new CliError(
      `--check: PROMPT:OUTPUT:CONCURRENCY (prompt ≥ 1 and output ≥ 2 tokens, ≥ 1 stream), got ${v}`,
    );
  return { input, output, concurrency };
}

async function probe(
  url: string,
  model: string,
  context: number,
  requests: number,
  rounds: number,
  check: CheckShape | null,
  warmup: boolean,
  warn: (m: string) => void,
): Promise<unknown[]> {
  const out: unknown[] = [];
  // prompts no earlier run sent (this probe's, a previous probe's, a held-out run's): a prefix-cache hit
  // would time a prefill that never ran
  const seed = randomInt(1, 2 ** 30);
  const bench = async (input: number, output: number, conc: number, n: number, runSeed: number) => {
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
      "--seed",
      String(runSeed),
      "--warmup",
      "0",
      "--ignore-eos",
      "--no-progress",
      // a probe request two minutes without a chunk is a stuck engine: the probe ends, with errors
      "--request-timeout",
      "120",
      "--endpoint",
      "completions",
      "--model",
      model,
    ];
    const runs = await runBench(benchOptionsFrom(argv), { warn });
    // a run the engine answered none of cannot be fitted: say why, not what the fit trips over later
    for (const r of runs) {
      const res = r.result as { completed?: number; errors?: string[] };
      const first = res.errors?.find((e) => e !== "");
      if (!res.completed)
        throw new CliError(
          `probe of ${input} prompt tokens × ${conc}: no request completed${first ? ` (${first})` : ""}`,
        );
    }
    return runs.map((r) => r.result as Record<string, unknown>);
  };
  /** a prompt of `want` tokens, cut to what the context leaves beside `output` (at least `least`) */
  const fitted = (want: number, output: number, least: number) =>
    Math.max(least, Math.min(want, context - output - 64));
  // first a pass over the points the fit never sees: a fresh engine runs its first requests slower (a
  // CPU engine's round-1 single-stream prefills ran 10-35% slower than its third round's)
  if (warmup) {
    for (const [point, [want, output, conc]] of PROBE.entries())
      await bench(fitted(want, output, 16), output, conc, Math.max(2, conc), seed + 2_000_003 + point);
    process.stderr.write(`calibrate: warm-up pass done (${PROBE.length} runs, not fitted)\n`);
  }
  let segment = 0;
  for (let round = 1; round <= rounds; round++)
    for (const [point, [want, output, conc]] of PROBE.entries()) {
      const input = fitted(want, output, 16);
      const n = conc > 1 ? Math.max(requests * 2, conc * 2) : requests;
      const results = await bench(input, output, conc, n, seed + round * PROBE.length + point);
      // the rounds of one point are pooled by this tag (fit.ts)
      for (const r of results)
        out.push({
          ...r,
          calibrate_probe: `in=${input} out=${output} c=${conc}`,
          // a batch run's requests reach the engine as the API server hands them over, not at once: its
          // TTFT is fitted with that hand-over modelled
          ...(conc > 1 ? { calibrate_fit: "intake" } : {}),
        });
      process.stderr.write(
        `calibrate: probe ${input} prompt tokens × ${conc} at once: ${n} requests done (round ${round}/${rounds})\n`,
      );
      if (check === null) continue;
      // a segment of the held-out workload after every point, its prompts seeded apart from the probe's
      const c = check;
      const held = await bench(
        fitted(c.input, c.output, 1),
        c.output,
        c.concurrency,
        Math.max(requests, 2 * c.concurrency),
        seed + 1_000_003 + segment++,
      );
      for (const r of held)
        out.push({
          ...r,
          calibrate_probe: `check in=${c.input} out=${c.output} c=${c.concurrency}`,
          calibrate_check: true,
        });
    }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandFlags(argv, USAGE, FLAGS);
  if (!parsed) return 0;
  const f = parsed.flags;
  const engine = typeof f.engine === "string" ? f.engine.replace(/\/+$/, "") : null;
  const fromBench = typeof f["from-bench"] === "string" ? f["from-bench"] : null;
  if ((engine === null) === (fromBench === null))
    throw new CliError(`give --engine URL or --from-bench FILE\n${USAGE}`);
  const predictOnly = f.predict === true;
  if (predictOnly && fromBench === null) throw new CliError(`--predict replays --from-bench FILE\n${USAGE}`);
  if (!predictOnly && typeof f.out !== "string") throw new CliError(`--out FILE is required\n${USAGE}`);
  const format = String(f.format);
  if (format !== "text" && format !== "json") throw new CliError(`--format: text or json, got ${format}`);
  if (typeof f.profiles === "string") loadProfilesFile(f.profiles);
  const timeScale = Number(f["time-scale"]);
  if (!(timeScale > 0)) throw new CliError(`--time-scale: must be above 0, got ${timeScale}`);
  let modelId = typeof f.model === "string" ? f.model : null;
  // the engine's requests name a model it serves; the profile is of the weights behind that name
  let served: string | null = null;
  let context = Infinity;
  if (engine !== null) {
    const listed = await engineModel(engine);
    served = modelId !== null && listed.served.includes(modelId) ? modelId : listed.served[0]!;
    // prompts fit the engine's context (an engine started with a short --max-model-len refuses longer ones)
    context = listed.context ?? Infinity;
    modelId = modelToProfile(modelId ?? served, listed);
  }
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
  const check = typeof f.check === "string" ? parseCheck(f.check) : null;
  if (check !== null && engine === null)
    throw new CliError("--check runs a held-out workload on --engine (a --from-bench file brings its own)");
  let bodies: unknown[];
  if (fromBench !== null) {
    try {
      bodies = [JSON.parse(readFileSync(fromBench, "utf8"))];
    } catch (err) {
      throw new CliError(`--from-bench: cannot read ${fromBench}: ${(err as Error).message}`);
    }
  } else
    bodies = await probe(
      engine!,
      served!,
      context,
      Number(f.requests),
      Number(f.rounds),
      check,
      f.warmup === true,
      (m) => process.stderr.write(`calibrate: ${m}\n`),
    );
  if (engine !== null && typeof f["probe-out"] === "string")
    writeFileSync(f["probe-out"], JSON.stringify({ sweep: bodies }));
  let all: FitRun[];
  try {
    all = pooled(bodies.flatMap((b) => runsFromBench(b, timeScale)));
  } catch (err) {
    throw new CliError(`--from-bench: ${(err as Error).message}`);
  }
  // held-out runs are predicted, never fitted (--predict replays every run alike)
  const runs = predictOnly ? all : all.filter((r) => !r.check);
  const held = predictOnly ? [] : all.filter((r) => r.check);
  if (runs.length === 0) throw new CliError("--from-bench: nothing to fit (every run is a held-out one)");
  if (engine !== null && !runs.some((r) => r.source === "engine-request"))
    process.stderr.write(
      "calibrate: the engine returned no per-request timing (vLLM: start it with --enable-per-request-metrics); fitting its /metrics means, or the client's\n",
    );
  const intakeArg = Number(f["intake-ms"]) / 1000;
  if (!(intakeArg >= 0)) throw new CliError(`--intake-ms: 0 or more, got ${f["intake-ms"]}`);
  let intake = intakeArg;
  const table = (rows: FitResult["runs"], of: readonly FitRun[] = runs) =>
    rows.map((r, i) => ({
      source: of[i]!.source,
      statistic: of[i]!.statistic,
      requests: of[i]!.inputLens.length,
      ttft_ms: r.ttftMs,
      model_ttft_ms: r.predTtftMs,
      ttft_fitted: ttftMatched(of[i]!, intake > 0) && !of[i]!.check,
      ...(of[i]!.check ? { ttft_error: r.ttftErr, tpot_error: r.tpotErr } : {}),
      tpot_ms: r.tpotMs,
      model_tpot_ms: r.predTpotMs,
    }));
  if (predictOnly) {
    const p = predict(runs, model, base, Number(f.tp), intake);
    if (format === "json")
      console.log(JSON.stringify({ gpu: base.id, runs: table(p.rows), max_error: p.maxError }));
    else {
      console.log(`${base.id} on ${runs.length} run${runs.length === 1 ? "" : "s"} it was not fitted to:`);
      printRows(runs, p.rows);
      console.log(`model error: at most ${(p.maxError * 100).toFixed(1)}% on any run's figure`);
    }
    return 0;
  }
  const fit = fitEngine(runs, model, base, {
    tp: Number(f.tp),
    ...(typeof f.id === "string" ? { id: f.id } : {}),
  });
  writeFileSync(
    f.out as string,
    stringify(profileDocument(fit.gpu, isModelFolder(modelId) ? model : undefined)),
  );
  intake = fit.intakeS;
  const checked = held.length > 0 ? predict(held, model, fit.gpu, Number(f.tp), intake) : null;
  if (format === "json") {
    console.log(
      JSON.stringify({
        gpu: fit.gpu,
        intake_ms: fit.intakeS * 1000,
        runs: table(fit.runs),
        max_error: fit.maxError,
        ...(checked ? { held_out: table(checked.rows, held), held_out_max_error: checked.maxError } : {}),
      }),
    );
    return 0;
  }
  console.log(
    `calibrated ${fit.gpu.id}: ${base.id} × ${fit.flopsFactor.toFixed(3)} dense FLOP/s (${(fit.gpu.bf16Flops / 1e12).toFixed(1)} TFLOP/s), × ${fit.bandwidthFactor.toFixed(3)} HBM bandwidth (${(fit.gpu.hbmBandwidth / 1e12).toFixed(3)} TB/s), step overhead ${(fit.stepOverheadS * 1000).toFixed(2)} ms, ${(fit.seqOverheadS * 1000).toFixed(3)} ms a sequence, ${(fit.prefillSeqOverheadS * 1000).toFixed(3)} ms a prefilling sequence, prefill attention × ${fit.prefillAttentionCostFactor.toFixed(2)}${fit.intakeS > 0 ? `; the API server hands a request over in ${(fit.intakeS * 1000).toFixed(2)} ms (the replay's: --predict --intake-ms)` : ""} → ${f.out}`,
  );
  printRows(runs, fit.runs);
  console.log(`fit error: at most ${(fit.maxError * 100).toFixed(1)}% on any run's figure`);
  if (checked) {
    console.log(`held out (not fitted, run between the probe's points):`);
    printRows(held, checked.rows);
    console.log(`held-out error: at most ${(checked.maxError * 100).toFixed(1)}% on any figure`);
  }
  return 0;
}

/** the per-run table: measured and modelled TTFT and TPOT */
function printRows(runs: readonly FitRun[], rows: FitResult["runs"]): void {
  const pct = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x * 100).toFixed(1)}%`;
  console.log(
    "| run | source | requests | TTFT measured | TTFT model | error | TPOT measured | TPOT model | error |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  rows.forEach((r, i) =>
    console.log(
      `| ${i + 1} | ${runs[i]!.source} ${runs[i]!.statistic} | ${runs[i]!.inputLens.length} | ${r.ttftMs.toFixed(1)} ms | ${r.predTtftMs.toFixed(1)} ms | ${runs[i]!.fitTtft === false ? "not fitted" : pct(r.ttftErr)} | ${r.tpotMs.toFixed(2)} ms | ${r.predTpotMs.toFixed(2)} ms | ${pct(r.tpotErr)} |`,
    ),
  );
}
