// `switchyard plan --scenario file.yaml [--format md|json] [--emit-values values.yaml] [--emit-rules rules.yaml]
// [--emit-prometheus-rules file] [--gpu-price h100=2.5,...] [--jobs N] [--no-sweep]`
// Exit 0 when a plan is produced (refused options and a missed SLO are stated in it); 2 when planning is
// refused or the scenario is invalid or infeasible, with a one-line reason naming the field.
import { readFileSync, writeFileSync } from "node:fs";
import { CliError, parseCommand, type FlagSpecs } from "../config/args.js";
import { GPUS } from "../models/index.js";
import { helmValues, prometheusRule, prometheusRuleFile, toYaml } from "./emit.js";
import { planMarkdown } from "./format.js";
import { parsePlanScenario, PlanInputError, withFleet } from "./input.js";
import { makePlan, SWEEP_SCALES } from "./plan.js";
import { SimPool } from "./pool.js";
import { parsePriceFlag, PriceError, priceTable } from "./prices.js";

const specs: FlagSpecs = {
  scenario: { type: "string", help: "scenario YAML (docs/planner.md)" },
  format: { type: "string", default: "md", choices: ["md", "json"], help: "md | json" },
  "emit-values": { type: "string", help: "write Helm values for deploy/helm/switchyard to this file" },
  "emit-rules": {
    type: "string",
    help: "write a PrometheusRule (92% sustained KV alert, 24 h P99 gate, SLO alerts) to this file",
  },
  "emit-prometheus-rules": {
    type: "string",
    help: "write the same rules as a plain Prometheus rule file (rule_files:, promtool) to this file",
  },
  "gpu-price": {
    type: "string",
    help: "USD per GPU-hour over the default table, e.g. h100=2.5,l4=0.6 (docs/planner.md)",
  },
  jobs: { type: "int", min: 1, help: "simulations run at once on worker threads (default: one per core)" },
  sweep: {
    type: "boolean",
    default: true,
    negatable: true,
    help: "run the break-even KV sweep (--no-sweep skips it)",
  },
};

const USAGE =
  "usage: switchyard plan --scenario FILE [--format md|json] [--emit-values values.yaml] [--emit-rules rules.yaml] [--emit-prometheus-rules rules.yaml] [--gpu-price GPU=USD,...] [--jobs N] [--no-sweep]";

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, USAGE, specs);
  if (!parsed) return 0;
  const { flags } = parsed;
  if (typeof flags.scenario !== "string") throw new CliError(`--scenario FILE is required\n${USAGE}`);
  const format = flags.format as string;
  let text: string;
  try {
    text = readFileSync(flags.scenario, "utf8");
  } catch (err) {
    throw new CliError(`--scenario: cannot read ${flags.scenario}: ${(err as Error).message}`);
  }
  const pool = new SimPool(typeof flags.jobs === "number" ? flags.jobs : undefined);
  try {
    const input = parsePlanScenario(text);
    const prices = priceTable(
      input.r,
      typeof flags["gpu-price"] === "string"
        ? parsePriceFlag(
            flags["gpu-price"],
            GPUS.map((g) => g.id),
          )
        : {},
    );
    const outcome = await makePlan(input.r, {
      sweep: flags.sweep ? SWEEP_SCALES : [],
      open: input.open,
      pool,
      prices,
    });
    if (!outcome.ok) {
      if (format === "json")
        console.log(JSON.stringify({ planned: false, refusals: outcome.refusals }, null, 2));
      for (const f of outcome.refusals) console.error(`switchyard plan: refused (${f.rule}): ${f.reason}`);
      return 2;
    }
    const plan = outcome.plan;
    const f = plan.fleet;
    const planned = withFleet(input.r, {
      gpu: f.gpu,
      tp: f.tensor_parallel_size,
      engines: f.engines,
      ...(f.max_model_len !== undefined ? { maxModelLen: f.max_model_len } : {}),
    });
    if (typeof flags["emit-values"] === "string")
      writeFileSync(flags["emit-values"], toYaml(helmValues(plan, planned)));
    if (typeof flags["emit-rules"] === "string")
      writeFileSync(flags["emit-rules"], toYaml(prometheusRule(plan)));
    if (typeof flags["emit-prometheus-rules"] === "string")
      writeFileSync(flags["emit-prometheus-rules"], toYaml(prometheusRuleFile(plan)));
    console.log(format === "json" ? JSON.stringify({ planned: true, ...plan }, null, 2) : planMarkdown(plan));
    return 0;
  } catch (err) {
    if (err instanceof PlanInputError || err instanceof PriceError)
      throw new CliError(`invalid scenario: ${err.message}`);
    throw err;
  } finally {
    await pool.close();
  }
}
