// Starts an in-process router on an ephemeral loopback port with fast health/metrics loops.
import { startRouter, type RouterConfigInput, type RunningRouter } from "../../src/router/index.js";

export async function routerFor(
  backends: RouterConfigInput["backends"],
  extra: RouterConfigInput = {},
): Promise<RunningRouter> {
  const r = await startRouter({
    host: "127.0.0.1",
    port: 0,
    backends,
    ...extra,
    health: { interval: 100, timeout: 300, failuresToEject: 2, successesToReadmit: 2, ...extra.health },
    discovery: { modelsInterval: 300, metricsInterval: 100, metricsTimeout: 300, ...extra.discovery },
  });
  await waitUntil(() => r.router.registry.anyReady(), 5000, "an engine ready");
  return r;
}

export async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
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
