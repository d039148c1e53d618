// Shared by the sim tests: start a sim in-process on loopback (any port and no environment unless
// given), the router-facing addresses of its KV events, and small HTTP helpers.
import { startSim, type RunningSim } from "../../src/sim/app.js";
import { parseSimArgs } from "../../src/sim/config/config.js";
import { connectableEndpoint } from "../../src/kvevents/endpoint.js";
import type { Json } from "../helpers/json.js";

/** A sim in-process on loopback: on `port` (a free one by default), with `env` as its environment (none by default). */
export async function startTestSim(
  model: string,
  args: string[] = [],
  o: { port?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunningSim> {
  return startSim(
    parseSimArgs([model, "--host", "127.0.0.1", "--port", String(o.port ?? 0), ...args], o.env ?? {}),
  );
}

/** A sim's KV-event and replay sockets as a router backend's `kvEvents` names them (wildcards made connectable). */
export function kvEventsOf(s: RunningSim): { endpoint: string; replay: string } {
  return {
    endpoint: connectableEndpoint(s.kvEventsEndpoint!),
    replay: connectableEndpoint(s.kvReplayEndpoint!),
  };
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Json; text: string }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, json, text };
}

export async function getText(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

/** The value of one Prometheus sample (first series whose line starts with `prefix`), or 0. */
export function metric(text: string, prefix: string): number {
  for (const line of text.split("\n")) {
    if (line.startsWith(prefix) && (line[prefix.length] === " " || line[prefix.length] === "{")) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return 0;
}

/** Deterministic token ids in [lo, hi) for prompts given as id lists. */
export function tokenIds(n: number, seed: number, lo = 1000, hi = 30000): number[] {
  const out: number[] = [];
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.push(lo + ((x >>> 0) % (hi - lo)));
  }
  return out;
}
