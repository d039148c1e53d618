// `switchyard simulate --scenario file.yaml`: one scenario on N engines in virtual time.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { CliError, parseCommand, type FlagSpecs } from "../config/args.js";
import { loadProfilesFile } from "../models/index.js";
import {
  OFFLOAD_MODES,
  parseScenarioText,
  ScenarioError,
  withTrace,
  type ResolvedScenario,
} from "./scenario.js";
import type { OffloadMode } from "./build.js";
import { formatReport } from "./report.js";
import { runScenario } from "./run.js";

const specs: FlagSpecs = {
  scenario: { type: "string", help: "scenario YAML (docs/fleet-simulator.md)" },
  offload: {
    type: "string",
    help: "override simulation.offload.mode: none | native | lmcache",
  },
  requests: { type: "int", min: 1, help: "override simulation.requests" },
  seed: { type: "int", min: 0, help: "override simulation.seed" },
  format: { type: "string", default: "text", choices: ["text", "json"], help: "text | json" },
  output: { type: "string", help: "also write the JSON report to this file" },
  profiles: {
    type: "string",
    help: "YAML with extra gpus:/models: profiles (a `switchyard calibrate` result) the scenario may name",
  },
};

const USAGE =
  "usage: switchyard simulate --scenario FILE [--offload none|native|lmcache] [--requests N] [--seed S] [--format text|json] [--output FILE] [--profiles FILE]";

export function loadScenario(path: string): ResolvedScenario {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CliError(`--scenario: cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    // a trace file is named relative to the scenario's folder
    return withTrace(parseScenarioText(text, path), (p) => readFileSync(resolve(dirname(path), p), "utf8"));
  } catch (err) {
    if (err instanceof ScenarioError)
      throw new CliError(`invalid scenario ${path}:\n  ${err.problems.join("\n  ")}`);
    throw err;
  }
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, USAGE, specs);
  if (!parsed) return 0;
  const { flags } = parsed;
  if (typeof flags.scenario !== "string") throw new CliError(`--scenario FILE is required\n${USAGE}`);
  const format = flags.format as string;
  if (typeof flags.profiles === "string") {
    try {
      loadProfilesFile(flags.profiles);
    } catch (err) {
      throw new CliError(`--profiles: ${(err as Error).message}`);
    }
  }
  const r = loadScenario(flags.scenario);
  if (typeof flags.seed === "number") r.scenario.simulation.seed = flags.seed;
  let mode = r.scenario.simulation.offload.mode as OffloadMode;
  if (flags.offload !== undefined) {
    if (!(OFFLOAD_MODES as readonly string[]).includes(flags.offload as string))
      throw new CliError(`--offload: expected none, native or lmcache, got '${String(flags.offload)}'`);
    mode = flags.offload as OffloadMode;
  }
  const rep = runScenario(r, mode, typeof flags.requests === "number" ? { requests: flags.requests } : {});
  const json = JSON.stringify(rep, null, 2);
  if (typeof flags.output === "string") writeFileSync(flags.output, json + "\n");
  console.log(format === "json" ? json : formatReport(rep));
  return 0;
}
