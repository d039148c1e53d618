// Clean shutdown on SIGINT/SIGTERM for every long-running command: handlers run once, in
// reverse order of registration, within a deadline; a second signal exits at once.
import { logger } from "./log.js";

type Handler = () => Promise<void> | void;
const handlers: Handler[] = [];
let installed = false;
let stopping = false;

export function onShutdown(fn: Handler): void {
  handlers.push(fn);
  if (installed) return;
  installed = true;
  const go = (sig: string) => {
    if (stopping) {
      logger("lifecycle").warn({ signal: sig }, "second signal: exiting now");
      process.exit(130);
    }
    void shutdown(sig);
  };
  process.on("SIGINT", () => go("SIGINT"));
  process.on("SIGTERM", () => go("SIGTERM"));
}

/** True once a shutdown has begun (a further request to stop means: exit now). */
export function shuttingDown(): boolean {
  return stopping;
}

export async function shutdown(
  reason: string,
  deadlineMs = Number(process.env.SWITCHYARD_SHUTDOWN_MS ?? 30000),
): Promise<void> {
  if (stopping) return;
  stopping = true;
  const log = logger("lifecycle");
  log.info({ reason }, "shutting down");
  const timer = setTimeout(() => {
    log.error({ deadlineMs }, "shutdown deadline passed: exiting");
    process.exit(1);
  }, deadlineMs);
  timer.unref();
  for (const h of [...handlers].reverse()) {
    try {
      await h();
    } catch (err) {
      log.error({ err }, "shutdown handler failed");
    }
  }
  clearTimeout(timer);
  process.exit(0);
}
