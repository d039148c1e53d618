// One client connection: a byte-level state machine over the socket's chunks. Requests are handled
// strictly in order; when one must wait (a disk read, or a slow reader's socket buffer filling up),
// the socket is paused and later chunks wait in a backlog until it is done. A PUT payload is copied
// once, into a Buffer allocated at its exact size when its header arrives, and becomes visible only
// when its last byte is in. Any protocol violation closes this connection and nothing else.
import type { Socket } from "node:net";
import type { Logger } from "../obs/log.js";
import type { CacheMetrics } from "./metrics.js";
import {
  CLIENT_HEADER_BYTES,
  Command,
  parseClientHeader,
  ProtocolError,
  REPLY_FAIL,
  REPLY_OK,
  SUCCESS,
  encodeServerHeader,
  type ClientHeader,
  type ProtocolErrorKind,
} from "./protocol.js";
import type { TieredStore } from "./store.js";

export interface ConnectionContext {
  store: TieredStore;
  metrics: CacheMetrics | undefined;
  log: Logger;
  maxObjectBytes: number;
}

/** Stop handling requests while more than this many reply bytes wait in the socket's buffer. */
const MAX_QUEUED_REPLY_BYTES = 8 * 2 ** 20;
/** LIST answers at most this many bytes of newline-separated keys. */
export const LIST_MAX_BYTES = 16 * 2 ** 20;
const FMT_BINARY = 4;
const DTYPE_UINT8 = 6;

interface PutInProgress {
  header: ClientHeader;
  payload: Buffer;
  filled: number;
}

