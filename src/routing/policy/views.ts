// What a routing policy may know: the request, each engine and the fleet at the moment of a decision.
// Policies are pure functions of these views, so the live router and the virtual-time fleet simulator
// run the same code: the caller owns every piece of state (counters, clocks) and passes it in.
import type { LruMap } from "../../collections/lru-map.js";

/** What a policy may know about a request. Cache-aware policies read `prompt` / `messages`. */
export interface RequestView {
  /** the served model or adapter name the request resolved to */
  model: string;
  /** a monotonically increasing number the caller assigns; round-robin spreads on it */
  seq: number;
  /** session-affinity key from a header or body field, when one was given */
  sessionKey?: string | undefined;
  /** rendered prompt text (completions) — for cache-aware policies */
  prompt?: unknown;
  /** chat messages — for cache-aware policies */
  messages?: unknown;
  /** engines already tried for this request (failover): never picked again */
  exclude?: ReadonlySet<string> | undefined;
  /** the parsed request body (cache_salt, add_special_tokens, chat template kwargs) — cache-aware policies */
  body?: Record<string, unknown> | undefined;
  /** the client's time-to-first-token SLO, ms (x-slo-ttft-ms); the predictive policy admits by it */
  sloTtftMs?: number | undefined;
  /**
   * the registry adapter `model` names, when it is one: engines serving its base model may take the
   * request (the caller loads the adapter there first); LoRA policies price where it is loaded
   */
  lora?: LoraRequestView | undefined;
  /**
   * slots above each engine's in-flight cap (EngineView.maxInFlight) this request may take: the room
   * the router keeps for its top priority band (admission.topBandHeadroom); absent or 0: none
   */
  headroom?: number | undefined;
}

/** the adapter a request names, from the router's registry */
export interface LoraRequestView {
  name: string;
  /** the adapter's folder as the engine reads it (vLLM 0.32 hashes it into the blocks) */
  path: string;
  /** the base model it adapts: engines serving it may load the adapter */
  base: string;
  /** bytes of its weights (what a load moves) */
  bytes: number;
}

/** what a policy knows of one engine's adapters */
export interface EngineLoraView {
  maxLoras: number;
  maxCpuLoras: number;
  /** adapters of its running and waiting requests as last scraped (vllm:lora_requests_info) */
  running: ReadonlySet<string>;
  waiting: ReadonlySet<string>;
  /** adapters loaded there (its /v1/models, and the router's own loads), oldest use first */
  loaded: LruMap<string, true>;
  /** adapters whose load the router has in flight there */
  loading: ReadonlySet<string>;
  /** the router's own requests in flight there, per adapter */
  inFlight: ReadonlyMap<string, number>;
  /**
   * when the router last sent each of those adapters a request there, ms on the snapshot's clock: the
   * adapter's slot frees about one request's time after it (absent: unknown, half of one)
   */
  lastSentAt?: ReadonlyMap<string, number> | undefined;
  /**
   * how much the router has used each loaded adapter there: requests sent, decayed (`noteAdapterUse`,
   * src/routing/lora-books/books.ts); the host-cache eviction keeps the most used. Absent: the oldest goes.
   */
  uses?: ReadonlyMap<string, AdapterUse> | undefined;
  /** bytes/s of its adapter reads from disk, and of its copies into slots (the host link) */
  diskBps: number;
  linkBps: number;
  /** seconds of a load beside the bytes (the load API's round trip, the engine's fixed cost) */
  loadOverheadS: number;
}

/** an adapter's use on one engine: requests sent there, decayed by half each half-life, as of `at` ms */
export interface AdapterUse {
  n: number;
  at: number;
}

/** the engine view a LoRA policy reads: EngineView plus its adapters (absent: the engine serves none) */
export type LoraEngineView = EngineView & { lora?: EngineLoraView | undefined };
export type LoraRequest = RequestView & { lora?: LoraRequestView | undefined };

/** What a policy may know about an engine at the moment of the decision. */
export interface EngineView {
  /** stable identity: the engine's base URL */
  id: string;
  /** served model names, base models and LoRA adapters alike */
  models: ReadonlySet<string>;
  /** admitted by health checks and not ejected */
  healthy: boolean;
  /** relative share of traffic among healthy engines (canary rollouts); 0 takes none */
  weight: number;
  /** requests this router has in flight on the engine */
  inFlight: number;
  /**
   * of those, requests with no answer byte yet (their prompt is queued or being prefilled); absent when
   * the caller does not track it. A streamed answer's first byte is its first token.
   */
  awaitingFirstToken?: number | undefined;
  /**
   * Router groups (workers, replicas): of `awaitingFirstToken`, the part that other routers of the
   * group sent, and the prefill tokens those requests still need as their routers last reported (each
   * router's PrefillLedger). Absent or 0 for a lone router: its own ledger knows every queued prompt.
   */
  peerAwaitingFirstToken?: number | undefined;
  peerPrefillTokens?: number | undefined;
  /** when this router last sent the engine a request, ms on the clock of `FleetSnapshot.now` */
  lastSentAt?: number | undefined;
  /**
   * when this router last saw the engine answer (a first token, or a request's end), ms: one of its steps
   * ended then, and the engine began its next at once (it runs steps back to back while busy)
   */
  lastEventAt?: number | undefined;
  /** when this router last saw a request on the engine end, ms */
  lastDoneAt?: number | undefined;
  /**
   * of this router's `awaitingFirstToken`, requests whose answer is not streamed: their first byte comes
   * with their last, so they count as awaiting until they end (late binding leaves them out)
   */
  unstreamed?: number | undefined;
  /** this router's per-engine in-flight cap; 0 = none */
  maxInFlight: number;
  /** scraped vllm:num_requests_running (sum over the engine's series) */
  running: number;
  /** scraped vllm:num_requests_waiting */
  waiting: number;
  /** scraped vllm:kv_cache_usage_perc, 0..1 */
  kvUsage: number;
  /** block size from vllm:cache_config_info, when known (cache-aware policies) */
  blockSize?: number | undefined;
  /**
   * when running / waiting / kvUsage were scraped, ms on the clock of `FleetSnapshot.now`; absent: the
   * caller does not track it, and load is max(inFlight, running + waiting) as if just scraped
   */
  scrapedAt?: number | undefined;
  /** the router's `inFlight` on the engine when those gauges were read (see cost/engine-load.ts) */
  inFlightAtScrape?: number | undefined;
  /** its LoRA adapters (slots, what it runs and has loaded), when it serves LoRA and the caller tracks them */
  lora?: EngineLoraView | undefined;
}

/** A healthy engine with nothing in flight and nothing scraped yet: the starting view of an engine. */
export function idleEngineView<M extends ReadonlySet<string>>(
  id: string,
  models: M,
  over: Partial<Omit<EngineView, "models">> = {},
): EngineView & { models: M } {
  return {
    id,
    healthy: true,
    weight: 1,
    inFlight: 0,
    maxInFlight: 0,
    running: 0,
    waiting: 0,
    kvUsage: 0,
    models,
    ...over,
  };
}

export interface FleetSnapshot {
  engines: readonly EngineView[];
  /** the time of the decision, ms, on the clock of `EngineView.scrapedAt` (ages scraped load) */
  now?: number | undefined;
}
