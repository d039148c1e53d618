// `switchyard bench`: load generator and report; `switchyard bench compare A.json B.json`: A/B.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import {
  CliError,
  helpText,
  parseFlags,
  wantsHelp,
  type FlagSpecs,
  type FlagValues,
} from "../config/args.js";
import { ROUTER_URL } from "../config/defaults.js";
import { logger } from "../obs/log.js";
import { onShutdown } from "../obs/lifecycle.js";
import { COMPARE_DEFAULTS, compareRuns, compareTable, type CompareOptions } from "./compare.js";
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
export const SPECS: FlagSpecs = {
  "base-url": {
    type: "string",
    default: ROUTER_URL,
    help: "server root; the bench adds /v1/... (the default is where `npm start` serves the router)",
  },
  model: { type: "string", help: "model name (default: the first one /v1/models lists)" },
  workload: { type: "string", default: "random", help: `one of ${WORKLOADS.join(", ")}` },
  endpoint: {
    type: "string",
    default: "auto",
    help: "chat | completions | auto (chat for multi-round-qa, agentic and multi-turn datasets, else completions)",
  },
  "api-key": { type: "string", help: "bearer token (default: $OPENAI_API_KEY)" },
  header: { type: "list", help: "extra request header 'name: value' (repeatable)" },
  // load
  qps: { type: "string", default: "inf", help: "offered requests/s; a comma list sweeps (e.g. 1,2,4,8)" },
  arrival: { type: "string", default: "poisson", help: "poisson | constant gaps between arrivals" },
  concurrency: {
    type: "int",
    min: 1,
    help: "sessions active at once (closed loop; for multi-round-qa: users; default: all users for multi-round-qa, all sessions for agentic, no cap otherwise)",
  },
  "num-requests": {
    type: "int",
    min: 1,
    help: "requests to measure (default: the workload's natural size, else 200; no limit with --duration)",
  },
  duration: { type: "number", min: 0, help: "stop starting requests after this many seconds" },
  warmup: { type: "int", default: 0, min: 0, help: "requests sent first and left out of the results" },
  seed: { type: "int", default: 0, help: "seed for prompts, lengths and arrivals" },
  // workloads
  "input-len": { type: "int", min: 1, help: "random: prompt tokens (default 1024)" },
  "output-len": {
    type: "int",
    min: 1,
    help: "random/shared-prefix/prefix-repetition: max_tokens (default 128); dataset: overrides the file; agentic: each answer's max_tokens (the preset's)",
  },
  "range-ratio": {
    type: "number",
    min: 0,
    max: 1,
    help: "random: lengths uniform in len·[1−r, 1+r] (default 0); agentic: of each turn's growth (the preset's)",
  },
  "num-groups": { type: "int", min: 1, help: "shared-prefix: groups (default 16)" },
  "prompts-per-group": { type: "int", min: 1, help: "shared-prefix: prompts per group (default 8)" },
  "system-prompt-len": { type: "int", min: 0, help: "shared-prefix: shared prompt tokens (default 1024)" },
  "question-len": { type: "int", min: 1, help: "shared-prefix: 128; multi-round-qa: 20 (question tokens)" },
  "prefix-len": { type: "int", min: 0, help: "prefix-repetition: prefix tokens (default 256)" },
  "suffix-len": { type: "int", min: 1, help: "prefix-repetition: suffix tokens (default 256)" },
  "num-prefixes": { type: "int", min: 1, help: "prefix-repetition: distinct prefixes (default 10)" },
  "num-users": { type: "int", min: 1, help: "multi-round-qa: users (default 10)" },
  "num-rounds": { type: "int", min: 1, help: "multi-round-qa: questions per user (default 5)" },
  "shared-system-prompt": {
    type: "int",
    min: 0,
    help: "multi-round-qa: tokens every user shares (default 1000)",
  },
  "user-history-prompt": {
    type: "int",
    min: 0,
    help: "multi-round-qa: tokens of each user's own history (default 2000)",
  },
  "answer-len": { type: "int", min: 1, help: "multi-round-qa: max_tokens of each answer (default 100)" },
  "init-user-id": { type: "int", min: 0, help: "multi-round-qa: first user number (default 0)" },
  "dataset-path": { type: "string", help: "dataset: JSONL ({prompt} or {messages}) or ShareGPT JSON file" },
  "dataset-shuffle": {
    type: "boolean",
    default: true,
    negatable: true,
    help: "dataset: shuffle entries (seeded)",
  },
  "agentic-preset": {
    type: "string",
    help: `agentic: ${AGENTIC_PRESET_NAMES.join(" | ")} (default code-gen); the agentic-* flags override its knobs`,
  },
  "agentic-sessions": { type: "int", min: 1, help: "agentic: agent sessions (code-gen 64, b2b 256)" },
  "agentic-turns": { type: "int", min: 1, help: "agentic: turns per session at most (12, 3)" },
  "agentic-start-tokens": {
    type: "int",
    min: 1,
    help: "agentic: tokens of the context the first turn builds on (50000, 5000)",
  },
  "agentic-shared-tokens": {
    type: "int",
    min: 0,
    help: "agentic: of the start, tokens every session shares: system prompt and tools (10000, 2000)",
  },
  "agentic-growth-tokens": {
    type: "int",
    min: 1,
    help: "agentic: tokens each turn appends, the tool's output (3000, 600)",
  },
  "agentic-cap-tokens": {
    type: "int",
    min: 1,
    help: "agentic: a session ends before its context would pass this (72000, 9000)",
  },
  "agentic-pause-median": {
    type: "number",
    min: 0,
    help: "agentic: tool pause before each later turn, log-normal median in seconds (8, 2); 0 = none",
  },
  "agentic-pause-sigma": {
    type: "number",
    min: 0,
    help: "agentic: spread of the pause's logarithm (1, 0.75)",
  },
  "agentic-pause-max": { type: "number", min: 0, help: "agentic: longest pause in seconds (120, 30)" },
  "agentic-fork-probability": {
    type: "number",
    min: 0,
    max: 1,
    help: "agentic: chance that an answered turn spawns sub-agents (0.1, 0)",
  },
  "agentic-fork-count": { type: "int", min: 0, help: "agentic: sub-agents per fork, run in parallel (2, 0)" },
  "agentic-fork-turns": { type: "int", min: 0, help: "agentic: turns of each sub-agent (3, 0)" },
  "replay-preset": {
    type: "string",
    help: "conversation-replay: llm-d-code-gen (default; llm-d's published code-generation conversations)",
  },
  "replay-conversations": {
    type: "int",
    min: 1,
    help: "conversation-replay: conversations (the preset's 60); with --concurrency N, N in flight",
  },
  "trace-file": {
    type: "string",
    help: "trace: a Mooncake-format JSONL trace (timestamp ms, input_length, output_length, hash_ids), replayed at its own times",
  },
  "trace-start": { type: "number", min: 0, help: "trace: window start, seconds into the trace (default 0)" },
  "trace-duration": {
    type: "number",
    min: 0.001,
    help: "trace: window length in trace seconds (default: to the end)",
  },
  "trace-speed": {
    type: "number",
    min: 0.001,
    help: "trace: replay speed factor (default 1: the trace's rate)",
  },
  "trace-block-tokens": {
    type: "int",
    min: 1,
    help: "trace: tokens per hash block (default 512, the trace's; e.g. 64 for CPU-sized runs)",
  },
  "trace-max-output": {
    type: "int",
    min: 1,
    help: "trace: max_tokens at most (default: the trace's output_length)",
  },
  // request shape
  temperature: { type: "number", default: 0, min: 0, help: "sampling temperature sent with every request" },
  "ignore-eos": {
    type: "boolean",
    default: false,
    help: "send ignore_eos (vLLM) so outputs run to max_tokens",
  },
  "extra-body": { type: "string", help: "JSON object merged into every request body" },
  "request-timeout": {
    type: "number",
    default: 600,
    min: 0.001,
    help: "seconds to wait for headers and between chunks",
  },
  connections: { type: "int", min: 1, help: "HTTP connections (default: the concurrency cap, else 1024)" },
  calibrate: {
    type: "boolean",
    default: true,
    negatable: true,
    help: "measure tokens per word with the server's /tokenize",
  },
  // metrics and output
  slo: { type: "string", help: "goodput bounds in ms, e.g. ttft:500,tpot:50,e2el:5000 (alias --goodput)" },
  goodput: { type: "string", help: "same as --slo, vllm bench's name" },
  percentiles: { type: "string", default: "90,95,99", help: "latency percentiles to report" },
  scrape: {
    type: "list",
    help: "Prometheus /metrics URL to scrape before and after, summed (repeatable; default: BASE/metrics, and through a router its engines' hit rates from BASE/engines)",
  },
  "scrape-metrics": {
    type: "boolean",
    default: true,
    negatable: true,
    help: "read server figures from /metrics",
  },
  out: { type: "string", help: "write JSON results here" },
  csv: { type: "string", help: "write per-request CSV here" },
  "plot-dir": { type: "string", help: "write SVG plots (latency CDFs; sweep curves) into this folder" },
  label: {
    type: "string",
    help: "name of this run in plots, compare and plot file names (default: from the run's settings)",
  },
  progress: { type: "boolean", default: true, negatable: true, help: "progress on stderr" },
};

