// `switchyard bench`: load generator and report; `switchyard bench compare A.json B.json`: A/B.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { CliError, parseFlags, type FlagValues } from "../config/args.js";
import { parseCommandFlags, withEnv } from "../config/command.js";
import { BENCH_FLAGS, COMPARE_FLAGS } from "./cli-options.js";
import { logger } from "../obs/log.js";
import { onShutdown } from "../obs/lifecycle.js";
import { compareRuns, compareTable, type CompareOptions } from "./compare.js";
import type { LoadRun } from "./load.js";
import { parseSlo } from "../workload/metrics.js";
import { recordsFromResult, summaryTable, toCsv, type ClientFigures } from "./report.js";
import { runBench, type BenchOptions } from "./run.js";
import { defaultLabel, plotPaths } from "./label.js";
import { latencyCdfSvg, sweepSvg } from "./svg.js";
import { WORKLOADS, type WorkloadName } from "../workload/index.js";
import { AGENTIC_PRESET_NAMES } from "../workload/agentic.js";
import { CONVERSATION_REPLAY_PRESET_NAMES } from "../workload/conversation-replay.js";

/** the bench's flags (exported for the tests that parse them as the command does) */
export const SPECS = BENCH_FLAGS.specs;

const USAGE = "usage: switchyard bench [options]\n       switchyard bench compare A.json B.json [options]";

