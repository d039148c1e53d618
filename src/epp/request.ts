// What the endpoint picker reads from an ext_proc request: the request headers it needs (path,
// content type, session key, debug switch, request id) and the body's model, prompt and messages,
// parsed once here with the router's rules (JSON objects only, bounded nesting, aliases resolved,
// the model of a multipart upload sniffed from its first part). Bad input becomes an HttpError that
// the stream answers as an ImmediateResponse in OpenAI's error format.
import { HttpError } from "../http/errors.js";
import { parseJsonObject } from "../http/body.js";
import type { HeaderEntry, MetadataStruct, MetadataValue } from "./messages.js";
import type { EppSettings } from "./types.js";

/** The request headers the picker uses. */
export interface RequestHead {
  method: string;
  path: string;
  contentType: string;
  sessionKey: string | undefined;
  /**
   * `x-switchyard-debug: 1`: the response gets the routing explanation, as from the router, when the
   * host lets this client have it (RoutingHost.mayDebug: the admin key in `x-switchyard-debug-key`)
   */
  debug: boolean;
  debugKey: string | undefined;
  /** the client's credential: the tenancy gate reads it, and it reaches engines only as HTTP's would */
  authorization: string | undefined;
  /**
   * the client's headers the engine must not get (with an allow-list: every one outside it but those
   * the gateway frames the request with), removed from the request the gateway sends on
   */
  dropped: string[];
  /** the client's own X-Request-Id, when a safe one came (it never reaches the engine) */
  clientRequestId: string | undefined;
}

const SAFE_REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * Headers the gateway needs to send the request at all, or the picker decides itself (the credential,
 * the destination, `x-request-id`, which it overwrites with its own): never on the removal list (Envoy
 * refuses to change the first ones anyway).
 */
const FRAMING = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "te",
  "connection",
  "authorization",
  "x-switchyard-debug-key",
  "x-gateway-destination-endpoint",
  "x-request-id",
]);

/**
 * The request headers the picker uses. `allowed`: the router's upstream allow-list (the headers vLLM
 * reads); every other client header is put on `dropped`, as the router's HTTP edge does not relay it.
 */
export function readHead(
  headers: readonly HeaderEntry[],
  sessionHeader: string,
  allowed?: ReadonlySet<string>,
): RequestHead {
  const want = sessionHeader.toLowerCase();
  const head: RequestHead = {
    method: "",
    path: "",
    contentType: "",
    sessionKey: undefined,
    debug: false,
    debugKey: undefined,
    authorization: undefined,
    dropped: [],
    clientRequestId: undefined,
  };
  for (const h of headers) {
    if (
      allowed !== undefined &&
      !h.key.startsWith(":") &&
      !h.key.startsWith("x-envoy-") &&
      !allowed.has(h.key) &&
      !FRAMING.has(h.key) &&
      !head.dropped.includes(h.key)
    )
      head.dropped.push(h.key);
    switch (h.key) {
      case ":method":
        head.method = h.value;
        break;
      case ":path":
        head.path = h.value;
        break;
      case "content-type":
        head.contentType = h.value;
        break;
      case "x-switchyard-debug":
        head.debug = h.value === "1";
        break;
      case "x-switchyard-debug-key":
        head.debugKey ??= h.value;
        break;
      case "x-request-id":
        if (SAFE_REQUEST_ID.test(h.value)) head.clientRequestId ??= h.value;
        break;
      case "authorization":
        // the first, as Node keeps the first of a repeated Authorization: one rule for both ways in
        head.authorization ??= h.value;
        break;
      default:
        if (h.key === want && h.value !== "") head.sessionKey = h.value;
    }
  }
  return head;
}

/** An inference request as the routing library sees it, and the body to forward. */
export interface InferenceRequest {
  model: string;
  /** the name the client gave (an alias before it was resolved), or the fleet's only model */
  requested: string;
  /** parsed JSON body (undefined for multipart uploads): prompt, messages, cache_salt */
  parsed: Record<string, unknown> | undefined;
  sessionKey: string | undefined;
  /** the body to forward: the client's bytes, or a re-serialisation when an alias was resolved */
  body: Buffer;
  rewritten: boolean;
}

const MULTIPART_MODEL = /name="model"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n/;
const MULTIPART_SNIFF_BYTES = 64 * 1024;

/**
 * The model, prompt and session key of a buffered request body. `soleModel` answers requests that
 * name no model, as vLLM does when it serves one.
 */
