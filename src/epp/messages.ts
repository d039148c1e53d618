// The Envoy ext_proc v3 messages the endpoint picker reads and writes, as typed values, decoded and
// encoded by hand with the field numbers of Envoy's published protos
// (envoy/service/ext_proc/v3/external_processor.proto, envoy/config/core/v3/base.proto,
// envoy/type/v3/http_status.proto, google/protobuf/struct.proto) and grpc.health.v1. Fields the
// picker does not use are skipped on read and never written. Parsing happens here, once, with
// limits: a peer's message past them is refused with WireError.
import { ProtoReader, ProtoWriter, WireError, WireType } from "./wire.js";

/** google.protobuf.Value as plain data. */
export type MetadataValue = null | number | string | boolean | MetadataValue[] | MetadataStruct;
export interface MetadataStruct {
  [key: string]: MetadataValue;
}

export interface HeaderEntry {
  /** lower-case as Envoy sends it (HTTP/2 style, pseudo-headers included: `:path`, `:status`) */
  key: string;
  value: string;
}

/** The phase a ProcessingRequest carries (its oneof). */
export type Phase =
  | "requestHeaders"
  | "responseHeaders"
  | "requestBody"
  | "responseBody"
  | "requestTrailers"
  | "responseTrailers";

/** ProcessingMode.BodySendMode (envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto). */
export const enum BodySendMode {
  None = 0,
  Streamed = 1,
  Buffered = 2,
  BufferedPartial = 3,
  FullDuplexStreamed = 4,
  Grpc = 5,
}

export interface ProcessingRequest {
  phase: Phase | undefined;
  /** headers or trailers of the phase */
  headers: HeaderEntry[];
  body: Buffer | undefined;
  endOfStream: boolean;
  /** metadata_context.filter_metadata: namespace → struct */
  metadata: Map<string, MetadataStruct>;
  /** sent on a stream's first message by Envoy versions that have it */
  protocolConfig: { requestBodyMode: number; responseBodyMode: number } | undefined;
  /** the filter only observes: responses are ignored by Envoy */
  observabilityMode: boolean;
}

