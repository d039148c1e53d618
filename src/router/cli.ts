// `switchyard router`: flags and an optional YAML file (hot-reloaded) → a running router. This is the
// router's start-up wiring: which process this is (a lone router, a group's primary or one of its
// workers) decides what is started, so the worker's start is composed here, where startRouter and the
// worker's link to its primary meet (cluster/ stays below index.ts: it never starts a router itself).
import {
  CliError,
  helpText,
  parseFlags,
  wantsHelp,
  type FlagSpecs,
  type FlagValues,
} from "../config/args.js";
import { configFromFlags, flagSpecsOf, schemaFlags } from "../config/schema-flags.js";
import { onShutdown, shutdownNeedsMs } from "../obs/lifecycle.js";
import cluster from "node:cluster";
import type { AddressInfo } from "node:net";
import { ConfigError, loadConfig, routerConfigSchema, type RouterConfigInput } from "./config/config.js";
import { startRouter } from "./index.js";
import { runPrimary } from "./cluster/primary.js";
import { awaitStart, WorkerLink } from "./cluster/worker.js";
import { workerCount } from "./cluster/worker-count.js";
import { logger } from "../obs/log.js";

const log = logger("router");

/**
 * The router's flags: `--config`, the file they are layered on, and one flag for each config field
 * that declares one (src/router/config, `flag(...)`), typed, bounded and defaulted by the schema.
 */
const schemaFlagList = schemaFlags(routerConfigSchema);
const specs: FlagSpecs = {
  config: { type: "string", help: "YAML config file (watched: changes apply without dropping requests)" },
  ...flagSpecsOf(schemaFlagList),
};

/** Flags given on the command line, as a partial config (file values stay where flags are silent). */
function flagsToConfig(flags: FlagValues, given: Set<string>): RouterConfigInput {
  return configFromFlags(schemaFlagList, flags, given) as RouterConfigInput;
}

export async function main(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(helpText("usage: switchyard router [--config FILE] [--backend URL ...] [options]", specs));
    return 0;
  }
  const { flags, given, positionals } = parseFlags(argv, specs);
  if (positionals.length > 0) throw new CliError(`unexpected argument '${positionals[0]}'`);
  // a worker of a router process group: its config comes from the primary
  if (cluster.isWorker && process.env.SWITCHYARD_ROUTER_WORKER !== undefined) {
    await runWorker();
    return await new Promise<never>(() => undefined);
  }
  const overrides = flagsToConfig(flags, given);
  const configFile = flags.config as string | undefined;
  let cfg;
  try {
    cfg = loadConfig(overrides, configFile);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
  // `workers: auto` (the default) is the count that measured fastest for the policy (worker-count.ts)
  const { workers, why } = workerCount(cfg);
  log.info({ workers, why }, workers > 1 ? "router workers" : "router: one process");
  if (workers > 1) {
    await runPrimary({ flags: overrides, configFile, workers });
    return await new Promise<never>(() => undefined);
  }
  let running;
  try {
    running = await startRouter(overrides, { configFile });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
  // the shutdown deadline must outlast the drain, else it would cut streams first
  onShutdown(() => running.close(), shutdownNeedsMs(cfg.drainTimeout));
  await new Promise<never>(() => undefined);
  return 0;
}

/** A worker process's life: wait for the primary's start, serve, drain on its word or a signal. */
async function runWorker(): Promise<void> {
  const start = await awaitStart();
  let link: WorkerLink | undefined;
  const running = await startRouter(start.config, {
    quiet: true,
    ...(start.ownSockets ? { socketGroup: start.workers } : {}),
    prepare: (router) => {
      link = new WorkerLink(router, start);
      router.group = link;
      // the worker's load-aware picks are claims its primary confirms (a lone router's just stand)
      router.attemptLoop.useClaims(link.slotClaims);
      if (start.configFile) router.onReload = () => link!.reload();
    },
  });
  const l = link!;
  l.applyConfig = (c) => void running.apply(c);
  const addr = running.router.server.address() as AddressInfo;
  l.listening(addr.address, addr.port, addr.family);
  onShutdown(async () => {
    await running.close();
    l.close();
    running.router.attemptLoop.useClaims(undefined);
  });
}
