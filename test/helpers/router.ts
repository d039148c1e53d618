// Shared by the router tests: an in-process router on an ephemeral loopback port with fast health and
// metrics loops and polling with a hang guard (both from the benchmarks' harness, which benchmarks
// share), and requests that read back the route the router took.
import assert from "node:assert/strict";

export { routerFor, waitUntil } from "../../bench/support/router.js";

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

/**
 * Sends `body` `times` times and expects each to go back to `home` as a KV hit predicting at least
 * `minCached` tokens cached there.
 */
export async function expectKvHits(
  url: string,
  path: string,
  body: unknown,
  home: string,
  minCached: number,
  times = 3,
): Promise<void> {
  for (let i = 0; i < times; i++) {
    const again = await routeOf(url, path, body);
    assert.equal(again.engine, home);
    assert.equal(again.reason, "kv-hit");
    assert.ok(Number(again.predicted_cached_tokens) >= minCached, again.predicted_cached_tokens);
  }
}