export interface DecodeLimits {
  /** headers (or trailers) per message */
  maxHeaders: number;
  /** nesting of metadata structs and lists */
  maxDepth: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = { maxHeaders: 1024, maxDepth: 16 };

// ---- google.protobuf.Struct / Value / ListValue ---------------------------------------------------

function decodeValue(r: ProtoReader, depth: number, lim: DecodeLimits): MetadataValue {
  if (depth > lim.maxDepth) throw new WireError("metadata nested too deeply");
  let v: MetadataValue = null;
  while (!r.done) {
    const t = r.tag();
    switch (t) {
      case (1 << 3) | WireType.Varint: // null_value
        r.varint();
        v = null;
        break;
      case (2 << 3) | WireType.Fixed64: // number_value
        v = r.double();
        break;
      case (3 << 3) | WireType.Bytes: // string_value
        v = r.string();
        break;
      case (4 << 3) | WireType.Varint: // bool_value
        v = r.bool();
        break;
      case (5 << 3) | WireType.Bytes: // struct_value
        v = decodeStruct(r.message(), depth + 1, lim);
        break;
      case (6 << 3) | WireType.Bytes: {
        // list_value: repeated Value values = 1
        const list: MetadataValue[] = [];
        const lr = r.message();
        while (!lr.done) {
          const lt = lr.tag();
          if (lt === ((1 << 3) | WireType.Bytes)) list.push(decodeValue(lr.message(), depth + 1, lim));
          else lr.skip(lt & 7);
        }
        v = list;
        break;
      }
      default:
        r.skip(t & 7);
    }
  }
  return v;
}

/** A map<string, V> numbered 1 (entries { key = 1; value = 2 }), each entry handed to `put`. */
function readStringMap<V>(
  r: ProtoReader,
  empty: () => V,
  readValue: (m: ProtoReader) => V,
  put: (key: string, value: V) => void,
): void {
  while (!r.done) {
    const t = r.tag();
    if (t !== ((1 << 3) | WireType.Bytes)) {
      r.skip(t & 7);
      continue;
    }
    const e = r.message();
    let key = "";
    let value = empty();
    while (!e.done) {
      const et = e.tag();
      if (et === ((1 << 3) | WireType.Bytes)) key = e.string();
      else if (et === ((2 << 3) | WireType.Bytes)) value = readValue(e.message());
      else e.skip(et & 7);
    }
    put(key, value);
  }
}

const emptyStruct = (): MetadataStruct => Object.create(null) as MetadataStruct;

/** Struct { map<string, Value> fields = 1 } */
function decodeStruct(r: ProtoReader, depth: number, lim: DecodeLimits): MetadataStruct {
  if (depth > lim.maxDepth) throw new WireError("metadata nested too deeply");
  const out = emptyStruct();
  readStringMap<MetadataValue>(
    r,
    () => null,
    (m) => decodeValue(m, depth + 1, lim),
    (k, v) => (out[k] = v),
  );
  return out;
}

function writeValue(w: ProtoWriter, v: MetadataValue): void {
  if (v === null) w.varint(1, 0);
  else if (typeof v === "number") w.double(2, v);
  else if (typeof v === "string") w.string(3, v);
  else if (typeof v === "boolean") w.bool(4, v);
  else if (Array.isArray(v)) w.message(6, (l) => v.forEach((x) => l.message(1, (vw) => writeValue(vw, x))));
  else w.message(5, (s) => writeStruct(s, v));
}

function writeStruct(w: ProtoWriter, s: MetadataStruct): void {
  for (const [k, v] of Object.entries(s)) {
    w.message(1, (e) => {
      e.string(1, k);
      e.message(2, (vw) => writeValue(vw, v));
    });
  }
}

// ---- envoy.config.core.v3 -------------------------------------------------------------------------

/** HeaderMap { repeated HeaderValue headers = 1 }; HeaderValue { key = 1; value = 2; raw_value = 3 }. */
function decodeHeaderMap(r: ProtoReader, lim: DecodeLimits, out: HeaderEntry[]): void {
  while (!r.done) {
    const t = r.tag();
    if (t !== ((1 << 3) | WireType.Bytes)) {
      r.skip(t & 7);
      continue;
    }
    if (out.length >= lim.maxHeaders) throw new WireError(`more than ${lim.maxHeaders} headers`);
    const h = r.message();
    let key = "";
    let value: string | undefined;
    let raw: string | undefined;
    while (!h.done) {
      const ht = h.tag();
      if (ht === ((1 << 3) | WireType.Bytes)) key = h.string();
      else if (ht === ((2 << 3) | WireType.Bytes)) value = h.string();
      else if (ht === ((3 << 3) | WireType.Bytes)) raw = h.bytes().toString("latin1");
      else h.skip(ht & 7);
    }
    // Envoy sends raw_value (bytes) since 1.27; value is the older string field
    out.push({ key: key.toLowerCase(), value: raw ?? value ?? "" });
  }
}

/** Metadata { map<string, Struct> filter_metadata = 1 } */
function decodeMetadata(r: ProtoReader, lim: DecodeLimits, out: Map<string, MetadataStruct>): void {
  readStringMap(
    r,
    emptyStruct,
    (m) => decodeStruct(m, 1, lim),
    (k, v) => out.set(k, v),
  );
}

// ---- envoy.service.ext_proc.v3.ProcessingRequest ----------------------------------------------------

const PHASE_BY_FIELD: Record<number, Phase> = {
  2: "requestHeaders",
  3: "responseHeaders",
  4: "requestBody",
  5: "responseBody",
  6: "requestTrailers",
  7: "responseTrailers",
};

export function decodeProcessingRequest(
  buf: Buffer,
  lim: DecodeLimits = DEFAULT_DECODE_LIMITS,
): ProcessingRequest {
  const r = new ProtoReader(buf);
  const out: ProcessingRequest = {
    phase: undefined,
    headers: [],
    body: undefined,
    endOfStream: false,
    metadata: new Map(),
    protocolConfig: undefined,
    observabilityMode: false,
  };
  while (!r.done) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    const phase = PHASE_BY_FIELD[field];
    if (phase && wire === WireType.Bytes) {
      out.phase = phase;
      out.headers = [];
      out.body = undefined;
      out.endOfStream = false;
      const m = r.message();
      while (!m.done) {
        const mt = m.tag();
        const mf = mt >>> 3;
        if (phase === "requestHeaders" || phase === "responseHeaders") {
          // HttpHeaders { HeaderMap headers = 1; attributes = 2; bool end_of_stream = 3 }
          if (mt === ((1 << 3) | WireType.Bytes)) decodeHeaderMap(m.message(), lim, out.headers);
          else if (mt === ((3 << 3) | WireType.Varint)) out.endOfStream = m.bool();
          else m.skip(mt & 7);
        } else if (phase === "requestBody" || phase === "responseBody") {
          // HttpBody { bytes body = 1; bool end_of_stream = 2; bool end_of_stream_without_message = 3 }
          if (mt === ((1 << 3) | WireType.Bytes)) out.body = m.bytes();
          else if (mf === 2 && (mt & 7) === WireType.Varint) out.endOfStream = m.bool();
          else if (mf === 3 && (mt & 7) === WireType.Varint) out.endOfStream ||= m.bool();
          else m.skip(mt & 7);
        } else {
          // HttpTrailers { HeaderMap trailers = 1 }
          if (mt === ((1 << 3) | WireType.Bytes)) decodeHeaderMap(m.message(), lim, out.headers);
          else m.skip(mt & 7);
        }
      }
    } else if (t === ((8 << 3) | WireType.Bytes)) {
      decodeMetadata(r.message(), lim, out.metadata);
    } else if (t === ((10 << 3) | WireType.Varint)) {
      out.observabilityMode = r.bool();
    } else if (t === ((11 << 3) | WireType.Bytes)) {
      // ProtocolConfiguration { request_body_mode = 1; response_body_mode = 2; ... = 3 }
      const pc = { requestBodyMode: 0, responseBodyMode: 0 };
      const m = r.message();
      while (!m.done) {
        const mt = m.tag();
        if (mt === ((1 << 3) | WireType.Varint)) pc.requestBodyMode = m.varint();
        else if (mt === ((2 << 3) | WireType.Varint)) pc.responseBodyMode = m.varint();
        else m.skip(mt & 7);
      }
      out.protocolConfig = pc;
    } else r.skip(wire);
  }
  return out;
}