function parseHeaders(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(":");
    if (i <= 0) throw new CliError(`--header: expected 'name: value', got '${h}'`);
    out[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return out;
}

function parseQps(text: string): number[] {
  const out = text.split(",").map((s) => {
    const t = s.trim().toLowerCase();
    if (t === "inf" || t === "infinity") return Infinity;
    const v = Number(t);
    if (!Number.isFinite(v) || v <= 0)
      throw new CliError(`--qps: expected positive numbers or inf, got '${s}'`);
    return v;
  });
  if (out.length === 0) throw new CliError("--qps: empty");
  return out;
}

function num(f: FlagValues, k: string): number | undefined {
  return typeof f[k] === "number" ? f[k] : undefined;
}

export function toOptions(f: FlagValues): BenchOptions {
  const workload = String(f.workload) as WorkloadName;
  if (!WORKLOADS.includes(workload))
    throw new CliError(`--workload: expected one of ${WORKLOADS.join(", ")}`);
  const preset = f["agentic-preset"];
  if (typeof preset === "string" && !(AGENTIC_PRESET_NAMES as string[]).includes(preset))
    throw new CliError(`--agentic-preset: expected one of ${AGENTIC_PRESET_NAMES.join(", ")}`);
  const replay = f["replay-preset"];
  if (typeof replay === "string" && !(CONVERSATION_REPLAY_PRESET_NAMES as string[]).includes(replay))
    throw new CliError(`--replay-preset: expected one of ${CONVERSATION_REPLAY_PRESET_NAMES.join(", ")}`);
  const endpoint = String(f.endpoint);
  if (!["auto", "chat", "completions"].includes(endpoint))
    throw new CliError("--endpoint: expected chat, completions or auto");
  const arrival = String(f.arrival);
  if (arrival !== "poisson" && arrival !== "constant")
    throw new CliError("--arrival: expected poisson or constant");
  let extra: Record<string, unknown> = {};
  if (typeof f["extra-body"] === "string") {
    try {
      extra = JSON.parse(f["extra-body"]) as Record<string, unknown>;
    } catch (err) {
      throw new CliError(`--extra-body: ${(err as Error).message}`);
    }
    if (!extra || typeof extra !== "object" || Array.isArray(extra))
      throw new CliError("--extra-body: expected a JSON object");
  }
  const body: Record<string, unknown> = { temperature: f.temperature };
  if (f["ignore-eos"]) body.ignore_eos = true;
  const sloText = (f.slo ?? f.goodput) as string | undefined;
  let slo = null;
  if (sloText !== undefined) {
    try {
      slo = parseSlo(sloText);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
  }
  const percentiles = String(f.percentiles)
    .split(",")
    .map((s) => Number(s.trim()));
  if (percentiles.some((p) => !(p > 0 && p < 100)))
    throw new CliError("--percentiles: expected numbers in (0, 100)");
  return {
    baseUrl: String(f["base-url"]),
    model: (f.model as string | undefined) ?? null,
    endpoint: endpoint as BenchOptions["endpoint"],
    apiKey: (f["api-key"] as string | undefined) ?? null,
    headers: parseHeaders(f.header as string[]),
    extraBody: { ...body, ...extra },
    workload,
    workloadFlags: {
      inputLen: num(f, "input-len"),
      outputLen: num(f, "output-len"),
      rangeRatio: num(f, "range-ratio"),
      numGroups: num(f, "num-groups"),
      promptsPerGroup: num(f, "prompts-per-group"),
      systemPromptLen: num(f, "system-prompt-len"),
      questionLen: num(f, "question-len"),
      prefixLen: num(f, "prefix-len"),
      suffixLen: num(f, "suffix-len"),
      numPrefixes: num(f, "num-prefixes"),
      numUsers: num(f, "num-users"),
      numRounds: num(f, "num-rounds"),
      sharedSystemPrompt: num(f, "shared-system-prompt"),
      userHistoryPrompt: num(f, "user-history-prompt"),
      answerLen: num(f, "answer-len"),
      initUserId: num(f, "init-user-id"),
      datasetPath: f["dataset-path"] as string | undefined,
      datasetShuffle: f["dataset-shuffle"] as boolean,
      agenticPreset: f["agentic-preset"] as string | undefined,
      agenticSessions: num(f, "agentic-sessions"),
      agenticTurns: num(f, "agentic-turns"),
      agenticStartTokens: num(f, "agentic-start-tokens"),
      agenticSharedTokens: num(f, "agentic-shared-tokens"),
      agenticGrowthTokens: num(f, "agentic-growth-tokens"),
      agenticCapTokens: num(f, "agentic-cap-tokens"),
      agenticPauseMedianS: num(f, "agentic-pause-median"),
      agenticPauseSigma: num(f, "agentic-pause-sigma"),
      agenticPauseMaxS: num(f, "agentic-pause-max"),
      agenticForkProbability: num(f, "agentic-fork-probability"),
      agenticForkCount: num(f, "agentic-fork-count"),
      agenticForkTurns: num(f, "agentic-fork-turns"),
      replayPreset: f["replay-preset"] as string | undefined,
      replayConversations: num(f, "replay-conversations"),
      traceFile: f["trace-file"] as string | undefined,
      traceStartS: num(f, "trace-start"),
      traceDurationS: num(f, "trace-duration"),
      traceSpeed: num(f, "trace-speed"),
      traceBlockTokens: num(f, "trace-block-tokens"),
      traceMaxOutput: num(f, "trace-max-output"),
    },
    qps: parseQps(String(f.qps)),
    arrival,
    concurrency: num(f, "concurrency") ?? null,
    numRequests: num(f, "num-requests") ?? null,
    durationS: num(f, "duration") ?? null,
    warmup: Number(f.warmup),
    seed: Number(f.seed),
    slo,
    percentiles,
    scrape: f["scrape-metrics"] === false ? null : (f.scrape as string[]),
    connections: num(f, "connections") ?? null,
    timeoutMs: Number(f["request-timeout"]) * 1000,
    calibrate: Boolean(f.calibrate),
    progress: Boolean(f.progress),
  };
}

/** bench options from bench's own flags (the probe runs of `switchyard calibrate`) */
export function benchOptionsFrom(argv: string[]): BenchOptions {
  return toOptions(withEnv(BENCH_FLAGS, parseFlags(argv, SPECS)).flags);
}

function writeOut(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

async function compareMain(argv: string[]): Promise<number> {
  const twoFiles = "compare needs two result files: A.json B.json";
  const parsed = parseCommandFlags(
    argv,
    "usage: switchyard bench compare A.json B.json [options]",
    COMPARE_FLAGS,
    {
      maxPositionals: 2,
      tooMany: () => twoFiles,
    },
  );
  if (!parsed) return 0;
  const { flags, positionals } = parsed;
  if (positionals.length !== 2) throw new CliError(twoFiles);
  const load = (p: string) => {
    let res: Record<string, unknown>;
    try {
      res = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
    } catch (err) {
      throw new CliError(`${p}: ${(err as Error).message}`);
    }
    const records = recordsFromResult(res);
    if (records.length === 0)
      throw new CliError(`${p}: no per-request samples (ttfts, e2els, ...) to compare`);
    const name = (res.config as { label?: string } | undefined)?.label ?? p;
    return { name, records, durationS: Number(res.duration) };
  };
  const a = load(positionals[0]!);
  const b = load(positionals[1]!);
  const o: CompareOptions = {
    iterations: Number(flags.iterations),
    confidence: Number(flags.confidence),
    minEffect: Number(flags["min-effect"]),
    seed: Number(flags.seed),
  };
  const rows = compareRuns(a, b, o);
  console.log(compareTable(a, b, rows, o));
  if (typeof flags.out === "string")
    writeOut(flags.out, JSON.stringify({ a: a.name, b: b.name, options: o, metrics: rows }, null, 2));
  if (typeof flags.plot === "string")
    writeOut(
      flags.plot,
      latencyCdfSvg(
        `${a.name} vs ${b.name}`,
        [a, b].map((r) => ({ name: r.name, records: r.records })),
      ),
    );
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === "compare") return compareMain(argv.slice(1));
  const parsed = parseCommandFlags(argv, USAGE, BENCH_FLAGS, {
    tooMany: (positionals) => `unexpected argument '${positionals[0]}' (see --help)`,
  });
  if (!parsed) return 0;
  const { flags } = parsed;
  const o = toOptions(flags);
  const log = logger("bench");
  let current: LoadRun | null = null;
  let interrupted = false;
  let finished: Promise<unknown> = Promise.resolve();
  // Ctrl-C stops starting requests; those in flight finish and the results so far are written.
  onShutdown(async () => {
    interrupted = true;
    current?.stop();
    await finished;
  });
  const work = runBench(o, {
    warn: (msg) => log.warn(msg),
    onRun: (r) => {
      current = r;
      if (interrupted) r.stop();
    },
  });
  const done = work.then((runs) => {
    const label = typeof flags.label === "string" ? flags.label : defaultLabel(o);
    for (const r of runs) r.result.config.label = label;
    const sweep = runs.length > 1;
    for (const r of runs) {
      if (sweep) console.log(`\nqps = ${String(r.result.request_rate)}`);
      console.log(
        summaryTable(r.fields, r.result.server, r.result.client as ClientFigures, r.result.resumed),
      );
    }
    if (typeof flags.out === "string") {
      const body = sweep ? { sweep: runs.map((r) => r.result) } : runs[0]!.result;
      writeOut(flags.out, JSON.stringify(body, null, 1));
    }
    if (typeof flags.csv === "string") {
      writeOut(
        flags.csv,
        sweep
          ? runs.map((r) => `# qps=${String(r.result.request_rate)}\n${toCsv(r.records)}`).join("")
          : toCsv(runs[0]!.records),
      );
    }
    if (typeof flags["plot-dir"] === "string") {
      const dir = flags["plot-dir"];
      mkdirSync(dir, { recursive: true });
      const paths = plotPaths(dir, label, sweep ? ["latency-cdf", "sweep"] : ["latency-cdf"]);
      writeOut(
        paths["latency-cdf"],
        latencyCdfSvg(
          `${label}: latency CDFs`,
          runs.map((r) => ({ name: `qps=${String(r.result.request_rate)}`, records: r.records })),
        ),
      );
      if (paths.sweep) {
        writeOut(
          paths.sweep,
          sweepSvg(
            `${label}: offered load sweep`,
            runs.map((r) => ({
              qps: typeof r.result.request_rate === "number" ? r.result.request_rate : NaN,
              output_throughput: Number(r.fields.output_throughput),
              request_throughput: Number(r.fields.request_throughput),
              mean_ttft_ms: Number(r.fields.mean_ttft_ms),
              p99_ttft_ms: Number(r.fields.p99_ttft_ms),
            })),
          ),
        );
      }
      log.info({ plots: Object.values(paths) }, "plots written");
    }
    const failed = runs.reduce((s, r) => s + Number(r.fields.failed), 0);
    const completed = runs.reduce((s, r) => s + Number(r.fields.completed), 0);
    return completed === 0 && failed > 0 ? 1 : 0;
  });
  finished = done.catch(() => undefined);
  try {
    return await done;
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}
