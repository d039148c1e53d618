// What the endpoint picker needs from the process it runs in, as an interface: the router provides
// it (src/router/edge/epp-glue.ts), so this folder imports only the routing library below it, never the
// router. Every decision goes through the host's policy over the host's snapshot, and every pick
// holds one of the host's in-flight slots: an EPP-routed request counts exactly like a proxied one.
// Tenancy is the host's own gate too (src/tenancy/router-gate.ts, the one HTTP ingress calls), so a
// request through the gateway meets the same keys, limits and cache salt as one sent to the router.
import type { Registry as PromRegistry } from "prom-client";
import type { EngineView, Policy, RequestView } from "../routing/index.js";
import type { HttpError } from "../http/errors.js";
import type { RouterGate } from "../tenancy/router-gate.js";
import type { Tenant } from "../tenancy/state.js";

export interface Observer {
  observe(v: number): void;
}

/** One in-flight slot on an engine, held from the pick to the response's end (or the stream's). */
export interface Slot {
  /** the engine's id (its base URL) */
  readonly engineId: string;
  /**
   * frees the slot; a slot claimed for a decision tells its policy the request ended there (`completed`:
   * answered whole, else failed, moved or abandoned), as the proxy does for a request it relays
   */
  release(completed?: boolean): void;
}

/** the decision a slot was claimed for: its policy hears how the request ended */
export interface Decided {
  view: RequestView;
  policy: Policy;
}

/** Settings read per request, so a config reload applies to the next one. */
export interface EppSettings {
  /** header carrying the session key (session policy) */
  sessionHeader: string;
  /** body field used as the session key when the header is absent */
  sessionBodyKey: string | undefined;
  /** largest request body buffered for a decision; larger ones are answered 413 */
  maxBodyBytes: number;
  /** fallback endpoints named after the primary one (the gateway's retries walk the list) */
  fallbacks: number;
  /** longest a stream may hold a slot (the router's total timeout) */
  streamTimeoutMs: number;
  /** models clients may name, mapped to the served name (the router's aliases) */
  aliases: Readonly<Record<string, string>>;
}

/** The router's per-request series, as `RouterMetrics` has them. */
export interface RequestMetrics {
  /** requests being served now (the router's switchyard_requests_in_flight) */
  inFlight: number;
  forModel(model: string): { ttft: Observer; itl: Observer; e2e: Observer };
  countRequest(model: string, engine: string, status: number, policy: string): void;
  /** refusals by admission (`queue`): the 429s of a saturated fleet */
  readonly rejected: { inc(labels: { reason: string }): void };
  readonly registry: PromRegistry;
}

/**
 * What the router's endpoint table says of a request's method and path (the query cut off): whether
 * the picker may route it at all, and what pins it to the engine holding a stored response.
 */
export interface PathRule {
  /** the answer the router's HTTP edge gives this method and path (404 per-engine or unknown, 405) */
  refusal?: HttpError | undefined;
  /** the stored response id the path names (`/v1/responses/{id}`, its cancel) */
  pathId?: string | undefined;
  /** the body's `previous_response_id` pins the request to its response's engine */
  previousResponse?: boolean | undefined;
  /** the answer carries a response id the router remembers (with its engine and owner) */
  remembers?: boolean | undefined;
  /**
   * `issued`: the engine names the request by its X-Request-Id and an abort can stop it; `scoped`:
   * an abort, whose `request_ids` keep only the caller's own requests (the router's rule)
   */
  abortIds?: "issued" | "scoped" | undefined;
  /** the route's request is a JSON body the router reads (its tenancy controls are in the body) */
  jsonBody?: boolean | undefined;
}

/** Where a stored response lives: its engine, and a slot there when one was asked for. */
export interface StoredResponse {
  engineId: string;
  slot: Slot | undefined;
}

/** A request an abort may name, while it runs (the host's record, given back at its end). */
export type IssuedRequest = object;