// ---- envoy.service.ext_proc.v3.ProcessingResponse ---------------------------------------------------

export interface CommonResponse {
  /** set with OVERWRITE_IF_EXISTS_OR_ADD, so a client cannot pre-set a routing header */
  setHeaders?: ReadonlyArray<readonly [string, string]>;
  removeHeaders?: readonly string[];
  clearRouteCache?: boolean;
  /** FULL_DUPLEX_STREAMED: the body chunk Envoy forwards (BodyMutation.streamed_response) */
  streamed?: { body: Buffer; endOfStream: boolean };
  /** BUFFERED: the whole body replaced (BodyMutation.body) */
  replaceBody?: Buffer;
}

export type ProcessingResponse =
  | {
      kind: "requestHeaders" | "responseHeaders" | "requestBody" | "responseBody";
      common?: CommonResponse;
      dynamicMetadata?: MetadataStruct;
    }
  | { kind: "requestTrailers" | "responseTrailers" }
  | {
      kind: "immediate";
      /** HTTP status of the local reply Envoy sends the client */
      status: number;
      headers?: ReadonlyArray<readonly [string, string]>;
      body?: Buffer;
      details?: string;
    };

const RESPONSE_FIELD = {
  requestHeaders: 1,
  responseHeaders: 2,
  requestBody: 3,
  responseBody: 4,
  requestTrailers: 5,
  responseTrailers: 6,
  immediate: 7,
} as const;

