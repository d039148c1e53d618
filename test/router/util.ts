// Shared by the router tests: an in-process router on an ephemeral loopback port with fast health and
// metrics loops, polling with a hang guard, and requests that read back the route the router took.
import assert from "node:assert/strict";
import { startRouter, type RouterConfigInput, type RunningRouter } from "../../src/router/index.js";
import { hangGuardDeadline } from "../helpers/cli.js";

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

export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/**
 * Posts `body` to the router's `path` with the debug header on, expecting a 200; the route it took
 * (the x-switchyard-route header's key=value pairs: engine, policy, reason, ...).
 */
export async function routeOf(url: string, path: string, body: unknown): Promise<Record<string, string>> {
  const res = await post(`${url}${path}`, body, { "x-switchyard-debug": "1" });
  assert.equal(res.status, 200, `${path}: ${await res.clone().text()}`);
  await res.arrayBuffer();
  const h = res.headers.get("x-switchyard-route") ?? "";
  return Object.fromEntries(h.split("; ").map((kv) => kv.split("=") as [string, string]));
}
