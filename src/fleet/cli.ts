// `switchyard simulate --scenario file.yaml`: one scenario on N engines in virtual time.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { z } from "zod";
import { CliError } from "../config/args.js";
import { commandFlags, parseCommandFlags } from "../config/command.js";
import { flag } from "../config/schema-flags.js";
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

/** The command's options: each field declares its flag, type, bounds, default and help. */
const simulateOptions = z.object({
  scenario: flag(z.string().optional(), {
    flag: "scenario",
    help: "scenario YAML (docs/fleet-simulator.md)",
  }),
  offload: flag(z.string().optional(), {
    flag: "offload",
    help: "override simulation.offload.mode: none | native | lmcache",
  }),
  requests: flag(z.number().int().min(1).optional(), {
    flag: "requests",
    help: "override simulation.requests",
  }),
  seed: flag(z.number().int().min(0).optional(), { flag: "seed", help: "override simulation.seed" }),
  format: flag(z.enum(["text", "json"]).default("text"), { flag: "format", help: "text | json" }),
  output: flag(z.string().optional(), { flag: "output", help: "also write the JSON report to this file" }),
  profiles: flag(z.string().optional(), {
    flag: "profiles",
    help: "YAML with extra gpus:/models: profiles (a `switchyard calibrate` result) the scenario may name",
  }),
});
const FLAGS = commandFlags(simulateOptions);

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
  const parsed = parseCommandFlags(argv, USAGE, FLAGS);
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
