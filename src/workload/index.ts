// Builds a workload by name from resolved options. Each generator is pure; this only routes. A dataset
// file is read by the caller's `readText`, so the workload library itself does no I/O.
import type { TextShape } from "./text.js";
import {
  AGENTIC_DEFAULT_PRESET,
  AGENTIC_PRESET_NAMES,
  agenticOptions,
  agenticWorkload,
  type AgenticPreset,
} from "./agentic.js";
import {
  CONVERSATION_REPLAY_DEFAULT_PRESET,
  CONVERSATION_REPLAY_PRESET_NAMES,
  conversationReplayOptions,
  conversationReplayWorkload,
  type ConversationReplayPreset,
} from "./conversation-replay.js";
import { datasetWorkload, parseDataset } from "./dataset.js";
import { MULTI_ROUND_QA_DEFAULTS, multiRoundQaWorkload } from "./multi-round-qa.js";
import { PREFIX_REPETITION_DEFAULTS, prefixRepetitionWorkload } from "./prefix-repetition.js";
import { RANDOM_DEFAULTS, randomWorkload } from "./random.js";
import { SHARED_PREFIX_DEFAULTS, sharedPrefixWorkload } from "./shared-prefix.js";
import { parseTrace, TRACE_DEFAULTS, traceSummary, traceWorkload, type TraceOptions } from "./trace.js";
import type { Workload } from "./types.js";
import { InputFileError, InvalidArgumentError, InvalidConfigError } from "../errors/index.js";

export const WORKLOADS = [
  "random",
  "shared-prefix",
  "multi-round-qa",
  "prefix-repetition",
  "dataset",
  "agentic",
  "conversation-replay",
  "trace",
] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

/** Workload options as given on the command line; undefined means the workload's own default. */
export interface WorkloadFlags {
  inputLen?: number;
  outputLen?: number;
  rangeRatio?: number;
  numGroups?: number;
  promptsPerGroup?: number;
  systemPromptLen?: number;
  questionLen?: number;
  prefixLen?: number;
  suffixLen?: number;
  numPrefixes?: number;
  numUsers?: number;
  numRounds?: number;
  sharedSystemPrompt?: number;
  userHistoryPrompt?: number;
  answerLen?: number;
  initUserId?: number;
  datasetPath?: string;
  datasetShuffle?: boolean;
  /** agentic: the preset the knobs below override (default code-gen) */
  agenticPreset?: string;
  agenticSessions?: number;
  agenticTurns?: number;
  agenticStartTokens?: number;
  agenticSharedTokens?: number;
  agenticGrowthTokens?: number;
  agenticCapTokens?: number;
  agenticPauseMedianS?: number;
  agenticPauseSigma?: number;
  agenticPauseMaxS?: number;
  agenticForkProbability?: number;
  agenticForkCount?: number;
  agenticForkTurns?: number;
  /** conversation-replay: the preset (default llm-d-code-gen) and its conversations */
  replayPreset?: string;
  replayConversations?: number;
  /** trace: a Mooncake-format JSONL file (trace.ts) and its window, speed, block size and output cap */
  traceFile?: string;
  traceStartS?: number;
  traceDurationS?: number;
  traceSpeed?: number;
  traceBlockTokens?: number;
  traceMaxOutput?: number;
}

