// The answers an ext_proc stream sends besides pass-through: the destination (the header and the
// dynamic metadata naming the endpoints, with the router's header allow-list and upstream key rule),
// a refusal as an ImmediateResponse with an OpenAI error body, and a body sent back in streamed chunks.
import { HttpError, errorBody } from "../http/errors.js";
import type { CommonResponse, MetadataStruct, ProcessingResponse } from "./messages.js";
import { DESTINATION_KEY, DESTINATION_NAMESPACE, type RequestHead } from "./request.js";
import type { RoutingHost } from "./types.js";

/** Envoy caps a streamed body chunk at 64 KiB in some builds: stay under it (as GIE's EPP does). */
export const BODY_CHUNK_BYTES = 62_000;

/** The answer to a tenant's JSON-bodied request through a gateway that sends the picker no body. */
export function noBodyForTenant(): HttpError {
  return new HttpError(
    501,
    "request_body_mode NONE sends the endpoint picker no body, and with tenant keys the router must read a JSON body before it is routed (cache isolation, stored-response owners, usage): set the gateway's processing_mode request_body_mode to FULL_DUPLEX_STREAMED (the GIE contract) or BUFFERED",
  );
}

/** A body send mode as Envoy's processing_mode names it. */
export function modeName(m: number): string {
  return ["NONE", "STREAMED", "BUFFERED", "BUFFERED_PARTIAL", "FULL_DUPLEX_STREAMED", "GRPC"][m] ?? String(m);
}

export function streamed(
  kind: "requestBody" | "responseBody",
  body: Buffer,
  endOfStream: boolean,
): ProcessingResponse {
  return { kind, common: { streamed: { body, endOfStream } } };
}

/** Full duplex: the body as streamed chunks of at most BODY_CHUNK_BYTES, the last one marked if `last`. */
export function sendBodyChunks(
  sink: { send(resp: ProcessingResponse): void },
  body: Buffer,
  last: boolean,
): void {
  if (body.length === 0) sink.send(streamed("requestBody", body, last));
  for (let off = 0; off < body.length; off += BODY_CHUNK_BYTES) {
    const end = Math.min(body.length, off + BODY_CHUNK_BYTES);
    sink.send(streamed("requestBody", body.subarray(off, end), last && end === body.length));
  }
}

/** What the destination's headers are made from: the request, its tenant, the router's rules. */
export interface DestinationContext {
  head: RequestHead | undefined;
  /** a tenant was authenticated: its key stops here */
  tenant: boolean;
  /** the X-Request-Id the engine gets: the picker's own */
  upstreamId: string;
  host: Pick<RoutingHost, "upstreamHeaders" | "upstreamAuthorization">;
  /** the engine id at an `ip:port` endpoint */
  engineAt: (endpoint: string) => string | undefined;
}

/** The header and the dynamic metadata naming the endpoints, identical as the contract requires. */
export function destinationResponse(
  kind: "requestHeaders" | "requestBody",
  endpoints: readonly string[],
  ctx: DestinationContext,
  extra: ReadonlyArray<readonly [string, string]> = [],
  replaceBody?: Buffer,
): ProcessingResponse {
  const head = ctx.head;
  const value = endpoints.join(",");
  const md: MetadataStruct = { [DESTINATION_NAMESPACE]: { [DESTINATION_KEY]: value } };
  const setHeaders: Array<readonly [string, string]> = [[DESTINATION_KEY, value], ...extra];
  // only what the router's HTTP edge relays: the client's other headers are removed, its
  // X-Request-Id among them (vLLM names the request by it), and the picker's own id is set
  let removeHeaders: string[] | undefined = head?.dropped.length ? [...head.dropped] : undefined;
  if (ctx.host.upstreamHeaders) setHeaders.push(["x-request-id", ctx.upstreamId]);
  // the router's upstream rule, for the primary engine: its key, else the client's when tenancy
  // did not consume it; a tenant's key never reaches an engine
  const client = ctx.tenant ? undefined : head?.authorization;
  const engineId = ctx.engineAt(endpoints[0]!);
  const auth = engineId !== undefined ? ctx.host.upstreamAuthorization(engineId, client) : client;
  if (auth !== undefined) {
    if (auth !== head?.authorization) setHeaders.push(["authorization", auth]);
  } else if (head?.authorization !== undefined) (removeHeaders ??= []).push("authorization");
  // the admin key a debugging client sent stops here, as it does at the router's HTTP edge
  if (head?.debugKey !== undefined) (removeHeaders ??= []).push("x-switchyard-debug-key");
  const common: CommonResponse = { setHeaders, removeHeaders, clearRouteCache: true, replaceBody };
  return { kind, common, dynamicMetadata: md };
}

/** A refusal as the contract answers it: an ImmediateResponse with the status and an OpenAI error body. */
export function refusalResponse(e: HttpError | undefined, status: number): ProcessingResponse {
  const message = e?.message ?? "internal endpoint picker error";
  const body = Buffer.from(errorBody(status, message, e?.param ?? null, e?.type));
  const headers: Array<readonly [string, string]> = [["content-type", "application/json"]];
  for (const [k, v] of Object.entries(e?.headers ?? {})) headers.push([k, v]);
  return { kind: "immediate", status, headers, body, details: `switchyard_epp_${status}` };
}
