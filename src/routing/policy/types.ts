// The vocabulary every routing policy speaks. Policies are pure functions of a request view and a
// fleet snapshot, so the live router and the virtual-time fleet simulator run the same code: the
// caller owns every piece of state (counters, clocks) and passes it in.
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
  /** bytes/s of its adapter reads from disk, and of its copies into slots (the host link) */
  diskBps: number;
  linkBps: number;
  /** seconds of a load beside the bytes (the load API's round trip, the engine's fixed cost) */
  loadOverheadS: number;
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
  /** the router's `inFlight` on the engine when those gauges were read (see load.ts) */
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

/** Narrows the candidate set. Must return a subset of its input (may be the input itself). */
export interface Filter {
  (req: RequestView, engines: readonly EngineView[], fleet: FleetSnapshot): readonly EngineView[];
  /**
   * a set this filter empties waits for room (`decide` says "saturated": the caller queues the request)
   * rather than having no usable engine ("unavailable")
   */
  waitsForRoom?: boolean;
}

/** Scores candidates in [0, 1], higher is better; `out[i]` belongs to `engines[i]`. */
export interface Scorer {
  name: string;
  weight: number;
  score(req: RequestView, engines: readonly EngineView[], out: Float64Array, fleet: FleetSnapshot): void;
}

/** Picks one candidate given the weighted score sum per candidate. */
export type Picker = (
  req: RequestView,
  engines: readonly EngineView[],
  scores: Float64Array,
  fleet: FleetSnapshot,
) => EngineView | undefined;

/** A routing policy in the Gateway API Inference Extension shape: filters → scorers → picker. */
export interface Policy {
  name: string;
  filters: readonly Filter[];
  scorers: readonly Scorer[];
  picker: Picker;
  /**
   * More load on an engine it did not pick never changes the pick (each engine is priced by its own
   * view and the best wins; ties may rotate): a router group confirms such a pick by the counts on its
   * own engine alone. Unset: the pick may depend on every engine's counts (session's bounded load reads
   * the fleet's total).
   */
  loadElsewhereKeepsPick?: boolean | undefined;
  /** told of every pick, so caller-owned state (an approximate prefix index) can learn from it */
  onPicked?: ((req: RequestView, engine: EngineView) => void) | undefined;
  /**
   * the prefill tokens this router's own requests awaiting a first token still need on `engine` (its
   * share of a router group's queue, reported to the others); undefined for policies that keep none
   */
  queuedPrefillTokens?: ((engine: EngineView) => number) | undefined;
  /**
   * told when a pick did not stand after all (a router group's claim answered with newer counts; the
   * request is decided again): what onPicked counted is taken back
   */
  onUnpicked?: ((req: RequestView, engine: EngineView) => void) | undefined;
  /** told when a routed request's first token came back, `ttftMs` after it arrived (calibration) */
  onFirstToken?: ((req: RequestView, engine: EngineView, ttftMs: number) => void) | undefined;
  /**
   * told when a routed request finished, `elapsedMs` after it arrived: its session (if it has one) is
   * paused from then until its next turn (the predictive policy prices evicting paused sessions' KV)
   */
  onDone?: ((req: RequestView, engine: EngineView, elapsedMs: number) => void) | undefined;
  /**
   * told when a routed request's attempt on `engine` ended without its answer (failed, moved to another
   * engine mid-answer, its client left), `elapsedMs` after it arrived: its turn is no longer in flight
   * there, so what the policy counted as running there is let go (callers that report completions)
   */
  onAbandoned?: ((req: RequestView, engine: EngineView, elapsedMs: number) => void) | undefined;
  /**
   * a policy that keeps requests waiting for room that time frees, not only a request's end (a program's
   * KV hold running out): its callers decide waiting requests again at least this often, ms
   */
  recheckMs?: number | undefined;
  /**
   * a policy that holds requests until an engine's queued prompts get their first tokens (late binding):
   * its callers decide waiting requests again when a first token comes, not only when a request ends
   */
  roomAtFirstToken?: boolean | undefined;
  /**
   * told when a request the policy held ("saturated") leaves the caller's queue without an engine (timed
   * out, refused, its client gone), so it no longer ranks among the waiting
   */
  onLeftQueue?: ((req: RequestView) => void) | undefined;
  /** may refuse the picked engine (an SLO no engine meets) or hold the request ("saturated"); undefined admits it */
  admit?: ((req: RequestView, engine: EngineView, fleet: FleetSnapshot) => Decision | undefined) | undefined;
  /**
   * diagnostics (the fleet simulator's decision log): what the policy predicted for each candidate when it
   * last scored `req`; undefined for policies that predict nothing
   */
  explain?: ((req: RequestView) => PolicyExplanation | undefined) | undefined;
}