export function buildWorkload(
  name: WorkloadName,
  f: WorkloadFlags,
  seed: number,
  count: number,
  shape: TextShape,
  /** a file's text (the dataset workload's `datasetPath`); the other workloads read nothing */
  readText?: (path: string) => string,
): { workload: Workload; options: Record<string, unknown> } {
  switch (name) {
    case "random": {
      const o = { ...RANDOM_DEFAULTS, ...defined(f, ["inputLen", "outputLen", "rangeRatio"]), seed, count };
      return { workload: randomWorkload(o, shape), options: o };
    }
    case "shared-prefix": {
      const o = {
        ...SHARED_PREFIX_DEFAULTS,
        ...defined(f, ["numGroups", "promptsPerGroup", "systemPromptLen", "questionLen", "outputLen"]),
        seed,
      };
      return { workload: sharedPrefixWorkload(o, shape), options: o };
    }
    case "prefix-repetition": {
      const o = {
        ...PREFIX_REPETITION_DEFAULTS,
        ...defined(f, ["prefixLen", "suffixLen", "numPrefixes", "outputLen"]),
        seed,
        count,
      };
      return { workload: prefixRepetitionWorkload(o, shape), options: o };
    }
    case "multi-round-qa": {
      const o = {
        ...MULTI_ROUND_QA_DEFAULTS,
        ...defined(f, [
          "numUsers",
          "numRounds",
          "sharedSystemPrompt",
          "userHistoryPrompt",
          "questionLen",
          "answerLen",
          "initUserId",
        ]),
        seed,
      };
      return { workload: multiRoundQaWorkload(o, shape), options: o };
    }
    case "agentic": {
      const preset = (f.agenticPreset ?? AGENTIC_DEFAULT_PRESET) as AgenticPreset;
      if (!AGENTIC_PRESET_NAMES.includes(preset))
        throw new InvalidConfigError(`--agentic-preset: expected one of ${AGENTIC_PRESET_NAMES.join(", ")}`);
      const knobs = {
        sessions: f.agenticSessions,
        turns: f.agenticTurns,
        startTokens: f.agenticStartTokens,
        sharedTokens: f.agenticSharedTokens,
        growthTokens: f.agenticGrowthTokens,
        outputTokens: f.outputLen,
        capTokens: f.agenticCapTokens,
        rangeRatio: f.rangeRatio,
        pauseMedianS: f.agenticPauseMedianS,
        pauseSigma: f.agenticPauseSigma,
        pauseMaxS: f.agenticPauseMaxS,
        forkProbability: f.agenticForkProbability,
        forkCount: f.agenticForkCount,
        forkTurns: f.agenticForkTurns,
      };
      const over = Object.fromEntries(Object.entries(knobs).filter(([, v]) => v !== undefined));
      const o = agenticOptions(preset, seed, over);
      if (o.sharedTokens > o.startTokens)
        throw new InvalidConfigError(
          "--agentic-shared-tokens: the shared part cannot exceed --agentic-start-tokens",
        );
      return { workload: agenticWorkload(o, shape), options: { preset, ...o } };
    }
    case "conversation-replay": {
      const preset = (f.replayPreset ?? CONVERSATION_REPLAY_DEFAULT_PRESET) as ConversationReplayPreset;
      if (!CONVERSATION_REPLAY_PRESET_NAMES.includes(preset))
        throw new InvalidConfigError(
          `--replay-preset: expected one of ${CONVERSATION_REPLAY_PRESET_NAMES.join(", ")}`,
        );
      const o = conversationReplayOptions(
        preset,
        seed,
        f.replayConversations !== undefined ? { conversations: f.replayConversations } : {},
      );
      return { workload: conversationReplayWorkload(o, shape), options: { preset, ...o } };
    }
    case "trace": {
      if (!f.traceFile)
        throw new InvalidArgumentError("--workload trace needs --trace-file FILE (Mooncake JSONL)");
      if (!readText)
        throw new InvalidArgumentError("the trace workload needs its caller to read the file (readText)");
      const entries = parseTrace(readText(f.traceFile), f.traceFile);
      const o: TraceOptions = {
        startS: f.traceStartS ?? TRACE_DEFAULTS.startS,
        durationS: f.traceDurationS ?? TRACE_DEFAULTS.durationS,
        speed: f.traceSpeed ?? TRACE_DEFAULTS.speed,
        blockTokens: f.traceBlockTokens ?? TRACE_DEFAULTS.blockTokens,
        maxOutput: f.traceMaxOutput ?? TRACE_DEFAULTS.maxOutput,
        seed,
      };
      const workload = traceWorkload(entries, o, shape);
      if (workload.naturalRequests === 0)
        throw new InputFileError(
          `${f.traceFile}: no request in the window from ${o.startS} s for ${o.durationS} s`,
        );
      return {
        workload,
        options: {
          ...o,
          durationS: Number.isFinite(o.durationS) ? o.durationS : null,
          path: f.traceFile,
          window: traceSummary(entries, o),
        },
      };
    }
    case "dataset": {
      if (!f.datasetPath)
        throw new InvalidArgumentError(
          "--workload dataset needs --dataset-path FILE (JSONL or ShareGPT JSON)",
        );
      if (!readText)
        throw new InvalidArgumentError("the dataset workload needs its caller to read the file (readText)");
      const { entries, skipped } = parseDataset(readText(f.datasetPath));
      if (entries.length === 0)
        throw new InputFileError(`${f.datasetPath}: no usable entries (${skipped} skipped)`);
      const o = {
        seed,
        outputLen: f.outputLen ?? null,
        defaultOutputLen: 128,
        shuffle: f.datasetShuffle ?? true,
      };
      return {
        workload: datasetWorkload(entries, o),
        options: { ...o, path: f.datasetPath, entries: entries.length, skipped },
      };
    }
  }
}

function defined<K extends keyof WorkloadFlags>(
  f: WorkloadFlags,
  keys: K[],
): Partial<Pick<WorkloadFlags, K>> {
  const out: Partial<Pick<WorkloadFlags, K>> = {};
  for (const k of keys) if (f[k] !== undefined) out[k] = f[k];
  return out;
}
