// The endpoint picker's gRPC server: Envoy's ext_proc v3 `Process` (bidirectional streaming) and the
// standard grpc.health.v1 `Check` with the services the GIE protocol names (liveness, readiness,
// envoy.service.ext_proc.v3.ExternalProcessor). @grpc/grpc-js carries HTTP/2 and gRPC framing;
// messages pass through it as raw bytes and are decoded in messages.ts, at this boundary, with
// limits: message size, open streams, headers per message, metadata depth, buffered body bytes.
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { Counter, Gauge } from "prom-client";
import { logger } from "../obs/log.js";
import {
  decodeHealthCheckRequest,
  decodeProcessingRequest,
  encodeHealthCheckResponse,
  encodeProcessingResponse,
  ServingStatus,
  type ProcessingRequest,
} from "./messages.js";
import { EndpointPicker } from "./picker.js";
import { ExtProcStream, GrpcCode, type StreamSink } from "./stream.js";
import type { RoutingHost } from "./types.js";
import { WireError } from "./wire.js";

const log = logger("epp");

export const EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor";

export interface EppServerOptions {
  host: string;
  /** 0 picks a free port (tests) */
  port: number;
  /** serve TLS with this certificate chain and key (PEM files); plaintext HTTP/2 otherwise */
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  /**
   * with TLS: callers must present a certificate this PEM CA bundle signed (mutual TLS), so only
   * the gateway holding one gets picks or sees the clients' keys in the headers it forwards
   */
  tlsClientCaFile?: string | undefined;
  /** ext_proc streams open at once (one per HTTP request in flight through the gateway) */
  maxStreams: number;
  /** largest gRPC message accepted (a BUFFERED body arrives in one) */
  maxMessageBytes: number;
}

const identity = (b: Buffer): Buffer => b;
function method(path: string, stream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: stream,
    responseStream: stream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}
const EXT_PROC = { Process: method(`/${EXT_PROC_SERVICE}/Process`, true) };
const HEALTH = { Check: method("/grpc.health.v1.Health/Check", false) };

/** Messages a stream may hold while a decision waits for room (reading is paused meanwhile). */
const MAX_PENDING = 64;

export class EppServer {
  private readonly server: grpc.Server;
  private readonly picker: EndpointPicker;
  private active = 0;
  private closing = false;
  private boundPort = 0;
  private readonly fallbacks: Counter;