export class Connection {
  readonly peer: string;
  private readonly header = Buffer.allocUnsafe(CLIENT_HEADER_BYTES);
  private headerFilled = 0;
  private put: PutInProgress | undefined;
  private readonly backlog: Buffer[] = [];
  private busy = false;
  private closed = false;
  private stopping = false;
  private peerEnded = false;
  readonly done: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    this.done = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => this.onEnd());
    socket.on("error", (err) => {
      ctx.log.debug({ peer: this.peer, err: err.message }, "connection error");
    });
    socket.once("close", () => {
      this.closed = true;
      this.put = undefined;
      this.backlog.length = 0;
    });
  }

  /** Shutdown: take no new requests, let the one in flight finish and its reply flush, then close. */
  stop(): Promise<void> {
    this.stopping = true;
    this.socket.pause();
    if (!this.busy) this.finish();
    const t = setTimeout(() => this.socket.destroy(), 5_000);
    t.unref();
    return this.done.finally(() => clearTimeout(t));
  }

  private finish(): void {
    if (!this.closed) this.socket.end();
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.stopping) return;
    if (this.busy) {
      this.backlog.push(chunk);
      this.socket.pause();
      return;
    }
    this.consume(chunk, 0);
  }

  private onEnd(): void {
    this.peerEnded = true;
    if (this.busy) return; // checked again when the request in flight completes
    this.endOfInput();
  }

  private endOfInput(): void {
    if (this.put) {
      const p = this.put;
      this.fail(
        "truncated_payload",
        `connection closed ${p.payload.length - p.filled} bytes short of a PUT payload`,
      );
    } else if (this.headerFilled > 0) {
      this.fail(
        "truncated_header",
        `connection closed after ${this.headerFilled} of ${CLIENT_HEADER_BYTES} header bytes`,
      );
    } else this.finish();
  }

  private fail(kind: ProtocolErrorKind, message: string): void {
    if (this.closed) return;
    this.ctx.metrics?.protocolError(kind);
    this.ctx.log.warn({ peer: this.peer, kind }, `protocol error, closing connection: ${message}`);
    this.closed = true;
    this.put = undefined;
    this.socket.destroy();
  }

  private consume(chunk: Buffer, start: number): void {
    let off = start;
    const len = chunk.length;
    while (off < len) {
      if (this.closed || this.stopping) return;
      const put = this.put;
      if (put) {
        const n = Math.min(put.payload.length - put.filled, len - off);
        chunk.copy(put.payload, put.filled, off, off + n);
        put.filled += n;
        off += n;
        if (put.filled === put.payload.length) {
          this.put = undefined;
          this.commitPut(put.header, put.payload);
        }
        continue;
      }
      let src: Buffer;
      let at: number;
      if (this.headerFilled === 0 && len - off >= CLIENT_HEADER_BYTES) {
        src = chunk;
        at = off;
        off += CLIENT_HEADER_BYTES;
      } else {
        const n = Math.min(CLIENT_HEADER_BYTES - this.headerFilled, len - off);
        chunk.copy(this.header, this.headerFilled, off, off + n);
        this.headerFilled += n;
        off += n;
        if (this.headerFilled < CLIENT_HEADER_BYTES) return;
        this.headerFilled = 0;
        src = this.header;
        at = 0;
      }
      let h: ClientHeader;
      try {
        h = parseClientHeader(src, at, this.ctx.maxObjectBytes);
      } catch (err) {
        if (err instanceof ProtocolError) return this.fail(err.kind, err.message);
        throw err;
      }
      const wait = this.handle(h);
      if (wait || this.socket.writableLength > MAX_QUEUED_REPLY_BYTES) {
        if (off < len) this.backlog.unshift(chunk.subarray(off));
        this.block(wait ?? new Promise<void>((resolve) => this.socket.once("drain", resolve)));
        return;
      }
    }
  }

  private block(until: Promise<void>): void {
    this.busy = true;
    this.socket.pause();
    const closed = this.done;
    void Promise.race([until, closed]).then(() => this.unblock());
  }

  private unblock(): void {
    this.busy = false;
    if (this.closed) return;
    if (this.stopping) return this.finish();
    while (this.backlog.length > 0 && !this.busy && !this.closed) this.consume(this.backlog.shift()!, 0);
    if (this.busy || this.closed) return;
    if (this.peerEnded) return this.endOfInput();
    this.socket.resume();
  }

  /** Handles one request; returns a promise when the connection must wait before the next one. */
  private handle(h: ClientHeader): Promise<void> | undefined {
    const m = this.ctx.metrics;
    switch (h.command) {
      case Command.PUT:
        m?.request("put");
        if (h.length === 0) this.commitPut(h, Buffer.alloc(0));
        else this.put = { header: h, payload: Buffer.allocUnsafe(h.length), filled: 0 };
        return undefined;
      case Command.GET:
        m?.request("get");
        return this.get(h.key);
      case Command.EXIST:
        m?.request("exist");
        this.socket.write(this.ctx.store.has(h.key) ? REPLY_OK : REPLY_FAIL);
        return undefined;
      case Command.HEALTH:
        m?.request("health");
        this.socket.write(REPLY_OK);
        return undefined;
      case Command.LIST: {
        m?.request("list");
        const text = Buffer.from(this.ctx.store.listKeys(LIST_MAX_BYTES).join("\n"), "latin1");
        this.reply(
          encodeServerHeader(SUCCESS, text.length, {
            fmt: FMT_BINARY,
            dtype: DTYPE_UINT8,
            shape: [text.length, 0, 0, 0],
          }),
          text,
        );
        return undefined;
      }
      default:
        return undefined; // unreachable: parseClientHeader rejects unknown commands
    }
  }

  private commitPut(h: ClientHeader, payload: Buffer): void {
    this.ctx.metrics?.bytesIn.inc(payload.length);
    this.ctx.store.put({ key: h.key, payload, meta: { fmt: h.fmt, dtype: h.dtype, shape: h.shape } });
  }

  private reply(head: Buffer, payload: Buffer): void {
    // cork + two writes = one writev: no copy of the payload into a joined buffer
    this.socket.cork();
    this.socket.write(head);
    if (payload.length > 0) this.socket.write(payload);
    this.socket.uncork();
  }

  private get(key: string): Promise<void> | undefined {
    const t0 = performance.now();
    const m = this.ctx.metrics;
    const found = this.ctx.store.find(key);
    if (!found) {
      this.socket.write(REPLY_FAIL);
      m?.misses.inc();
      m?.getLatencyMiss.observe((performance.now() - t0) / 1000);
      return undefined;
    }
    if (found.tier === "memory") {
      const { obj } = found;
      this.reply(encodeServerHeader(SUCCESS, obj.payload.length, obj.meta), obj.payload);
      m?.hitMemory.inc();
      m?.bytesOut.inc(obj.payload.length);
      m?.getLatencyMemory.observe((performance.now() - t0) / 1000);
      return undefined;
    }
    const { entry } = found;
    const disk = this.ctx.store.disk!;
    return disk.read(entry).then((payload) => {
      if (this.closed) return;
      if (!payload) {
        this.socket.write(REPLY_FAIL);
        m?.misses.inc();
        m?.getLatencyMiss.observe((performance.now() - t0) / 1000);
        return;
      }
      this.reply(encodeServerHeader(SUCCESS, payload.length, entry.meta), payload);
      m?.hitDisk.inc();
      m?.bytesOut.inc(payload.length);
      m?.getLatencyDisk.observe((performance.now() - t0) / 1000);
    });
  }
}
