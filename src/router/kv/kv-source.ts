// Where one engine's KV events come from (its configured `kvEvents`, the collector, discovery's
// endpoint, the derive rule) and what the router tracks of each engine's events: its sockets, whether
// batches flow, its version, and why it is routed by prefix instead (fallback.ts says why).
import type { KvEventSubscriber } from "../../kvevents/subscriber.js";
import type { RouterConfig } from "../config/config.js";
import type { BackendKvEvents } from "../config/kv.js";

/** Where one engine's events come from. */
export type KvSource =
  /** `ranks`: the publishers of the engine's other data-parallel ranks (its /kv_event_sources) */
  | ({ mode: "connect"; ranks?: BackendKvEvents[] } & BackendKvEvents)
  /** the engine publishes to our collector; replay (its ROUTER endpoint) if it has one */
  | { mode: "collect"; replay: string | undefined };

export interface EngineKv {
  url: string;
  source: KvSource | undefined;
  /** connect mode: our SUB socket to the engine */
  sub: KvEventSubscriber | undefined;
  /** collect mode: attached to the collector */
  collecting: boolean;
  /** at least one batch delivered since (re)subscribing */
  flowing: boolean;
  /** a publisher socket of the engine failed the CURVE handshake since (re)subscribing */
  refused: boolean;
  version: string | undefined;
  versionAsked: boolean;
  /** why the engine is routed by prefix instead of KV events (null: it is not) */
  fallback: string | null;
  healthy: boolean;
  /** streams (one per data-parallel rank) holding batches until their publisher confirms a jump or a restart */
  unconfirmed: number;
  /** configured (backend, discovery entry, derive rule, collector), read from the engine, or none */
  origin: "explicit" | "discovered" | "none";
  /** SUB sockets to the engine's other data-parallel ranks (discovered sources) */
  rankSubs: KvEventSubscriber[];
  /** when to ask the engine's /kv_event_sources (performance.now(); Infinity: not again) */
  sourcesAskAt: number;
  /** scrapes in a row that showed computed prompts and no event yet (warned once at QUIET_SCRAPES) */
  quietScrapes: number;
}

/** A newly followed engine: not subscribed, its version not asked, falling back as "starting". */
export function newEngineKv(url: string, source: KvSource | undefined): EngineKv {
  return {
    url,
    source,
    origin: source ? "explicit" : "none",
    rankSubs: [],
    sourcesAskAt: 0,
    sub: undefined,
    collecting: false,
    flowing: false,
    refused: false,
    quietScrapes: 0,
    version: undefined,
    versionAsked: false,
    fallback: "starting",
    healthy: false,
    unconfirmed: 0,
  };
}

/**
 * Where the engine at `url` publishes: its configured `kvEvents` (connect); else, in collector mode, the
 * collector (with a replay endpoint from discovery or the derive rule); else the endpoint discovery
 * found (pod annotation, file entry); else the derive rule.
 */
export function kvSourceFor(
  url: string,
  cfg: RouterConfig,
  discovered?: { endpoint: string; replay?: string | undefined; topic?: string | undefined },
): KvSource | undefined {
  const i = cfg.backends.findIndex((b) => b.url === url);
  const b = i >= 0 ? cfg.backends[i] : undefined;
  const explicit = (b as { kvEvents?: BackendKvEvents } | undefined)?.kvEvents;
  if (explicit) return { mode: "connect", ...explicit };
  const kv = cfg.routing.kvEvents;
  const d = kv.derive;
  const off = d?.byIndex ? i : 0;
  const host = new URL(url).hostname;
  const derivedReplay =
    d && d.replayPort !== undefined && !(d.byIndex && i < 0)
      ? `tcp://${host}:${d.replayPort + off}`
      : undefined;
  if (kv.bind) return { mode: "collect", replay: discovered?.replay ?? derivedReplay };
  // engines found by Kubernetes or file discovery carry their endpoint (pod annotation / file entry)
  if (discovered) {
    return {
      mode: "connect",
      endpoint: discovered.endpoint,
      replay: discovered.replay,
      topic: discovered.topic ?? kv.topic,
    };
  }
  if (!d || (d.byIndex && i < 0)) return undefined;
  return {
    mode: "connect",
    endpoint: `tcp://${host}:${d.port + off}`,
    replay: derivedReplay,
    topic: kv.topic,
  };
}
