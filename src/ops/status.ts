// `switchyard status`: the state of a running stack on one screen, from the router alone. Plain text for
// people, `--format json` for scripts (one object; one line per refresh with --watch). Exit 1 when the
// router cannot be read, so a script can tell "down" from "degraded" (warnings are in the output).
import { z } from "zod";
import { CliError } from "../config/args.js";
import { commandFlags, parseCommandFlags } from "../config/command.js";
import { flag } from "../config/schema-flags.js";
import { ROUTER_URL } from "../config/defaults.js";
import { onShutdown } from "../obs/lifecycle.js";
import { buildReport, sampleRouter, StatusError, type StatusSample } from "./fleet-status.js";
import { renderStatus } from "./status-text.js";

/** The command's options: each field declares its flag, type, bounds, default and help. */
const statusOptions = z.object({
  router: flag(z.string().default(ROUTER_URL), { flag: "router", help: "the router's base URL" }),
  watch: flag(z.boolean().default(false), {
    flag: "watch",
    help: "refresh every --interval seconds until Ctrl-C",
  }),
  interval: flag(z.number().min(0).max(3600).default(2), {
    flag: "interval",
    help: "seconds between the two samples that give rates and window figures (0: one sample, totals)",
  }),
  format: flag(z.string().default("text"), { flag: "format", help: "text | json" }),
  apiKey: flag(z.string().optional(), {
    flag: "api-key",
    env: "SWITCHYARD_ADMIN_KEY",
    help: "the router's admin key, for /engines when keys are on (default: $SWITCHYARD_ADMIN_KEY)",
  }),
  timeout: flag(z.number().min(0.1).default(5), {
    flag: "timeout",
    help: "seconds to wait for each request to the router",
  }),
});
const FLAGS = commandFlags(statusOptions);

const USAGE =
  "usage: switchyard status [--router URL] [--watch] [--format json]\n\n" +
  "Every engine behind the router (model, role, health, in flight, running/waiting, KV usage, prefix hit\n" +
  "rate, routing share, ejections), LoRA adapters per engine and per-adapter routing share, the router's\n" +
  "rates and latencies, and warnings. Example:\n" +
  `  switchyard status --router ${ROUTER_URL} --watch`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandFlags(argv, USAGE, FLAGS, {
    tooMany: (positionals) => `unexpected argument '${positionals[0]}' (see --help)`,
  });
  if (!parsed) return 0;
  const { flags } = parsed;
  const format = String(flags.format);
  if (format !== "text" && format !== "json") throw new CliError("--format: expected text or json");
  const router = String(flags.router).replace(/\/+$/, "");
  try {
    new URL(router);
  } catch {
    throw new CliError(`--router: not a URL: ${router}`);
  }
  const key = flags["api-key"] as string | undefined;
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  const intervalMs = Number(flags.interval) * 1000;
  const timeoutMs = Number(flags.timeout) * 1000;
  const watch = Boolean(flags.watch);
  const tty = process.stdout.isTTY === true;

  let stopped = false;
  if (watch) onShutdown(() => void (stopped = true));
  const print = (text: string) => {
    // a refreshing screen on a terminal; successive reports otherwise (a log, a pipe)
    if (watch && tty && format === "text") process.stdout.write(`\x1b[2J\x1b[H${text}\n`);
    else process.stdout.write(`${text}\n`);
  };
  const show = (after: StatusSample, before: StatusSample | null) => {
    const report = buildReport(router, after, before);
    print(format === "json" ? JSON.stringify(report, null, watch ? undefined : 2) : renderStatus(report));
  };

  if (!watch) {
    try {
      const before = await sampleRouter(router, headers, timeoutMs);
      if (intervalMs === 0) show(before, null);
      else {
        await sleep(intervalMs);
        show(await sampleRouter(router, headers, timeoutMs), before);
      }
      return 0;
    } catch (err) {
      if (!(err instanceof StatusError)) throw err;
      console.error(`switchyard status: ${err.message}`);
      return 1;
    }
  }
  // --watch outlives outages: an unreachable router is shown, and the screen recovers when it answers
  let before: StatusSample | null = null;
  while (!stopped) {
    try {
      const after = await sampleRouter(router, headers, timeoutMs);
      if (before || intervalMs === 0) show(after, before);
      before = after;
    } catch (err) {
      if (!(err instanceof StatusError)) throw err;
      before = null;
      const at = new Date().toISOString().slice(11, 19);
      print(
        format === "json"
          ? JSON.stringify({ time: new Date().toISOString(), router, error: err.message })
          : `${at} UTC  ${err.message}; retrying`,
      );
    }
    await sleep(Math.max(intervalMs, 250));
  }
  return 0;
}
