// One client connection: a byte-level state machine over the socket's chunks. Requests are handled
// strictly in order; when one must wait (a disk read, or a slow reader's socket buffer filling up),
// the socket is paused and later chunks wait in a backlog until it is done. A PUT payload is kept as
// the socket reads it arrived in (payload.ts: no copy of the bulk of it) and becomes visible only
// when its last byte is in; a GET hit sends those chunks back in one writev. Any protocol violation
// closes this connection and nothing else.
// A PUT reserves its object's cost in the memory budget when its header arrives, before its receive
// buffer is allocated; with no room (other PUTs in progress hold the rest) its payload is read and
// dropped instead. The reservation is given back when the object is stored or the PUT dies (peer
// gone, stalled, over --put-timeout, protocol error, shutdown). Keys are scoped to the connection's
// namespace (namespace.ts) at the boundary: nothing past handle() sees a client's raw key.
import { Socket } from "node:net";
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
import {
  DirectPayload,
  DiscardPayload,
  EMPTY_PAYLOAD,
  PayloadBuilder,
  payloadOf,
  type Payload,
} from "./payload.js";
import type { StoredObject } from "./memory.js";
import { namespaceLabel, scopedKey } from "./namespace.js";
import { TieredStore } from "./store.js";

export interface ConnectionContext {
  store: TieredStore;
  metrics: CacheMetrics | undefined;
  log: Logger;
  maxObjectBytes: number;
  /** close a peer that moves no bytes for this long inside a request or behind unread replies */
  stallTimeoutMs: number;
  /** read PUT payloads straight into their Buffers (default); false: keep Node's own read buffers */
  directReads?: boolean;
  /** a PUT whose payload is not all in this long after its header is closed (slow_payload) */
  putTimeoutMs: number;
  /** called when a PUT is refused for want of budget (rate-limited logging lives with the caller) */
  onPutRefused?: (peer: string, namespace: string, bytes: number) => void;
}

/** Stop handling requests while more than this many reply bytes wait in the socket's buffer. */
const MAX_QUEUED_REPLY_BYTES = 8 * 2 ** 20;
/** LIST answers at most this many bytes of newline-separated keys. */
export const LIST_MAX_BYTES = 16 * 2 ** 20;
const FMT_BINARY = 4;
const DTYPE_UINT8 = 6;

interface PutInProgress {
  header: ClientHeader;
  /** the key scoped to the connection's namespace */
  key: string;
  payload: PayloadBuilder | DirectPayload | DiscardPayload;
  /** bytes reserved in the memory budget (0 for a refused PUT being discarded) */
  reserved: number;
  /** performance.now() at the header, for --put-timeout */
  started: number;
}

/** Header reads (and whatever follows a header in the same read) land here in direct-read mode. */
const SCRATCH_BYTES = 64 * 1024;

type OnRead = { buffer: () => Buffer; callback: (nread: number, buf: Buffer) => boolean };

/**
 * Rebuilds an accepted socket (created paused: `pauseOnConnect`) around the same handle with
 * `onread`, which Node offers for sockets it creates but not for those a server accepts. Reads then
 * land in buffers we choose, so a PUT payload goes from the kernel straight into its final Buffer
 * (one copy, as Redis does) and no ArrayBuffer is allocated per read, which is what drives V8's
 * external-memory GCs under bulk traffic. Returns undefined where the handle cannot be taken over.
 */
function withUserBuffers(raw: Socket, onread: OnRead): Socket | undefined {
  const r = raw as unknown as { _handle?: object | null };
  const handle = r._handle;
  if (!handle) return undefined;
  r._handle = null;
  raw.destroy(); // with no handle: only releases the server's count of the old object
  return new Socket({ handle, allowHalfOpen: true, onread } as unknown as ConstructorParameters<
    typeof Socket
  >[0]);
}

