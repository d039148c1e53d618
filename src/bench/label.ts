// A run's name when none is given, and the file names of its plots. Two runs told apart by their
// settings get different legends in plots and `compare` without anyone typing --label, and two runs
// writing into one --plot-dir never overwrite each other's files.
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import type { WorkloadFlags } from "../workload/index.js";
import type { BenchOptions } from "./run.js";

/** Short names of the workload flags a label shows when they were given. */
const SHORT: { [K in keyof WorkloadFlags]-?: string } = {
  inputLen: "in",
  outputLen: "out",
  rangeRatio: "range",
  numGroups: "groups",
  promptsPerGroup: "per-group",
  systemPromptLen: "system",
  questionLen: "question",
  prefixLen: "prefix",
  suffixLen: "suffix",
  numPrefixes: "prefixes",
  numUsers: "users",
  numRounds: "rounds",
  sharedSystemPrompt: "shared",
  userHistoryPrompt: "history",
  answerLen: "answer",
  initUserId: "first-user",
  datasetPath: "file",
  datasetShuffle: "shuffle",
  agenticPreset: "preset",
  agenticSessions: "sessions",
  agenticTurns: "turns",
  agenticStartTokens: "start",
  agenticSharedTokens: "shared",
  agenticGrowthTokens: "growth",
  agenticCapTokens: "cap",
  agenticPauseMedianS: "pause",
  agenticPauseSigma: "pause-sigma",
  agenticPauseMaxS: "pause-max",
  agenticForkProbability: "fork-p",
  agenticForkCount: "forks",
  agenticForkTurns: "fork-turns",
  replayPreset: "preset",
  replayConversations: "conversations",
  traceFile: "file",
  traceStartS: "start",
  traceDurationS: "window",
  traceSpeed: "speed",
  traceBlockTokens: "block",
  traceMaxOutput: "out-cap",
};

function qpsText(q: number): string {
  return Number.isFinite(q) ? String(q) : "inf";
}

/** e.g. `random in=512 c=16 @127.0.0.1:8080`: the workload, the flags given, the load, the server. */
export function defaultLabel(o: BenchOptions): string {
  const parts: string[] = [o.workload];
  for (const [k, short] of Object.entries(SHORT) as [keyof WorkloadFlags, string][]) {
    const v = o.workloadFlags[k];
    if (v === undefined) continue;
    if (k === "datasetShuffle") {
      if (v === false) parts.push("no-shuffle");
      continue;
    }
    parts.push(`${short}=${k === "datasetPath" || k === "traceFile" ? basename(String(v)) : String(v)}`);
  }
  if (o.qps.length > 1 || Number.isFinite(o.qps[0])) parts.push(`qps=${o.qps.map(qpsText).join(",")}`);
  if (o.concurrency !== null) parts.push(`c=${o.concurrency}`);
  if (o.extraBody.ignore_eos === true) parts.push("ignore-eos");
  if (o.seed !== 0) parts.push(`seed=${o.seed}`);
  const u = new URL(o.baseUrl);
  parts.push(`@${u.host}${u.pathname.replace(/\/+$/, "")}`);
  return parts.join(" ");
}

/** A label as a file-name stem: lower case, [a-z0-9.=,-] only, at most 80 characters. */
export function fileStem(label: string): string {
  const s = label
    .toLowerCase()
    .replace(/[^a-z0-9.=,-]+/g, "-")
    .replace(/-{2,}/g, "-")
    .replace(/^[-.]+|-+$/g, "")
    .slice(0, 80);
  return s || "run";
}

/**
 * Paths for a run's plots in `dir`: `<stem>.<kind>.svg`, with `-2`, `-3`, ... added to the stem when a
 * file of that run's name is already there, so a second run with the same settings keeps the first's.
 */
export function plotPaths<K extends string>(
  dir: string,
  label: string,
  kinds: readonly K[],
): Record<K, string> {
  const stem = fileStem(label);
  for (let n = 1; ; n++) {
    const s = n === 1 ? stem : `${stem}-${n}`;
    const paths = Object.fromEntries(kinds.map((k) => [k, join(dir, `${s}.${k}.svg`)])) as Record<K, string>;
    if (!Object.values<string>(paths).some((p) => existsSync(p))) return paths;
  }
}
