// Where an engine publishes its KV events, as the engine itself says: vLLM 0.32 answers
// `GET /kv_event_sources` with its `--kv-events-config` per data-parallel rank. Without it the router
// needed every engine's port by hand (`--kv-events-port`, per-backend `kvEvents`), and an engine given
// only as a URL stayed on the approximate prefix index although it published exact events.
//
// Two shapes are read: vLLM 0.32's object keyed by rank (`{"0": {"endpoint": "tcp://*:5557",
// "replay_endpoint": ..., "topic": "", "enable_kv_cache_events": true, "publisher": "zmq", ...}}`) and
// the list later builds answer (`[{"data_parallel_rank": 0, "endpoint": ..., "replay_endpoint": ...,
// "topic": ...}]`). A wildcard host (`*`, `0.0.0.0`, `::`) is where the engine bound its socket on
// every interface: the router connects to the engine's own host.
import type { BackendKvEvents } from "../config/kv.js";
import { InvalidConfigError } from "../../errors/index.js";

/** One data-parallel rank's publisher, with its host resolved. */
export type RankSource = BackendKvEvents & { rank: number };

/** The answer read at most: a rank entry is a few hundred bytes. */
export const MAX_SOURCES_BYTES = 64 * 1024;
/** Ranks subscribed per engine at most (vLLM's data parallelism within one API server). */
const MAX_RANKS = 64;

const WILDCARD = /^(tcp|ws|wss):\/\/(\*|0\.0\.0\.0|\[::\]|::)(?=:\d+$)/;

/** `tcp://*:5557` on the engine at `http://10.0.0.7:8000` → `tcp://10.0.0.7:5557`. */
export function resolveWildcard(endpoint: string, engineUrl: string): string {
  const m = WILDCARD.exec(endpoint);
  if (!m) return endpoint;
  const host = new URL(engineUrl).hostname;
  return `${m[1]}://${host}${endpoint.slice(m[0].length)}`;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** The port of a tcp endpoint plus `n` (vLLM's data-parallel ranks bind the configured port + rank). */
function offsetPort(endpoint: string, n: number): string {
  const m = /:(\d+)$/.exec(endpoint);
  if (!m || n === 0) return endpoint;
  return endpoint.slice(0, m.index + 1) + String(Number(m[1]) + n);
}

/**
 * The publishers an engine's `/kv_event_sources` answer names, wildcards resolved to the engine's host;
 * empty when it names none (events off, another publisher than ZMQ). Throws on an answer that is not
 * one of the two shapes.
 */
export function parseKvEventSources(text: string, engineUrl: string): RankSource[] {
  const doc = JSON.parse(text) as unknown;
  const entries: Array<[number, Record<string, unknown>]> = [];
  if (Array.isArray(doc)) {
    doc.forEach((x, i) => {
      if (x && typeof x === "object") {
        const r = (x as { data_parallel_rank?: unknown }).data_parallel_rank;
        entries.push([typeof r === "number" ? r : i, x as Record<string, unknown>]);
      }
    });
  } else if (doc && typeof doc === "object") {
    for (const [k, v] of Object.entries(doc)) {
      if (v && typeof v === "object" && /^\d+$/.test(k))
        entries.push([Number(k), v as Record<string, unknown>]);
    }
  } else throw new InvalidConfigError("expected an object keyed by data-parallel rank, or a list");
  const out: RankSource[] = [];
  for (const [rank, e] of entries.slice(0, MAX_RANKS)) {
    if (e.enable_kv_cache_events === false) continue;
    if (e.publisher !== undefined && e.publisher !== "zmq") continue;
    const endpoint = str(e.endpoint);
    if (!endpoint || !/^(tcp|ipc):\/\//.test(endpoint)) continue;
    const replay = str(e.replay_endpoint);
    out.push({
      rank,
      endpoint: resolveWildcard(endpoint, engineUrl),
      replay: replay ? resolveWildcard(replay, engineUrl) : undefined,
      topic: typeof e.topic === "string" ? e.topic : undefined,
    });
  }
  // ranks that report the configured endpoint as it was written bind it plus their rank
  const same = out.length > 1 && out.every((s) => s.endpoint === out[0]!.endpoint);
  if (same)
    for (const s of out) {
      s.endpoint = offsetPort(s.endpoint, s.rank);
      if (s.replay) s.replay = offsetPort(s.replay, s.rank);
    }
  return out.sort((a, b) => a.rank - b.rank);
}
