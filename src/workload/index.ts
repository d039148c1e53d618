// Builds a workload by name from resolved options. Each generator is pure; this only routes. A dataset
// file is read by the caller's `readText`, so the workload library itself does no I/O.
import type { TextShape } from "./text.js";
import { datasetWorkload, parseDataset } from "./dataset.js";
import { MULTI_ROUND_QA_DEFAULTS, multiRoundQaWorkload } from "./multi-round-qa.js";
import { PREFIX_REPETITION_DEFAULTS, prefixRepetitionWorkload } from "./prefix-repetition.js";
import { RANDOM_DEFAULTS, randomWorkload } from "./random.js";
import { SHARED_PREFIX_DEFAULTS, sharedPrefixWorkload } from "./shared-prefix.js";
import type { Workload } from "./types.js";

export const WORKLOADS = [
  "random",
  "shared-prefix",
  "multi-round-qa",
  "prefix-repetition",
  "dataset",
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
    case "dataset": {
      if (!f.datasetPath)
        throw new Error("--workload dataset needs --dataset-path FILE (JSONL or ShareGPT JSON)");
      if (!readText) throw new Error("the dataset workload needs its caller to read the file (readText)");
      const { entries, skipped } = parseDataset(readText(f.datasetPath));
      if (entries.length === 0) throw new Error(`${f.datasetPath}: no usable entries (${skipped} skipped)`);
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