const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/** HeaderMutation { repeated HeaderValueOption set_headers = 1; repeated string remove_headers = 2 } */
function writeHeaderMutation(
  w: ProtoWriter,
  set: ReadonlyArray<readonly [string, string]> = [],
  remove: readonly string[] = [],
): void {
  for (const [k, v] of set) {
    // HeaderValueOption { HeaderValue header = 1; append_action = 3 }
    w.message(1, (o) => {
      o.message(1, (h) => h.string(1, k).bytes(3, Buffer.from(v, "latin1")));
      o.varint(3, OVERWRITE_IF_EXISTS_OR_ADD);
    });
  }
  for (const k of remove) w.string(2, k);
}

/** CommonResponse { status = 1; header_mutation = 2; body_mutation = 3; trailers = 4; clear_route_cache = 5 } */
function writeCommon(w: ProtoWriter, c: CommonResponse): void {
  if (c.setHeaders?.length || c.removeHeaders?.length)
    w.message(2, (hm) => writeHeaderMutation(hm, c.setHeaders, c.removeHeaders));
  if (c.streamed) {
    const s = c.streamed;
    // BodyMutation { StreamedBodyResponse streamed_response = 3 }: { bytes body = 1; bool end_of_stream = 2 }
    w.message(3, (bm) =>
      bm.message(3, (sr) => {
        sr.bytes(1, s.body);
        if (s.endOfStream) sr.bool(2, true);
      }),
    );
  }
  if (c.replaceBody) {
    const body = c.replaceBody;
    w.message(3, (bm) => bm.bytes(1, body));
  }
  if (c.clearRouteCache) w.bool(5, true);
}

export function encodeProcessingResponse(resp: ProcessingResponse): Buffer {
  const w = new ProtoWriter();
  const field = RESPONSE_FIELD[resp.kind];
  switch (resp.kind) {
    case "requestTrailers":
    case "responseTrailers":
      w.message(field, () => undefined);
      break;
    case "immediate":
      // ImmediateResponse { HttpStatus status = 1 { code = 1 }; HeaderMutation headers = 2; bytes body = 3; string details = 5 }
      w.message(field, (ir) => {
        ir.message(1, (s) => s.varint(1, resp.status));
        if (resp.headers?.length) ir.message(2, (hm) => writeHeaderMutation(hm, resp.headers));
        if (resp.body?.length) ir.bytes(3, resp.body);
        if (resp.details) ir.string(5, resp.details);
      });
      break;
    default: {
      // HeadersResponse / BodyResponse { CommonResponse response = 1 }
      const common = resp.common;
      w.message(field, (hr) => {
        if (common) hr.message(1, (c) => writeCommon(c, common));
      });
      if (resp.dynamicMetadata) {
        const md = resp.dynamicMetadata;
        w.message(8, (s) => writeStruct(s, md));
      }
    }
  }
  return w.finish();
}

// ---- grpc.health.v1 ---------------------------------------------------------------------------------

/** HealthCheckRequest { string service = 1 } */
export function decodeHealthCheckRequest(buf: Buffer): string {
  const r = new ProtoReader(buf);
  let service = "";
  while (!r.done) {
    const t = r.tag();
    if (t === ((1 << 3) | WireType.Bytes)) service = r.string();
    else r.skip(t & 7);
  }
  return service;
}

export const enum ServingStatus {
  Unknown = 0,
  Serving = 1,
  NotServing = 2,
  ServiceUnknown = 3,
}

/** HealthCheckResponse { ServingStatus status = 1 } */
export function encodeHealthCheckResponse(status: ServingStatus): Buffer {
  return new ProtoWriter().varint(1, status).finish();
}