  constructor(
    private readonly host: RoutingHost,
    private readonly opts: EppServerOptions,
  ) {
    this.picker = new EndpointPicker(host);
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": opts.maxMessageBytes,
      "grpc.max_concurrent_streams": opts.maxStreams,
      // a gateway that vanished without closing its connection is found by pings
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.keepalive_permit_without_calls": 1,
    });
    this.server.addService(EXT_PROC, {
      Process: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.process(call),
    });
    this.server.addService(HEALTH, {
      Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        this.check(call, cb),
    });
    const registry = host.metrics.registry;
    const open = () => this.active;
    new Gauge({
      name: "switchyard_epp_streams",
      help: "ext_proc streams open on the endpoint picker (one per request in flight through the gateway)",
      registers: [registry],
      collect() {
        this.set(open());
      },
    });
    this.fallbacks = new Counter({
      name: "switchyard_epp_served_by_fallback_total",
      help: "responses the gateway reported from an endpoint other than the picker's primary one",
      registers: [registry],
    });
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<number> {
    const o = this.opts;
    const creds =
      o.tlsCertFile && o.tlsKeyFile
        ? grpc.ServerCredentials.createSsl(
            o.tlsClientCaFile ? readFileSync(o.tlsClientCaFile) : null,
            [{ cert_chain: readFileSync(o.tlsCertFile), private_key: readFileSync(o.tlsKeyFile) }],
            o.tlsClientCaFile !== undefined,
          )
        : grpc.ServerCredentials.createInsecure();
    const host = o.host.includes(":") && !o.host.startsWith("[") ? `[${o.host}]` : o.host;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${o.port}`, creds, (err, port) => (err ? reject(err) : resolve(port))),
    );
    log.info(
      { port: this.boundPort, tls: Boolean(o.tlsCertFile), clientCerts: Boolean(o.tlsClientCaFile) },
      "endpoint picker (ext_proc) listening",
    );
    return this.boundPort;
  }

  /** Readiness off, no new streams; open ones get up to `drainMs` to finish, then are cut. */
  async close(drainMs: number): Promise<void> {
    this.closing = true;
    const done = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), drainMs)));
    if (await Promise.race([done.then(() => false), late])) {
      log.warn({ streams: this.active }, "endpoint picker drain deadline passed: cutting open streams");
      this.server.forceShutdown();
    }
    clearTimeout(timer);
  }

  private check(call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>): void {
    let service: string;
    try {
      service = decodeHealthCheckRequest(call.request);
    } catch (err) {
      return cb({ code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message });
    }
    const serving = !this.closing && this.host.ready();
    let status: ServingStatus;
    if (service === "liveness") status = ServingStatus.Serving;
    else if (service === "" || service === "readiness" || service === EXT_PROC_SERVICE)
      status = serving ? ServingStatus.Serving : ServingStatus.NotServing;
    else return cb({ code: grpc.status.NOT_FOUND, details: `unknown service '${service}'` });
    cb(null, encodeHealthCheckResponse(status));
  }

  private process(call: grpc.ServerDuplexStream<Buffer, Buffer>): void {
    if (this.closing || this.active >= this.opts.maxStreams) {
      const details = this.closing
        ? "the endpoint picker is shutting down"
        : `more than ${this.opts.maxStreams} ext_proc streams are open`;
      call.on("error", () => undefined);
      call.emit("error", {
        code: this.closing ? grpc.status.UNAVAILABLE : grpc.status.RESOURCE_EXHAUSTED,
        details,
      });
      return;
    }
    this.active++;
    let open = true;
    let counted = true;
    const release = () => {
      if (!counted) return;
      counted = false;
      this.active--;
    };
    const sink: StreamSink = {
      send: (r) => {
        if (!open) return;
        // the gateway reads slower than it sends (echoed body chunks): stop reading until it catches up
        if (!call.write(encodeProcessingResponse(r))) {
          call.pause();
          call.once("drain", () => call.resume());
        }
      },
      end: () => {
        if (!open) return;
        open = false;
        call.end();
      },
      fail: (code: GrpcCode, message: string) => {
        if (!open) return;
        open = false;
        call.emit("error", { code, details: message });
      },
    };
    const stream = new ExtProcStream(this.host, this.picker, sink, {
      servedByFallback: () => this.fallbacks.inc(),
    });
    const pending: ProcessingRequest[] = [];
    let busy = false;
    const run = (msg: ProcessingRequest): void => {
      const r = stream.handle(msg);
      if (!r) return;
      busy = true;
      call.pause();
      void r.then(drain, drain);
    };
    const drain = (): void => {
      busy = false;
      while (pending.length > 0 && !busy) run(pending.shift()!);
      if (!busy) call.resume();
    };
    call.on("data", (buf: Buffer) => {
      let msg: ProcessingRequest;
      try {
        msg = decodeProcessingRequest(buf);
      } catch (err) {
        const why = err instanceof WireError ? err.message : String(err);
        stream.closed();
        return sink.fail(GrpcCode.InvalidArgument, `malformed ProcessingRequest: ${why}`);
      }
      if (!busy) return run(msg);
      if (pending.length >= MAX_PENDING) {
        stream.closed();
        return sink.fail(GrpcCode.ResourceExhausted, "too many messages sent while the request waited");
      }
      pending.push(msg);
    });
    call.on("end", () => {
      // the gateway half-closed: the request is over (whatever was not answered never will be)
      stream.closed();
      sink.end();
    });
    call.on("cancelled", () => {
      open = false;
      stream.closed();
    });
    call.on("error", () => stream.closed());
    call.on("close", () => {
      stream.closed();
      release();
    });
  }
}
