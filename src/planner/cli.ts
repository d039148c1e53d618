// `switchyard plan --scenario file.yaml [--format md|json] [--emit-values values.yaml] [--emit-rules rules.yaml]`
// Exit 0 when a plan is produced (refused options are listed in it); 2 when planning is refused or the
// scenario is invalid, with the reasons printed.
import { writeFileSync } from "node:fs";
import { CliError, parseCommand, type FlagSpecs } from "../config/args.js";
import { loadScenario } from "../fleet/cli.js";
import { helmValues, prometheusRule, toYaml } from "./emit.js";
import { planMarkdown } from "./format.js";
import { makePlan, SWEEP_SCALES } from "./plan.js";

const specs: FlagSpecs = {
  scenario: { type: "string", help: "scenario YAML (docs/planner.md)" },
  format: { type: "string", default: "md", choices: ["md", "json"], help: "md | json" },
  "emit-values": { type: "string", help: "write Helm values for deploy/helm/switchyard to this file" },
  "emit-rules": {
    type: "string",
    help: "write a PrometheusRule (92% sustained KV alert, 24 h P99 gate) to this file",
  },
  sweep: {
    type: "boolean",
    default: true,
    negatable: true,
    help: "run the break-even KV sweep (--no-sweep skips it)",
  },
};

const USAGE =
  "usage: switchyard plan --scenario FILE [--format md|json] [--emit-values values.yaml] [--emit-rules rules.yaml] [--no-sweep]";

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, USAGE, specs);
  if (!parsed) return 0;
  const { flags } = parsed;
  if (typeof flags.scenario !== "string") throw new CliError(`--scenario FILE is required\n${USAGE}`);
  const format = flags.format as string;
  const r = loadScenario(flags.scenario);
  const outcome = makePlan(r, { sweep: flags.sweep ? SWEEP_SCALES : [] });
  if (!outcome.ok) {
    if (format === "json")
      console.log(JSON.stringify({ planned: false, refusals: outcome.refusals }, null, 2));
    for (const f of outcome.refusals) console.error(`switchyard plan: refused (${f.rule}): ${f.reason}`);
    return 2;
  }
  const plan = outcome.plan;
  if (typeof flags["emit-values"] === "string")
    writeFileSync(flags["emit-values"], toYaml(helmValues(plan, r)));
  if (typeof flags["emit-rules"] === "string")
    writeFileSync(flags["emit-rules"], toYaml(prometheusRule(plan)));
  console.log(format === "json" ? JSON.stringify({ planned: true, ...plan }, null, 2) : planMarkdown(plan));
  return 0;
}