export class Connection {
  readonly peer: string;
  private readonly socket: Socket;
  /** direct-read mode only: where headers are read (reused, so never kept past a read) */
  private scratch: Buffer | undefined;
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
    raw: Socket,
    private readonly ctx: ConnectionContext,
    /** where this peer's keys live (namespace.ts); DEFAULT_NAMESPACE when none is configured */
    readonly namespace: string,
  ) {
    // assigned before the socket is rebuilt: its first read buffer is asked for during construction
    this.scratch = ctx.directReads !== false ? Buffer.allocUnsafeSlow(SCRATCH_BYTES) : undefined;
    const direct = this.scratch
      ? withUserBuffers(raw, {
          buffer: () => this.nextReadBuffer(),
          callback: (n, buf) => this.onRead(n, buf),
        })
      : undefined;
    if (!direct) this.scratch = undefined;
    const socket = (this.socket = direct ?? raw);
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    socket.setTimeout(ctx.stallTimeoutMs, () => this.onIdle());
    this.done = new Promise((resolve) => socket.once("close", () => resolve()));
    if (!direct) {
      socket.on("data", (chunk: Buffer) => this.onData(chunk));
      socket.resume(); // accepted paused (pauseOnConnect)
    }
    socket.on("end", () => this.onEnd());
    socket.on("error", (err) => {
      ctx.log.debug({ peer: this.peer, err: err.message }, "connection error");
    });
    socket.once("close", () => {
      this.closed = true;
      this.dropPut();
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
    if (this.closed) return;
    this.socket.end();
    // direct reads stop for real when paused: keep reading (and discarding) to see the peer's FIN
    if (this.scratch) this.socket.resume();
  }

  /** Direct reads: the buffer libuv fills next. */
  private nextReadBuffer(): Buffer {
    const p = this.put?.payload;
    if (p instanceof DirectPayload && p.missing > 0) return p.view();
    return this.scratch!;
  }

  /** Direct reads: `buf` is the buffer nextReadBuffer gave out; false stops reading. */
  private onRead(n: number, buf: Buffer): boolean {
    if (this.closed) return false;
    if (this.stopping) return true; // finished: bytes after that are dropped, only EOF matters
    const put = this.put;
    if (put && put.payload instanceof DirectPayload && buf !== this.scratch) {
      put.payload.advance(n);
      if (put.payload.missing === 0) this.completePut(put);
      else this.checkPutDeadline(put);
    } else this.onData(buf.subarray(0, n));
    return !this.busy && !this.closed && !this.stopping;
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.stopping) return;
    if (this.busy) {
      this.backlog.push(this.scratch ? Buffer.from(chunk) : chunk); // the scratch buffer is reused
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
      this.fail("truncated_payload", `connection closed ${p.payload.missing} bytes short of a PUT payload`);
    } else if (this.headerFilled > 0) {
      this.fail(
        "truncated_header",
        `connection closed after ${this.headerFilled} of ${CLIENT_HEADER_BYTES} header bytes`,
      );
    } else this.finish();
  }

  /**
   * No byte moved either way for stallTimeoutMs. Idle between requests is normal (LMCache keeps its
   * connections open); idle inside a request, or with replies the peer does not read, is a peer
   * holding a receive buffer or queued replies that may never be released.
   */
  private onIdle(): void {
    if (this.closed || this.stopping) return;
    const ms = this.ctx.stallTimeoutMs;
    if (this.busy && this.socket.writableLength > 0)
      this.fail("stalled_reader", `${this.socket.writableLength} reply bytes unread for ${ms} ms`);
    else if (this.put) this.fail("stalled_frame", `no PUT payload bytes for ${ms} ms`);
    else if (this.headerFilled > 0) this.fail("stalled_frame", `no header bytes for ${ms} ms`);
  }

  private fail(kind: ProtocolErrorKind, message: string): void {
    if (this.closed) return;
    this.ctx.metrics?.protocolError(kind);
    this.ctx.log.warn(
      { peer: this.peer, namespace: namespaceLabel(this.namespace), kind },
      `protocol error, closing connection: ${message}`,
    );
    this.closed = true;
    this.dropPut();
    this.socket.destroy();
  }

  /** The PUT in progress dies unstored: its reservation goes back to the budget. */
  private dropPut(): void {
    const put = this.put;
    if (!put) return;
    this.put = undefined;
    if (put.reserved > 0) this.ctx.store.unreserve(put.reserved, this.namespace);
  }

  /**
   * A peer that keeps sending a byte now and then never trips the stall timeout, yet holds its
   * reservation: a PUT gets --put-timeout from its header for all its bytes. Checked as bytes
   * arrive (the stall timeout covers a peer that sends none), so no timer per PUT.
   */
  private checkPutDeadline(put: PutInProgress): void {
    const ms = performance.now() - put.started;
    if (ms > this.ctx.putTimeoutMs)
      this.fail(
        "slow_payload",
        `PUT payload ${put.payload.missing} of ${put.payload.length} bytes short after ${Math.round(ms)} ms`,
      );
  }

  private completePut(put: PutInProgress): void {
    this.put = undefined;
    if (put.payload instanceof DiscardPayload) return;
    // the reservation goes back first: the object fits in what it held, with no eviction
    this.ctx.store.unreserve(put.reserved, this.namespace);
    this.commitPut(put.header, put.key, put.payload.finish());
  }

  private consume(chunk: Buffer, start: number): void {
    let off = start;
    const len = chunk.length;
    while (off < len) {
      if (this.closed || this.stopping) return;
      const put = this.put;
      if (put) {
        off += put.payload.take(chunk, off, len);
        if (put.payload.missing === 0) this.completePut(put);
        else this.checkPutDeadline(put);
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
        if (off < len) {
          const rest = chunk.subarray(off);
          this.backlog.unshift(
            this.scratch && rest.buffer === this.scratch.buffer ? Buffer.from(rest) : rest,
          );
        }
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
      case Command.PUT: {
        m?.request("put");
        const key = scopedKey(this.namespace, h.key);
        if (h.length === 0) {
          this.commitPut(h, key, EMPTY_PAYLOAD);
          return undefined;
        }
        const direct = this.scratch !== undefined;
        const bytes = TieredStore.reservationBytes(key, h.length, direct);
        const started = performance.now();
        if (!this.ctx.store.reserve(bytes, this.namespace)) {
          // nothing allocated: the bytes are read into the scratch buffer (or Node's reads) and dropped
          m?.putRefused.inc();
          this.ctx.onPutRefused?.(this.peer, this.namespace, h.length);
          this.put = { header: h, key, payload: new DiscardPayload(h.length), reserved: 0, started };
          return undefined;
        }
        this.put = {
          header: h,
          key,
          payload: direct ? new DirectPayload(h.length, this.ctx.store.pool) : new PayloadBuilder(h.length),
          reserved: bytes,
          started,
        };
        return undefined;
      }
      case Command.GET:
        m?.request("get");
        return this.get(scopedKey(this.namespace, h.key));
      case Command.EXIST:
        m?.request("exist");
        this.socket.write(this.ctx.store.has(scopedKey(this.namespace, h.key)) ? REPLY_OK : REPLY_FAIL);
        return undefined;
      case Command.HEALTH:
        m?.request("health");
        this.socket.write(REPLY_OK);
        return undefined;
      case Command.LIST: {
        m?.request("list");
        const text = Buffer.from(
          this.ctx.store.listKeys(LIST_MAX_BYTES, this.namespace).join("\n"),
          "latin1",
        );
        this.reply(
          encodeServerHeader(SUCCESS, text.length, {
            fmt: FMT_BINARY,
            dtype: DTYPE_UINT8,
            shape: [text.length, 0, 0, 0],
          }),
          payloadOf(text),
        );
        return undefined;
      }
      default:
        return undefined; // unreachable: parseClientHeader rejects unknown commands
    }
  }

  private commitPut(h: ClientHeader, key: string, payload: Payload): void {
    this.ctx.metrics?.bytesIn.inc(payload.length);
    this.ctx.store.put({ key, payload, meta: { fmt: h.fmt, dtype: h.dtype, shape: h.shape } });
  }

  /** `obj`: the stored object sent, whose buffer must not be reused until the socket is done with it. */
  private reply(head: Buffer, payload: Payload, obj?: StoredObject): void {
    // cork + writes = one writev of the stored chunks themselves: no copy into a joined buffer
    const s = this.socket;
    const { chunks } = payload;
    s.cork();
    s.write(head);
    if (obj && chunks.length > 0) {
      const store = this.ctx.store;
      store.sending(obj);
      // a write's callback runs when it is done or has failed (socket destroyed): either way, released
      for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i]!);
      s.write(chunks[chunks.length - 1]!, () => store.sent(obj));
    } else for (const chunk of chunks) s.write(chunk);
    s.uncork();
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
      this.reply(encodeServerHeader(SUCCESS, obj.payload.length, obj.meta), obj.payload, obj);
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
      this.reply(encodeServerHeader(SUCCESS, payload.length, entry.meta), payloadOf(payload));
      m?.hitDisk.inc();
      m?.bytesOut.inc(payload.length);
      m?.getLatencyDisk.observe((performance.now() - t0) / 1000);
    });
  }
}