const COMPARE_SPECS: FlagSpecs = {
  iterations: { type: "int", default: COMPARE_DEFAULTS.iterations, min: 50, help: "bootstrap resamples" },
  confidence: {
    type: "number",
    default: COMPARE_DEFAULTS.confidence,
    min: 0.5,
    max: 0.999,
    help: "confidence level",
  },
  "min-effect": {
    type: "number",
    default: COMPARE_DEFAULTS.minEffect,
    min: 0,
    help: "smallest relative change called a difference (0.02 = 2%)",
  },
  seed: { type: "int", default: 0, help: "bootstrap seed" },
  out: { type: "string", help: "write the comparison as JSON here" },
  plot: { type: "string", help: "write overlaid latency CDFs of A and B as SVG here" },
};

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
    apiKey: (f["api-key"] as string | undefined) ?? process.env.OPENAI_API_KEY ?? null,
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
  return toOptions(parseFlags(argv, SPECS).flags);
}

function writeOut(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

async function compareMain(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(helpText("usage: switchyard bench compare A.json B.json [options]", COMPARE_SPECS));
    return 0;
  }
  const { flags, positionals } = parseFlags(argv, COMPARE_SPECS);
  if (positionals.length !== 2) throw new CliError("compare needs two result files: A.json B.json");
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
  if (wantsHelp(argv)) {
    console.log(helpText(USAGE, SPECS));
    return 0;
  }
  const { flags, positionals } = parseFlags(argv, SPECS);
  if (positionals.length) throw new CliError(`unexpected argument '${positionals[0]}' (see --help)`);
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
