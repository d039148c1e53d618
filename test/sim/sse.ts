// Reads a whole server-sent-events body into its events: the `event:` name (null when absent) and the
// `data:` text, parsed as JSON where it is JSON. Shared by the tests of the sim's streamed APIs.
import type { RunningSim } from "../../src/sim/app.js";
import { startTestSim } from "./helpers.js";
import type { Json } from "../helpers/json.js";

export interface SseEvent {
  event: string | null;
  data: Json;
}

export function parseSse(text: string): SseEvent[] {
  const out: SseEvent[] = [];
  for (const block of text.split("\n\n")) {
    if (!block.trim()) continue;
    let event: string | null = null;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    const raw = data.join("\n");
    let parsed: unknown = raw;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = raw;
    }
    out.push({ event, data: parsed });
  }
  return out;
}

export async function postSse(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type"), events: parseSse(text), text };
}

/** A sim started with an environment (startTestSim passes none), for env-driven features. */
export async function startSimWithEnv(
  model: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<RunningSim> {
  return startTestSim(model, args, { env });
}