export interface RoutingHost {
  /**
   * The router's upstream header allow-list (what vLLM reads of a request): every other client header
   * is removed from the request the gateway sends, and `x-request-id` is set to the picker's own.
   * Absent: headers are left as the gateway has them.
   */
  readonly upstreamHeaders?: ReadonlySet<string>;
  /**
   * The router's endpoint table on a request: what it does not relay is refused as over HTTP (no
   * engine, no engine key), and what it pins goes to its engine. Absent: every path is picked.
   */
  pathRule?(method: string, path: string): PathRule;
  /**
   * The engine holding stored response `id` for `tenant` (its name; undefined with tenancy off), with
   * a slot there when `claim`; undefined when the router does not know it and tenancy is off (picked
   * as any request). Throws the HTTP edge's 404 for another tenant's response, one whose owner is not
   * known with tenancy on, or one whose engine is gone. A promise where the host waits for an entry
   * still on its way from the rest of its router group (as its HTTP edge waits).
   */
  storedResponse?(
    id: string,
    tenant: string | undefined,
    claim: boolean,
  ): StoredResponse | undefined | Promise<StoredResponse | undefined>;
  /**
   * Reads a Responses answer's id off its first bytes and remembers it with the engine that served
   * it and its tenant (the router's response affinity); the returned function answers true once it
   * needs no more bytes.
   */
  watchResponse?(model: string, tenant: string | undefined): (chunk: Buffer, engineId: string) => boolean;
  /**
   * A token-in request sent with the picker's id `upstreamId` by `tenant` ("" with tenancy off), that
   * its client named `clientId`: an abort of the same tenant may name it until `endIssued`.
   */
  issue?(tenant: string, upstreamId: string, clientId: string | undefined): IssuedRequest;
  endIssued?(issued: IssuedRequest): void;
  /**
   * the engine's ids of those an abort names that `tenant`'s requests in flight carry (`keepUnknown`,
   * tenancy off: other ids kept as they are)
   */
  scopeAbort?(tenant: string, ids: unknown, keepUnknown: boolean): string[];

  /** the engines in rotation, as policies see them */
  snapshot(): readonly EngineView[];
  /** the policy new requests are routed with (the router's own object, KV-event oracle included) */
  policy(): Policy;
  settings(): EppSettings;
  /**
   * Whether `tenant` (undefined: tenancy off) may use the model it named (`requested`, served as
   * `served`): one it may not use is answered as one that does not exist. Absent: every model.
   */
  mayUse?(tenant: Tenant | undefined, requested: string, served: string): boolean;
  /** some engine (ready or not) serves this model: decides 404 versus 503 */
  knowsModel(model: string): boolean;
  /** the only model in the fleet, when there is exactly one */
  soleModel(): string | undefined;
  /** claims one in-flight slot on the engine; undefined when it left the registry */
  claim(engineId: string, decided?: Decided): Slot | undefined;
  /**
   * Waits in the router's admission queue until `tryAcquire` claims a slot; rejects with a 429
   * HttpError when the queue is full or the wait times out, with an Error when `signal` aborts.
   * A tenant's request waits in its tenant's flow (weight, priority), as a proxied one does.
   */
  waitForRoom(
    tryAcquire: () => boolean,
    signal: AbortSignal,
    tenant?: Tenant,
    view?: RequestView,
  ): Promise<void>;
  /** API keys, tenant limits and cache salt: the router's own gate, off until a key is configured */
  readonly gate: RouterGate;
  /**
   * The Authorization the engine gets (the router's upstream rule): the engine's key, else the
   * client's when tenancy did not consume it; undefined: none.
   */
  upstreamAuthorization(engineId: string, clientAuthorization: string | undefined): string | undefined;
  /** the router would take traffic: an engine is in rotation and no drain has started */
  ready(): boolean;
  /**
   * what prefix and KV routing read of a request at `path`: its prompt or chat messages, wherever the
   * router's endpoint table keeps them (Anthropic Messages and Responses bodies as chat messages);
   * absent: the body's `prompt` and `messages`
   */
  routingInput?(path: string, parsed: Record<string, unknown>): { prompt: unknown; messages: unknown };
  /** the routing library's explanation of the last decision for a request (debug header) */
  explain(view: RequestView): string | undefined;
  /**
   * whether a request's `x-switchyard-debug: 1` is honoured, given its `x-switchyard-debug-key`: the
   * router's rule (debug.allowHeader), so the explanation (engine URLs, predicted cached tokens) reaches
   * through the gateway only whom it reaches over HTTP
   */
  mayDebug(key: string | undefined): boolean;
  readonly metrics: RequestMetrics;
}
