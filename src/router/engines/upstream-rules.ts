// The one rule for what the router sends to an engine and what it takes back from an engine's error.
// Every call to an engine — a proxied attempt, the prefill step of disaggregated serving, health
// probes, the /v1/models and /metrics scrapes, the /version probe — gets its headers and credential
// here. Two callers once decided this each on their own and disagreed: a tenant's API key reached
// prefill engines while decode engines got none.
//
// The credential rule: an engine's own key (`backends[].apiKey`), else the fleet's (`engineApiKey`
// or VLLM_API_KEY); with neither, the client's Authorization passes through only when the router did
// not consume it (tenancy off: the router is transparent and the engine may check the client's key).
// With tenancy on the client's key is the router's credential and never goes upstream. Probes and
// scrapes carry the engine key or nothing: no client is behind them.
//
// Of the client's other headers and its query string only what vLLM reads goes on (an allow-list), so
// a client's cookie, x-api-key, x-forwarded-for or x-data-parallel-rank never reaches the engine.
import type { IncomingHttpHeaders } from "node:http";
import type { EngineSpec } from "../../discovery/types.js";

/** Request headers never relayed: hop-by-hop ones, the proxy's own credential, and what undici sets. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "http2-settings",
  "host",
  "content-length",
  "expect",
]);

/** Response headers not relayed: hop-by-hop ones (Content-Length is kept: bodies go whole) and ours. */
export const RESPONSE_SKIP: ReadonlySet<string> = (() => {
  const s = new Set([...HOP_BY_HOP, "x-request-id"]);
  s.delete("content-length");
  return s;
})();

/**
 * An engine's response headers as the client gets them (RESPONSE_SKIP left out), pushed flat onto
 * `into`; true when the answer is an event stream.
 */
export function relayedHeaders(raw: Buffer[], into: string[]): boolean {
  let sse = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toString("latin1");
    const lower = name.toLowerCase();
    if (RESPONSE_SKIP.has(lower)) continue;
    const value = raw[i + 1]!.toString("latin1");
    if (lower === "content-type" && value.includes("text/event-stream")) sse = true;
    into.push(name, value);
  }
  return sse;
}

/** What the credential rule needs to know of the configuration. */
export interface EngineKeyConfig {
  engineApiKey?: string | undefined;
}

/** The key an engine expects: its own, else the fleet's; undefined when none is configured. */
export function engineKey(spec: EngineSpec, cfg: EngineKeyConfig): string | undefined {
  return spec.apiKey ?? cfg.engineApiKey;
}

/**
 * The Authorization header value for a call on a client's behalf. `clientAuthorization` is what the
 * ingress handed on: present only when the router did not consume the client's credential.
 */
export function upstreamAuthorization(
  spec: EngineSpec,
  cfg: EngineKeyConfig,
  clientAuthorization: string | undefined,
): string | undefined {
  const key = engineKey(spec, cfg);
  if (key !== undefined) return `Bearer ${key}`;
  // a fleet-wide key configured for other engines means the client's key is not for engines at all
  if (cfg.engineApiKey === undefined) return clientAuthorization;
  return undefined;
}

/**
 * The client request headers an engine gets, on every relayed route: what vLLM 0.32 reads of a
 * request (the body's type, what the client accepts, its user agent for the engine's own logs, W3C
 * trace context). Everything else stops at the router: cookies, `x-api-key` and other credentials
 * meant for the router or a gateway before it, the client's own `x-forwarded-*` (the router writes
 * its own), `x-data-parallel-rank` (vLLM would pin the request to the rank a client names, past the
 * router's routing), the router's own control headers. An allow-list, because a deny-list misses the
 * next header a client finds the engine reads.
 */
export const FORWARDED_HEADERS: ReadonlySet<string> = new Set([
  "content-type",
  "accept",
  "user-agent",
  "traceparent",
  "tracestate",
]);

/**
 * The client's headers for upstream as a flat [name, value, ...] array: those FORWARDED_HEADERS
 * allows; with tracing on, not the client's traceparent (the engine gets the attempt span as its
 * parent); then `x-forwarded-for` with the client's address (the router's, never the client's own
 * claim) and our X-Request-Id. Authorization is decided per engine by `upstreamAuthorization`.
 */
export function forwardedHeaders(
  h: IncomingHttpHeaders,
  requestId: string,
  traced: boolean,
  clientAddress?: string | undefined,
): string[] {
  const out: string[] = [];
  for (const name in h) {
    if (!FORWARDED_HEADERS.has(name)) continue;
    if (traced && name === "traceparent") continue;
    const v = h[name];
    if (v === undefined) continue;
    out.push(name, Array.isArray(v) ? v.join(", ") : v);
  }
  if (clientAddress) out.push("x-forwarded-for", clientAddress);
  out.push("x-request-id", requestId);
  return out;
}

/**
 * The path and query an engine is sent: the client's path with only the query parameters the
 * endpoint's row names (../request/endpoints.ts `query`), in the client's order; no query at all on
 * every other route. A parameter vLLM does not read is at best ignored and at worst read by something in front
 * of the engine (a sidecar, a gateway) as the router's word.
 */
export function upstreamPath(pathAndQuery: string, allowed: readonly string[]): string {
  const q = pathAndQuery.indexOf("?");
  if (q < 0) return pathAndQuery;
  const path = pathAndQuery.slice(0, q);
  if (allowed.length === 0) return path;
  const kept: string[] = [];
  for (const part of pathAndQuery.slice(q + 1).split("&")) {
    const eq = part.indexOf("=");
    let name = eq < 0 ? part : part.slice(0, eq);
    try {
      name = decodeURIComponent(name.replace(/\+/g, " "));
    } catch {
      continue;
    }
    if (allowed.includes(name)) kept.push(part);
  }
  return kept.length > 0 ? `${path}?${kept.join("&")}` : path;
}

/** Headers of a router-initiated call (health, models, metrics, version): the engine key or nothing. */
export function probeHeaders(spec: EngineSpec, cfg: EngineKeyConfig): Record<string, string> {
  const key = engineKey(spec, cfg);
  return key !== undefined ? { authorization: `Bearer ${key}` } : {};
}

/** Longest text taken from an engine's error answer that is not JSON. */
const MAX_RAW_ERROR_CHARS = 500;

/**
 * The message (and `param`) of an engine's error answer: OpenAI/vLLM's `{"error": {...}}`, a bare
 * `{"message"}` or `{"error": "..."}`, FastAPI's `{"detail": "..."}`, else the first characters of
 * the raw text.
 */
export function engineErrorMessage(
  body: Buffer | string | undefined,
  status: number,
): { message: string; param: string | null } {
  const fallback = `engine answered ${status}`;
  if (body === undefined) return { message: fallback, param: null };
  const text = typeof body === "string" ? body : body.toString("utf8");
  try {
    const doc = JSON.parse(text) as {
      error?: { message?: unknown; param?: unknown } | string;
      message?: unknown;
      detail?: unknown;
    };
    const e = doc.error;
    if (typeof e === "object" && e !== null && typeof e.message === "string")
      return { message: e.message, param: typeof e.param === "string" ? e.param : null };
    if (typeof doc.message === "string") return { message: doc.message, param: null };
    if (typeof e === "string") return { message: e, param: null };
    if (typeof doc.detail === "string") return { message: doc.detail, param: null };
  } catch {
    // not JSON
  }
  return { message: text.slice(0, MAX_RAW_ERROR_CHARS) || fallback, param: null };
}