export function parseInference(
  head: RequestHead,
  body: Buffer,
  settings: EppSettings,
  soleModel: () => string | undefined,
): InferenceRequest {
  const ctype = head.contentType.toLowerCase();
  if (ctype.startsWith("multipart/form-data")) {
    const m = MULTIPART_MODEL.exec(body.subarray(0, MULTIPART_SNIFF_BYTES).toString("latin1"));
    const named = m ? Buffer.from(m[1]!, "latin1").toString("utf8") : undefined;
    const model = named !== undefined ? (aliasOf(settings, named) ?? named) : soleModel();
    if (model === undefined)
      throw new HttpError(400, "the form needs a `model` field before the file part", "model");
    return {
      model,
      requested: named ?? model,
      parsed: undefined,
      sessionKey: head.sessionKey,
      body,
      rewritten: false,
    };
  }
  const obj = parseJsonObject({ headers: { "content-type": head.contentType } }, body);
  let model = obj.model;
  const requested = typeof model === "string" ? model : undefined;
  let rewritten = false;
  let out = body;
  if (model === undefined || model === null) {
    model = soleModel();
    if (model === undefined) throw new HttpError(400, "the request needs a `model` field", "model");
  } else if (typeof model !== "string") {
    throw new HttpError(400, "`model` must be a string", "model");
  } else {
    const target = aliasOf(settings, model);
    if (target !== undefined && target !== model) {
      // the engines know only the served name: this (rare) request is re-serialised
      obj.model = target;
      model = target;
      out = Buffer.from(JSON.stringify(obj));
      rewritten = true;
    }
  }
  let sessionKey = head.sessionKey;
  const key = settings.sessionBodyKey;
  if (sessionKey === undefined && key) {
    const v = obj[key];
    if (typeof v === "string" || typeof v === "number") sessionKey = String(v);
  }
  return {
    model: model as string,
    requested: requested ?? (model as string),
    parsed: obj,
    sessionKey,
    body: out,
    rewritten,
  };
}

/** The served name an alias stands for: own keys only (`constructor` is no alias). */
function aliasOf(settings: EppSettings, name: string): string | undefined {
  return Object.hasOwn(settings.aliases, name) ? settings.aliases[name] : undefined;
}

/** The GIE subset hint's namespace and key (EPP protocol, "Endpoint Subset"). */
export const SUBSET_NAMESPACE = "envoy.lb.subset_hint";
export const SUBSET_KEY = "x-gateway-destination-endpoint-subset";
/** Where the picked endpoints go (header and dynamic metadata) and where the served one comes back. */
export const DESTINATION_NAMESPACE = "envoy.lb";
export const DESTINATION_KEY = "x-gateway-destination-endpoint";
export const SERVED_KEY = "x-gateway-destination-endpoint-served";

/** The endpoints the data plane allows: exact `host:port`s, and bare hosts (any port). */
export interface Subset {
  endpoints: Set<string>;
  hosts: Set<string>;
}

function addEndpoints(text: string, into: Subset): void {
  for (const raw of text.split(",")) {
    const ep = raw.trim();
    if (ep === "") continue;
    // "10.0.0.1:8000", "[fd00::1]:8000", or a bare "10.0.0.1" / "fd00::1" (every port of that host)
    if (/^\[.+\]:\d+$/.test(ep) || /^[^:]+:\d+$/.test(ep)) into.endpoints.add(ep.toLowerCase());
    else into.hosts.add(ep.replace(/^\[|\]$/g, "").toLowerCase());
  }
}

/**
 * The subset hint of a request, when the data plane sent one: a list of `ip:port` strings, or one
 * comma-separated string (declarative gateway filters write it that way). Undefined: no hint, pick
 * from the whole pool. An empty subset means no endpoint is eligible.
 */
export function readSubset(metadata: ReadonlyMap<string, MetadataStruct>): Subset | undefined {
  const ns = metadata.get(SUBSET_NAMESPACE);
  if (!ns || !(SUBSET_KEY in ns)) return undefined;
  const v: MetadataValue = ns[SUBSET_KEY]!;
  const out: Subset = { endpoints: new Set(), hosts: new Set() };
  if (typeof v === "string") addEndpoints(v, out);
  else if (Array.isArray(v)) for (const x of v) if (typeof x === "string") addEndpoints(x, out);
  return out;
}

/** The endpoint the data plane reports it used, from the response phase's metadata. */
export function readServed(metadata: ReadonlyMap<string, MetadataStruct>): string | undefined {
  const v = metadata.get(DESTINATION_NAMESPACE)?.[SERVED_KEY];
  return typeof v === "string" && v !== "" ? v.trim().toLowerCase() : undefined;
}