/** What a cost-based policy predicted for each candidate of one decision (Policy.explain). */
export interface PolicyExplanation {
  engines: readonly EngineView[];
  /** per candidate: prompt tokens predicted cached there (what the cost credited) */
  cachedTokens: Float64Array;
  /** per candidate: predicted TTFT, ms (seconds-based cost only) */
  ttftMs: Float64Array | null;
  /** per candidate: the cost the pick minimised (seconds, or load units) */
  cost: Float64Array;
  promptTokens: number;
}

/** Where a cache prediction for one engine came from. */
export type CacheSource = "kv" | "prefix" | "none";

/**
 * What a cache-aware policy knows about a request's prefix on each candidate: the caller owns the
 * indexes (KV events, approximate prefix) and answers for a given candidate list.
 */
export interface CachePrediction {
  /** the request's prompt length, in tokens (estimated when no tokenizer is used) */
  promptTokens: number;
  /** per candidate: prompt tokens the engine is predicted to hold, tier credits applied */
  cachedTokens: Float64Array;
  /** per candidate: how the prediction was made */
  source: CacheSource[];
  /**
   * the prompt's chained block ids (equal ids: equal prefixes) and the tokens one block stands for: a
   * prompt queued on an engine behind another that shares its prefix finds the prefix computed
   */
  blocks?: { ids: readonly number[]; tokensPerBlock: number } | undefined;
  /**
   * per candidate: tokens its GPU KV cache holds, in use or cached and free (vLLM evicts a cached block
   * only when it needs the room), from its KV events (blocks stored less removed, times the block
   * size); NaN where its events do not flow. What `kvUsage` cannot tell: whether a new prompt's blocks
   * go to empty room or push cached work out (predictive.ts prices a miss by that)
   */
  heldTokens?: Float64Array | undefined;
  /**
   * per candidate: prompt tokens beyond `cachedTokens` that a tier the engine loads from holds (a shared
   * cache server), and the seconds that load takes over the engine's link (bytes / bandwidth); absent
   * where no tier is known. The prompt's price there is the load, not a prefill of those tokens.
   */
  tierTokens?: Float64Array | undefined;
  tierLoadSeconds?: Float64Array | undefined;
}

export interface CacheOracle {
  predict(req: RequestView, engines: readonly EngineView[]): CachePrediction;
  /**
   * the policy picked `engine` for `req` (its prediction was `cachedTokens`, `source`; with the
   * seconds-based cost, `ttftMs` is the TTFT it predicted there and `bestOtherTtftMs` the best
   * other candidate's)
   */
  onPicked?(
    req: RequestView,
    engine: EngineView,
    cachedTokens: number,
    source: CacheSource,
    reason: string,
    ttftMs?: number,
    bestOtherTtftMs?: number,
  ): void;
}

export type Decision =
  | { kind: "picked"; engine: EngineView }
  /** engines serve the model but none is healthy */
  | { kind: "unavailable" }
  /** healthy engines serve the model but all are at their in-flight cap */
  | { kind: "saturated" }
  /** no engine serves the model */
  | { kind: "unknown-model" }
  /** the request's TTFT SLO: no engine is predicted to meet it (the best one's prediction, how far over) */
  | { kind: "over-slo"; predictedTtftMs: number; sloTtftMs: number; retryAfterMs: number };
