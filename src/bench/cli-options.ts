// The options of `switchyard bench` and `switchyard bench compare`: one zod schema each, whose fields
// declare their flags (type, bounds, default, help); `cli.ts` reads them from here.
import { z } from "zod";
import { commandFlags } from "../config/command.js";
import { ROUTER_URL } from "../config/defaults.js";
import { flag } from "../config/schema-flags.js";
import { COMPARE_DEFAULTS } from "./compare.js";
import { WORKLOADS } from "../workload/index.js";
import { AGENTIC_PRESET_NAMES } from "../workload/agentic.js";

export const benchOptions = z.object({
  baseUrl: flag(z.string().default(ROUTER_URL), {
    flag: "base-url",
    help: "server root; the bench adds /v1/... (the default is where `npm start` serves the router)",
  }),
  model: flag(z.string().optional(), {
    flag: "model",
    help: "model name (default: the first one /v1/models lists)",
  }),
  workload: flag(z.string().default("random"), { flag: "workload", help: `one of ${WORKLOADS.join(", ")}` }),
  endpoint: flag(z.string().default("auto"), {
    flag: "endpoint",
    help: "chat | completions | auto (chat for multi-round-qa, agentic and multi-turn datasets, else completions)",
  }),
  apiKey: flag(z.string().optional(), {
    flag: "api-key",
    env: "OPENAI_API_KEY",
    help: "bearer token (default: $OPENAI_API_KEY)",
  }),
  header: flag(z.array(z.string()).default([]), {
    flag: "header",
    help: "extra request header 'name: value' (repeatable)",
  }),
  // load
  qps: flag(z.string().default("inf"), {
    flag: "qps",
    help: "offered requests/s; a comma list sweeps (e.g. 1,2,4,8)",
  }),
  arrival: flag(z.string().default("poisson"), {
    flag: "arrival",
    help: "poisson | constant gaps between arrivals",
  }),
  concurrency: flag(z.number().int().min(1).optional(), {
    flag: "concurrency",
    help: "sessions active at once (closed loop; for multi-round-qa: users; default: all users for multi-round-qa, all sessions for agentic, no cap otherwise)",
  }),
  numRequests: flag(z.number().int().min(1).optional(), {
    flag: "num-requests",
    help: "requests to measure (default: the workload's natural size, else 200; no limit with --duration)",
  }),
  duration: flag(z.number().min(0).optional(), {
    flag: "duration",
    help: "stop starting requests after this many seconds",
  }),
  warmup: flag(z.number().int().min(0).default(0), {
    flag: "warmup",
    help: "requests sent first and left out of the results",
  }),
  seed: flag(z.number().int().default(0), { flag: "seed", help: "seed for prompts, lengths and arrivals" }),
  // workloads
  inputLen: flag(z.number().int().min(1).optional(), {
    flag: "input-len",
    help: "random: prompt tokens (default 1024)",
  }),
  outputLen: flag(z.number().int().min(1).optional(), {
    flag: "output-len",
    help: "random/shared-prefix/prefix-repetition: max_tokens (default 128); dataset: overrides the file; agentic: each answer's max_tokens (the preset's)",
  }),
  rangeRatio: flag(z.number().min(0).max(1).optional(), {
    flag: "range-ratio",
    help: "random: lengths uniform in len·[1−r, 1+r] (default 0); agentic: of each turn's growth (the preset's)",
  }),
  numGroups: flag(z.number().int().min(1).optional(), {
    flag: "num-groups",
    help: "shared-prefix: groups (default 16)",
  }),
  promptsPerGroup: flag(z.number().int().min(1).optional(), {
    flag: "prompts-per-group",
    help: "shared-prefix: prompts per group (default 8)",
  }),
  systemPromptLen: flag(z.number().int().min(0).optional(), {
    flag: "system-prompt-len",
    help: "shared-prefix: shared prompt tokens (default 1024)",
  }),
  questionLen: flag(z.number().int().min(1).optional(), {
    flag: "question-len",
    help: "shared-prefix: 128; multi-round-qa: 20 (question tokens)",
  }),
  prefixLen: flag(z.number().int().min(0).optional(), {
    flag: "prefix-len",
    help: "prefix-repetition: prefix tokens (default 256)",
  }),
  suffixLen: flag(z.number().int().min(1).optional(), {
    flag: "suffix-len",
    help: "prefix-repetition: suffix tokens (default 256)",
  }),
  numPrefixes: flag(z.number().int().min(1).optional(), {
    flag: "num-prefixes",
    help: "prefix-repetition: distinct prefixes (default 10)",
  }),
  numUsers: flag(z.number().int().min(1).optional(), {
    flag: "num-users",
    help: "multi-round-qa: users (default 10)",
  }),
  numRounds: flag(z.number().int().min(1).optional(), {
    flag: "num-rounds",
    help: "multi-round-qa: questions per user (default 5)",
  }),
  sharedSystemPrompt: flag(z.number().int().min(0).optional(), {
    flag: "shared-system-prompt",
    help: "multi-round-qa: tokens every user shares (default 1000)",
  }),
  userHistoryPrompt: flag(z.number().int().min(0).optional(), {
    flag: "user-history-prompt",
    help: "multi-round-qa: tokens of each user's own history (default 2000)",
  }),
  answerLen: flag(z.number().int().min(1).optional(), {
    flag: "answer-len",
    help: "multi-round-qa: max_tokens of each answer (default 100)",
  }),
  initUserId: flag(z.number().int().min(0).optional(), {
    flag: "init-user-id",
    help: "multi-round-qa: first user number (default 0)",
  }),
  datasetPath: flag(z.string().optional(), {
    flag: "dataset-path",
    help: "dataset: JSONL ({prompt} or {messages}) or ShareGPT JSON file",
  }),
  datasetShuffle: flag(z.boolean().default(true), {
    flag: "dataset-shuffle",
    negatable: true,
    help: "dataset: shuffle entries (seeded)",
  }),
  agenticPreset: flag(z.string().optional(), {
    flag: "agentic-preset",
    help: `agentic: ${AGENTIC_PRESET_NAMES.join(" | ")} (default code-gen); the agentic-* flags override its knobs`,
  }),
  agenticSessions: flag(z.number().int().min(1).optional(), {
    flag: "agentic-sessions",
    help: "agentic: agent sessions (code-gen 64, b2b 256)",
  }),
  agenticTurns: flag(z.number().int().min(1).optional(), {
    flag: "agentic-turns",
    help: "agentic: turns per session at most (12, 3)",
  }),
  agenticStartTokens: flag(z.number().int().min(1).optional(), {
    flag: "agentic-start-tokens",
    help: "agentic: tokens of the context the first turn builds on (50000, 5000)",
  }),
  agenticSharedTokens: flag(z.number().int().min(0).optional(), {
    flag: "agentic-shared-tokens",
    help: "agentic: of the start, tokens every session shares: system prompt and tools (10000, 2000)",
  }),
  agenticGrowthTokens: flag(z.number().int().min(1).optional(), {
    flag: "agentic-growth-tokens",
    help: "agentic: tokens each turn appends, the tool's output (3000, 600)",
  }),
  agenticCapTokens: flag(z.number().int().min(1).optional(), {
    flag: "agentic-cap-tokens",
    help: "agentic: a session ends before its context would pass this (72000, 9000)",
  }),
  agenticPauseMedian: flag(z.number().min(0).optional(), {
    flag: "agentic-pause-median",
    help: "agentic: tool pause before each later turn, log-normal median in seconds (8, 2); 0 = none",
  }),
  agenticPauseSigma: flag(z.number().min(0).optional(), {
    flag: "agentic-pause-sigma",
    help: "agentic: spread of the pause's logarithm (1, 0.75)",
  }),
  agenticPauseMax: flag(z.number().min(0).optional(), {
    flag: "agentic-pause-max",
    help: "agentic: longest pause in seconds (120, 30)",
  }),
  agenticForkProbability: flag(z.number().min(0).max(1).optional(), {
    flag: "agentic-fork-probability",
    help: "agentic: chance that an answered turn spawns sub-agents (0.1, 0)",
  }),
  agenticForkCount: flag(z.number().int().min(0).optional(), {
    flag: "agentic-fork-count",
    help: "agentic: sub-agents per fork, run in parallel (2, 0)",
  }),
  agenticForkTurns: flag(z.number().int().min(0).optional(), {
    flag: "agentic-fork-turns",
    help: "agentic: turns of each sub-agent (3, 0)",
  }),
  replayPreset: flag(z.string().optional(), {
    flag: "replay-preset",
    help: "conversation-replay: llm-d-code-gen (default; llm-d's published code-generation conversations)",
  }),
  replayConversations: flag(z.number().int().min(1).optional(), {
    flag: "replay-conversations",
    help: "conversation-replay: conversations (the preset's 60); with --concurrency N, N in flight",
  }),
  traceFile: flag(z.string().optional(), {
    flag: "trace-file",
    help: "trace: a Mooncake-format JSONL trace (timestamp ms, input_length, output_length, hash_ids), replayed at its own times",
  }),
  traceStart: flag(z.number().min(0).optional(), {
    flag: "trace-start",
    help: "trace: window start, seconds into the trace (default 0)",
  }),
  traceDuration: flag(z.number().min(0.001).optional(), {
    flag: "trace-duration",
    help: "trace: window length in trace seconds (default: to the end)",
  }),
  traceSpeed: flag(z.number().min(0.001).optional(), {
    flag: "trace-speed",
    help: "trace: replay speed factor (default 1: the trace's rate)",
  }),
  traceBlockTokens: flag(z.number().int().min(1).optional(), {
    flag: "trace-block-tokens",
    help: "trace: tokens per hash block (default 512, the trace's; e.g. 64 for CPU-sized runs)",
  }),
  traceMaxOutput: flag(z.number().int().min(1).optional(), {
    flag: "trace-max-output",
    help: "trace: max_tokens at most (default: the trace's output_length)",
  }),
  // request shape
  temperature: flag(z.number().min(0).default(0), {
    flag: "temperature",
    help: "sampling temperature sent with every request",
  }),
  ignoreEos: flag(z.boolean().default(false), {
    flag: "ignore-eos",
    help: "send ignore_eos (vLLM) so outputs run to max_tokens",
  }),
  extraBody: flag(z.string().optional(), {
    flag: "extra-body",
    help: "JSON object merged into every request body",
  }),
  requestTimeout: flag(z.number().min(0.001).default(600), {
    flag: "request-timeout",
    help: "seconds to wait for headers and between chunks",
  }),
  connections: flag(z.number().int().min(1).optional(), {
    flag: "connections",
    help: "HTTP connections (default: the concurrency cap, else 1024)",
  }),
  calibrate: flag(z.boolean().default(true), {
    flag: "calibrate",
    negatable: true,
    help: "measure tokens per word with the server's /tokenize",
  }),
  // metrics and output
  slo: flag(z.string().optional(), {
    flag: "slo",
    help: "goodput bounds in ms, e.g. ttft:500,tpot:50,e2el:5000 (alias --goodput)",
  }),
  goodput: flag(z.string().optional(), { flag: "goodput", help: "same as --slo, vllm bench's name" }),
  percentiles: flag(z.string().default("90,95,99"), {
    flag: "percentiles",
    help: "latency percentiles to report",
  }),
  scrape: flag(z.array(z.string()).default([]), {
    flag: "scrape",
    help: "Prometheus /metrics URL to scrape before and after, summed (repeatable; default: BASE/metrics, and through a router its engines' hit rates from BASE/engines)",
  }),
  scrapeMetrics: flag(z.boolean().default(true), {
    flag: "scrape-metrics",
    negatable: true,
    help: "read server figures from /metrics",
  }),
  out: flag(z.string().optional(), { flag: "out", help: "write JSON results here" }),
  csv: flag(z.string().optional(), { flag: "csv", help: "write per-request CSV here" }),
  plotDir: flag(z.string().optional(), {
    flag: "plot-dir",
    help: "write SVG plots (latency CDFs; sweep curves) into this folder",
  }),
  label: flag(z.string().optional(), {
    flag: "label",
    help: "name of this run in plots, compare and plot file names (default: from the run's settings)",
  }),
  progress: flag(z.boolean().default(true), {
    flag: "progress",
    negatable: true,
    help: "progress on stderr",
  }),
});

export const compareOptions = z.object({
  iterations: flag(z.number().int().min(50).default(COMPARE_DEFAULTS.iterations), {
    flag: "iterations",
    help: "bootstrap resamples",
  }),
  confidence: flag(z.number().min(0.5).max(0.999).default(COMPARE_DEFAULTS.confidence), {
    flag: "confidence",
    help: "confidence level",
  }),
  minEffect: flag(z.number().min(0).default(COMPARE_DEFAULTS.minEffect), {
    flag: "min-effect",
    help: "smallest relative change called a difference (0.02 = 2%)",
  }),
  seed: flag(z.number().int().default(0), { flag: "seed", help: "bootstrap seed" }),
  out: flag(z.string().optional(), { flag: "out", help: "write the comparison as JSON here" }),
  plot: flag(z.string().optional(), {
    flag: "plot",
    help: "write overlaid latency CDFs of A and B as SVG here",
  }),
});

/** the flags of `switchyard bench`, read once from its schema */
export const BENCH_FLAGS = commandFlags(benchOptions);
/** the flags of `switchyard bench compare` */
export const COMPARE_FLAGS = commandFlags(compareOptions);
