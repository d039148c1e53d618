// `switchyard plan --scenario file.yaml [--format md|json] [--emit-values values.yaml] [--emit-rules rules.yaml]
// [--emit-prometheus-rules file] [--gpu-price h100=2.5,...] [--jobs N] [--no-sweep]`
// Exit 0 when a plan is produced (refused options and a missed SLO are stated in it); 2 when planning is
// refused or the scenario is invalid or infeasible, with a one-line reason naming the field.
import { readFileSync, writeFileSync } from "node:fs";
import { z } from "zod";
import { CliError } from "../config/args.js";
import { commandFlags, parseCommandFlags } from "../config/command.js";
import { flag } from "../config/schema-flags.js";
import { GPUS, loadProfilesFile } from "../models/index.js";
import { emittedScenario, helmValues, prometheusRule, prometheusRuleFile, toYaml } from "./emit.js";
import { withL2 } from "./l2.js";
import { planMarkdown } from "./format.js";
import { parsePlanScenario, PlanInputError, withFleet, withTarget } from "./input.js";
import { makePlan, SWEEP_SCALES } from "./plan.js";
import { choiceOf } from "./plan-json.js";
import { frontSvg } from "./front.js";
import { SimPool } from "./pool.js";
import { parsePriceFlag, PriceError, priceTable } from "./prices.js";

/** The command's options: each field declares its flag, type, bounds, default and help. */
const planOptions = z.object({
  scenario: flag(z.string().optional(), { flag: "scenario", help: "scenario YAML (docs/planner.md)" }),
  format: flag(z.enum(["md", "json"]).default("md"), { flag: "format", help: "md | json" }),
  emitValues: flag(z.string().optional(), {
    flag: "emit-values",
    help: "write Helm values for deploy/helm/switchyard to this file",
  }),
  emitRules: flag(z.string().optional(), {
    flag: "emit-rules",
    help: "write a PrometheusRule (92% sustained KV alert, 24 h P99 gate, SLO alerts) to this file",
  }),
  emitPrometheusRules: flag(z.string().optional(), {
    flag: "emit-prometheus-rules",
    help: "write the same rules as a plain Prometheus rule file (rule_files:, promtool) to this file",
  }),
  gpuPrice: flag(z.string().optional(), {
    flag: "gpu-price",
    help: "USD per GPU-hour over the default table, e.g. h100=2.5,l4=0.6 (docs/planner.md)",
  }),
  jobs: flag(z.number().int().min(1).optional(), {
    flag: "jobs",
    help: "simulations run at once on worker threads (default: one per core)",
  }),
  layouts: flag(z.enum(["agg", "pd", "both"]).default("both"), {
    flag: "layouts",
    help: "layouts searched where the fleet is open: aggregated, disaggregated prefill/decode, or both",
  }),
  targetRps: flag(z.number().optional(), {
    flag: "target-rps",
    help: "size for this request rate (an open loop): the fewest GPUs that meet the SLO, then the cheapest",
  }),
  targetConcurrency: flag(z.number().int().min(1).optional(), {
    flag: "target-concurrency",
    help: "size for this many requests in flight (a closed loop): the fewest GPUs, then the cheapest",
  }),
  emitScenario: flag(z.string().optional(), {
    flag: "emit-scenario",
    help: "write the scenario with the chosen fleet, policy and offload filled in (for switchyard simulate)",
  }),
  profiles: flag(z.string().optional(), {
    flag: "profiles",
    help: "YAML with extra gpus:/models: profiles (a `switchyard calibrate` result), searched with the rest",
  }),
  emitFront: flag(z.string().optional(), {
    flag: "emit-front",
    help: "write the throughput/interactivity front as an SVG chart",
  }),
  sweep: flag(z.boolean().default(true), {
    flag: "sweep",
    negatable: true,
    help: "run the break-even KV sweep (--no-sweep skips it)",
  }),
});
const FLAGS = commandFlags(planOptions);

const USAGE =
  "usage: switchyard plan --scenario FILE [--format md|json] [--emit-values values.yaml] [--emit-rules rules.yaml] [--emit-prometheus-rules rules.yaml] [--gpu-price GPU=USD,...] [--jobs N] [--no-sweep] [--layouts agg|pd|both] [--target-rps R | --target-concurrency C] [--emit-scenario FILE] [--emit-front FILE.svg] [--profiles FILE]";

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandFlags(argv, USAGE, FLAGS);
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
  if (typeof flags.profiles === "string") {
    try {
      loadProfilesFile(flags.profiles);
    } catch (err) {
      throw new CliError(`--profiles: ${(err as Error).message}`);
    }
  }
  const pool = new SimPool(typeof flags.jobs === "number" ? flags.jobs : undefined);
  try {
    const input = parsePlanScenario(text);
    const rps = flags["target-rps"];
    const conc = flags["target-concurrency"];
    if (rps !== undefined && conc !== undefined)
      throw new CliError("--target-rps and --target-concurrency: give one of them");
    if (typeof rps === "number" && !(rps > 0))
      throw new CliError(`--target-rps: must be above 0, got ${rps}`);
    const target =
      typeof rps === "number" || typeof conc === "number"
        ? { rps: typeof rps === "number" ? rps : null, concurrency: typeof conc === "number" ? conc : null }
        : undefined;
    if (target) input.r = withTarget(input.r, target);
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
      layouts: flags.layouts as "agg" | "pd" | "both",
      ...(typeof flags.profiles === "string" ? { profiles: flags.profiles } : {}),
      ...(target ? { target } : {}),
    });
    if (!outcome.ok) {
      if (format === "json")
        console.log(JSON.stringify({ planned: false, refusals: outcome.refusals }, null, 2));
      for (const f of outcome.refusals) console.error(`switchyard plan: refused (${f.rule}): ${f.reason}`);
      return 2;
    }
    const plan = outcome.plan;
    // as the plan ran it: its fleet, policy and shared tier (a cluster at its size)
    const ran = plan.kv_l2 ? withL2(input.r, plan.kv_l2) : input.r;
    const planned = withFleet(ran, choiceOf(plan.fleet), plan.router.policy);
    if (typeof flags["emit-scenario"] === "string")
      writeFileSync(flags["emit-scenario"], toYaml(emittedScenario(plan, planned)));
    if (typeof flags["emit-front"] === "string")
      writeFileSync(flags["emit-front"], frontSvg(plan.scenario, plan.front));
    if (typeof flags["emit-values"] === "string")
      writeFileSync(flags["emit-values"], toYaml(helmValues(plan, planned)));
    if (typeof flags["emit-rules"] === "string")
      writeFileSync(flags["emit-rules"], toYaml(prometheusRule(plan)));
    if (typeof flags["emit-prometheus-rules"] === "string")
      writeFileSync(flags["emit-prometheus-rules"], toYaml(prometheusRuleFile(plan)));
    // the JSON carries the front's chart too, as the Markdown does (inline)
    console.log(
      format === "json"
        ? JSON.stringify({ planned: true, ...plan, front_svg: frontSvg(plan.scenario, plan.front) }, null, 2)
        : planMarkdown(plan),
    );
    return 0;
  } catch (err) {
    if (err instanceof PlanInputError || err instanceof PriceError)
      throw new CliError(`invalid scenario: ${err.message}`);
    throw err;
  } finally {
    await pool.close();
  }
}
