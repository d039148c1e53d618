// Clean shutdown on SIGINT/SIGTERM for every long-running command: handlers run once, in
// reverse order of registration, within a deadline; a second signal exits at once. A process started
// by `switchyard up` also stops when `up` is gone (watchParent).
import cluster from "node:cluster";
import { logger } from "./log.js";

type Handler = () => Promise<void> | void;
// process-wide: signals are delivered to the process, so the handlers they run, whether they are
// installed, and whether a shutdown has begun belong to the process, whichever command registered them
const life = { handlers: [] as Handler[], installed: false, stopping: false, needsMs: 0 };

/** The deadline an operator may set (SWITCHYARD_SHUTDOWN_MS), else 30 s. */
function configuredDeadlineMs(): number {
  return Number(process.env.SWITCHYARD_SHUTDOWN_MS ?? 30000);
}

/**
 * Runs `fn` on SIGINT/SIGTERM. `needsMs`: how long `fn` may take (a router's drain); the shutdown's
 * deadline is the larger of the configured one and every handler's need, so no drain is cut short.
 */
export function onShutdown(fn: Handler, needsMs = 0): void {
  life.handlers.push(fn);
  life.needsMs = Math.max(life.needsMs, needsMs);
  if (life.installed) return;
  life.installed = true;
  const go = (sig: string) => {
    if (life.stopping) {
      logger("lifecycle").warn({ signal: sig }, "second signal: exiting now");
      process.exit(130);
    }
    void shutdown(sig);
  };
  process.on("SIGINT", () => go("SIGINT"));
  process.on("SIGTERM", () => go("SIGTERM"));
}

/** What a handler that drains for up to `drainMs` needs: the drain and 10 s to close what is left. */
export function shutdownNeedsMs(drainMs: number): number {
  return drainMs + 10_000;
}

/** True once a shutdown has begun (a further request to stop means: exit now). */
export function shuttingDown(): boolean {
  return life.stopping;
}

export async function shutdown(
  reason: string,
  deadlineMs = Math.max(configuredDeadlineMs(), life.needsMs),
): Promise<void> {
  if (life.stopping) return;
  life.stopping = true;
  const log = logger("lifecycle");
  log.info({ reason }, "shutting down");
  const timer = setTimeout(() => {
    log.error({ deadlineMs }, "shutdown deadline passed: exiting");
    process.exit(1);
  }, deadlineMs);
  timer.unref();
  for (const h of [...life.handlers].reverse()) {
    try {
      await h();
    } catch (err) {
      log.error({ err }, "shutdown handler failed");
    }
  }
  clearTimeout(timer);
  process.exit(0);
}

/**
 * Set by a parent that holds an IPC channel to this process (`switchyard up` for its engines and
 * router): when the channel closes, the parent is gone, and so is this process within PARENT_GONE_MS.
 */
export const PARENT_WATCH_ENV = "SWITCHYARD_PARENT_WATCH";
/** What a process whose parent died may take to stop: its ports must come free for the next start. */
const PARENT_GONE_MS = 1500;

/**
 * Exits when the parent that started this process goes, however it went: a parent killed with
 * SIGKILL (or by the OOM killer) runs no handler of its own, but the kernel closes its end of the IPC
 * channel, and that is what this hears. Portable: no prctl, no polling of the parent's pid. The
 * environment variable is inherited, so a router's workers (forked with their own channel to it) go
 * with it too. Shutdown handlers get PARENT_GONE_MS: nobody is left to wait for a drain.
 */
export function watchParent(): void {
  if (process.env[PARENT_WATCH_ENV] !== "ipc" || !process.channel) return;
  const gone = () => {
    logger("lifecycle").warn("the parent process is gone: stopping");
    setTimeout(() => process.exit(1), PARENT_GONE_MS).unref();
    void shutdown("parent exited", PARENT_GONE_MS);
  };
  if (!process.connected) return gone();
  process.once("disconnect", gone);
  // the channel alone keeps nothing alive: a process with nothing else to do still ends. Not so in a
  // router's worker: its channel is to the primary, whose first word it waits for before it listens
  if (!cluster.isWorker) process.channel.unref();
}
