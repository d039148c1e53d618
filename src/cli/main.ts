#!/usr/bin/env node
// `switchyard` entry point: dispatches to a subcommand module, loaded lazily so that
// `switchyard cache-server` never pays for the tokenizer tables the sim needs.
import { CliError } from "../config/args.js";
import { watchParent } from "../obs/lifecycle.js";
import { SwitchyardError } from "../errors/index.js";
import { setRouterHeap, setRouterPretenuring } from "./v8-heap.js";

type Main = (argv: string[]) => Promise<number | void>;

const commands: Record<string, { help: string; load: () => Promise<{ main: Main }> }> = {
  sim: {
    help: "a simulated vLLM engine (same HTTP, metrics and KV events)",
    load: () => import("../sim/cli.js"),
  },
  router: {
    help: "the OpenAI-compatible gateway in front of vLLM engines",
    load: () => import("../router/cli.js"),
  },
  up: { help: "the whole stack on this machine with simulated engines", load: () => import("./up.js") },
  bench: {
    help: "load generator and report (TTFT, TPOT, ITL, goodput, A/B)",
    load: () => import("../bench/cli.js"),
  },
  simulate: {
    help: "simulate a fleet in virtual time (scenario YAML)",
    load: () => import("../fleet/cli.js"),
  },
  plan: {
    help: "plan a vLLM stack from a scenario (rules, impact, Helm values)",
    load: () => import("../planner/cli.js"),
  },
  calibrate: {
    help: "fit the engine model's timing to a running engine or a bench result (a GPU profile)",
    load: () => import("../calibrate/cli.js"),
  },
  status: {
    help: "one screen of a running stack: engines, rates, latencies, warnings",
    load: () => import("../ops/status.js"),
  },
  smoke: {
    help: "quick pass/fail check of an OpenAI-compatible endpoint",
    load: () => import("../ops/smoke.js"),
  },
  "cache-server": {
    help: "an LMCache-compatible lm:// KV cache server",
    load: () => import("../cacheserver/cli.js"),
  },
};

function usage(): string {
  const rows = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(14)} ${c.help}`);
  return `usage: switchyard <command> [options]\n\ncommands:\n${rows.join("\n")}\n\nRun 'switchyard <command> --help' for a command's options.`;
}

async function run(): Promise<number> {
  // a young generation sized for the router's tail (v8-heap.ts): re-executes this process, so first
  if (process.argv[2] === "router") {
    setRouterHeap();
    setRouterPretenuring();
  }
  // a stack process of `switchyard up` (and a router worker of one) goes when its parent goes
  watchParent();
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    console.log(usage());
    return 0;
  }
  if (cmd === "--version") {
    console.log("switchyard 0.1.0");
    return 0;
  }
  const entry = commands[cmd];
  if (!entry) {
    console.error(`switchyard: unknown command '${cmd}'\n\n${usage()}`);
    return 2;
  }
  try {
    const mod = await entry.load();
    const code = await mod.main(rest);
    return typeof code === "number" ? code : 0;
  } catch (err) {
    if (err instanceof CliError) {
      console.error(`switchyard ${cmd}: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

run().then(
  (code) => {
    // Long-running commands resolve only after shutdown; short ones exit with their status.
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    // the stable code says which kind of failure it is; docs/operations.md says what to do about each
    if (err instanceof SwitchyardError) console.error(`error code: ${err.code}`);
    process.exit(1);
  },
);
