// An in-process router on an ephemeral loopback port with fast health and metrics loops, and polling
// with a hang guard: for the router tests (through test/helpers/router.ts) and the benchmarks that start
// a router in their own process, which may not import the tests.
import { startRouter, type RouterConfigInput, type RunningRouter } from "../../src/router/index.js";
import { hangGuardDeadline } from "./cli.js";

export async function routerFor(
  backends: RouterConfigInput["backends"],
  extra: RouterConfigInput = {},
): Promise<RunningRouter> {
  const r = await startRouter({
    host: "127.0.0.1",
    port: 0,
    backends,
    ...extra,
    // fast loops, but timeouts a loaded machine meets: an in-process engine answers only when this
    // process gets the CPU, and two late answers in a row would eject a healthy engine
    health: { interval: 100, timeout: 2_000, failuresToEject: 2, successesToReadmit: 2, ...extra.health },
    discovery: { modelsInterval: 300, metricsInterval: 100, metricsTimeout: 2_000, ...extra.discovery },
  });
  await waitUntil(() => r.router.registry.anyReady(), 5000, "an engine ready");
  return r;
}

/** Polls `cond`; `timeoutMs` is a hang guard (never under HANG_GUARD_MS). Resolves with the ms waited. */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const start = Date.now();
  const deadline = hangGuardDeadline(timeoutMs);
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - start;
}
