// LmClient: a small typed client for lm:// servers (ours or LMCache's reference server), for the
// engine model's remote tier, tests and benchmarks. One TCP connection; requests may be pipelined
// and replies are matched to them in order (the protocol has no request ids). PUT has no reply:
// its promise resolves when the bytes have been handed to the kernel; any later reply proves the
// server has processed it (the server handles a connection's requests in order).
//
// Every key sent is one LMCache's server can parse (it parses every key, HEALTH's included, and drops
// the connection on one it cannot). LIST is our server's extension: LMCache's server reads it and never
// answers, so LIST runs alone on the connection and, unanswered within its timeout, costs the
// connection (a fresh one replaces it) rather than shifting every later reply onto the wrong request.
import { connect, type Socket } from "node:net";
import {
  Command,
  SERVER_HEADER_BYTES,
  SUCCESS,
  encodeClientHeader,
  parseServerHeader,
  type ObjectMeta,
} from "./protocol.js";
import { CancelledError, PeerError, UnsupportedError, WireFormatError } from "../errors/index.js";

export interface LmObject {
  payload: Buffer;
  meta: ObjectMeta;
}

type Waiter =
  | { kind: "status"; resolve: (ok: boolean) => void; reject: (e: Error) => void }
  | { kind: "payload"; resolve: (o: LmObject | undefined) => void; reject: (e: Error) => void };

/** Byte buffers as LMCache stores them: BINARY fmt, uint8, shape [n,0,0,0]. */
export function bytesMeta(n: number): ObjectMeta {
  return { fmt: 4, dtype: 6, shape: [n, 0, 0, 0] };
}

/** Largest GET/LIST reply accepted by default: our server's default max object (LMCache chunks are MiBs). */
export const DEFAULT_MAX_REPLY_BYTES = 2 ** 30;

/**
 * The key HEALTH and LIST carry: a well-formed LMCache 0.5 CacheEngineKey
 * (model@world_size@worker_id@chunk_hash_hex@dtype) naming no real chunk. An empty key makes LMCache's
 * server raise "Invalid key string" and drop the connection.
 */
export const PROBE_KEY = "switchyard-probe@1@0@0@half";

/** How long list() waits for an answer by default (a server without LIST never sends one). */
export const DEFAULT_LIST_TIMEOUT_MS = 2000;

/** The server did not answer LIST: it does not implement it (LMCache's own server does not). */
export class ListUnsupportedError extends UnsupportedError {
  override name = "ListUnsupportedError";
}

export class LmClient {
  private socket!: Socket;
  private waiters: Waiter[] = [];
  private head = 0;
  private readonly hdr = Buffer.allocUnsafe(SERVER_HEADER_BYTES);
  private hdrFilled = 0;
  private body: { buf: Buffer; filled: number; meta: ObjectMeta; waiter: Waiter } | undefined;
  private failed: Error | undefined;
  /** set while a LIST runs: every other request waits for it (it may cost the connection) */
  private exclusive: Promise<void> | null = null;
  /** callers of whenIdle() waiting for every reply to be in */
  private idle: (() => void)[] = [];

  private constructor(
    socket: Socket,
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs: number,
    private readonly maxReplyBytes: number,
  ) {
    this.attach(socket);
  }

  private attach(s: Socket): void {
    this.socket = s;
    s.setNoDelay(true);
    // events of a replaced socket are ignored: its requests were settled when it was replaced
    s.on("data", (c: Buffer) => s === this.socket && this.onData(c));
    s.on("error", (e) => s === this.socket && this.failAll(e));
    s.on("close", () => s === this.socket && this.failAll(new PeerError("lm:// connection closed")));
  }

  private static open(host: string, port: number, timeoutMs: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      const t = setTimeout(() => s.destroy(new PeerError(`connect to ${host}:${port} timed out`)), timeoutMs);
      s.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
      s.once("connect", () => {
        clearTimeout(t);
        s.removeAllListeners("error");
        resolve(s);
      });
    });
  }

  /** `maxReplyBytes`: a reply announcing more closes the connection before anything is allocated. */
  static async connect(
    host: string,
    port: number,
    timeoutMs = 10_000,
    maxReplyBytes = DEFAULT_MAX_REPLY_BYTES,
  ): Promise<LmClient> {
    return new LmClient(await LmClient.open(host, port, timeoutMs), host, port, timeoutMs, maxReplyBytes);
  }

  /** Parses `lm://host:port`. */
  static connectUrl(url: string): Promise<LmClient> {
    const m = /^lm:\/\/([^:/]+):(\d+)\/?$/.exec(url);
    if (!m) throw new RangeError(`not an lm:// URL: ${url}`);
    return LmClient.connect(m[1]!, Number(m[2]));
  }

  get pending(): number {
    return this.waiters.length - this.head;
  }

  put(key: string, payload: Buffer, meta: ObjectMeta = bytesMeta(payload.length)): Promise<void> {
    if (this.exclusive) return this.exclusive.then(() => this.put(key, payload, meta));
    if (this.failed) return Promise.reject(this.failed);
    let h: Buffer;
    try {
      h = encodeClientHeader(Command.PUT, key, payload.length, meta);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const s = this.socket;
    return new Promise((resolve, reject) => {
      s.cork();
      s.write(h);
      // a socket destroyed with this write still queued calls back without an error: the bytes were dropped
      s.write(payload, (err) =>
        err || s.destroyed ? reject(err ?? this.failed ?? new PeerError("lm:// write dropped")) : resolve(),
      );
      s.uncork();
    });
  }

  get(key: string): Promise<LmObject | undefined> {
    return this.request(Command.GET, key, "payload") as Promise<LmObject | undefined>;
  }

  exist(key: string): Promise<boolean> {
    return this.request(Command.EXIST, key, "status") as Promise<boolean>;
  }

  /** true when the server answers HEALTH with success (LMCache's server and ours both do). */
  health(): Promise<boolean> {
    return this.request(Command.HEALTH, PROBE_KEY, "status") as Promise<boolean>;
  }

  /**
   * Keys the server holds: our server's LIST extension. Runs alone on the connection. A server that
   * does not answer within `timeoutMs` (LMCache's own never does) fails it with ListUnsupportedError,
   * and the connection is replaced by a fresh one, so that a late answer, or none, cannot be taken for
   * the reply to a later request.
   */
  async list(timeoutMs = DEFAULT_LIST_TIMEOUT_MS): Promise<string[]> {
    while (this.exclusive) await this.exclusive;
    if (this.failed) throw this.failed;
    let done!: () => void;
    this.exclusive = new Promise((r) => (done = r));
    try {
      await this.whenIdle();
      const reply = this.send(Command.LIST, PROBE_KEY, "payload") as Promise<LmObject | undefined>;
      let timer: NodeJS.Timeout | undefined;
      const silence = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), timeoutMs)));
      const o = await Promise.race([reply, silence]).finally(() => clearTimeout(timer));
      if (o === "timeout") {
        reply.catch(() => undefined);
        await this.replaceConnection(
          new ListUnsupportedError(`lm:// server ${this.host}:${this.port} did not answer LIST`),
        );
        throw new ListUnsupportedError(
          `lm://${this.host}:${this.port} did not answer LIST within ${timeoutMs} ms: LIST is an extension ` +
            "of switchyard's cache server (LMCache's own server does not implement it); the connection was replaced",
        );
      }
      const text = o ? o.payload.toString("latin1") : "";
      return text === "" ? [] : text.split("\n");
    } finally {
      this.exclusive = null;
      done();
    }
  }

  /**
   * Closes at once, without waiting for the server to finish or answer: pending requests reject and PUT
   * bytes not yet written are dropped. For shutdown paths that must not hang on a slow or dead server;
   * close() is the orderly way.
   */
  destroy(): void {
    this.failAll(new CancelledError("lm:// client destroyed"));
    this.socket.destroy();
  }

  /** Ends the connection once what was written has been sent; resolves when the server has closed its side. */
  close(): Promise<void> {
    const s = this.socket;
    return new Promise((resolve) => {
      if (s.destroyed) return resolve();
      s.once("close", () => resolve());
      s.end();
    });
  }

  /** Drops the current connection (its pending requests reject with `why`) and opens a new one. */
  private async replaceConnection(why: Error): Promise<void> {
    const old = this.socket;
    this.failAll(why);
    old.destroy();
    try {
      const s = await LmClient.open(this.host, this.port, this.timeoutMs);
      this.failed = undefined;
      this.waiters = [];
      this.head = 0;
      this.hdrFilled = 0;
      this.body = undefined;
      this.attach(s);
    } catch (err) {
      this.failed = err as Error;
    }
  }

  private whenIdle(): Promise<void> {
    if (this.pending === 0 || this.failed) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  private request(cmd: number, key: string, kind: Waiter["kind"]): Promise<boolean | LmObject | undefined> {
    if (this.exclusive) return this.exclusive.then(() => this.request(cmd, key, kind));
    return this.send(cmd, key, kind);
  }

  private send(cmd: number, key: string, kind: Waiter["kind"]): Promise<boolean | LmObject | undefined> {
    if (this.failed) return Promise.reject(this.failed);
    // encoded before the waiter is queued: a key that cannot be sent must not leave a waiter behind
    // that the next reply would be matched to
    let h: Buffer;
    try {
      h = encodeClientHeader(cmd, key);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ kind, resolve, reject } as Waiter);
      this.socket.write(h);
    });
  }

  private nextWaiter(): Waiter | undefined {
    const w = this.waiters[this.head];
    if (!w) return undefined;
    this.waiters[this.head++] = undefined as unknown as Waiter;
    if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    }
    return w;
  }

  private settled(): void {
    if (this.pending > 0 || this.idle.length === 0) return;
    const idle = this.idle;
    this.idle = [];
    for (const r of idle) r();
  }

  private onData(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const body = this.body;
      if (body) {
        const n = Math.min(body.buf.length - body.filled, chunk.length - off);
        chunk.copy(body.buf, body.filled, off, off + n);
        body.filled += n;
        off += n;
        if (body.filled === body.buf.length) {
          this.body = undefined;
          (body.waiter.resolve as (o: LmObject) => void)({ payload: body.buf, meta: body.meta });
          this.settled();
        }
        continue;
      }
      const n = Math.min(SERVER_HEADER_BYTES - this.hdrFilled, chunk.length - off);
      chunk.copy(this.hdr, this.hdrFilled, off, off + n);
      this.hdrFilled += n;
      off += n;
      if (this.hdrFilled < SERVER_HEADER_BYTES) return;
      this.hdrFilled = 0;
      const h = parseServerHeader(this.hdr);
      const w = this.nextWaiter();
      if (!w) {
        this.socket.destroy(new WireFormatError("lm:// reply with no request waiting for it"));
        return;
      }
      if (w.kind === "status") w.resolve(h.code === SUCCESS);
      else if (h.code !== SUCCESS) w.resolve(undefined);
      else if (h.length === 0)
        w.resolve({ payload: Buffer.alloc(0), meta: { fmt: h.fmt, dtype: h.dtype, shape: h.shape } });
      else if (h.length < 0 || h.length > this.maxReplyBytes) {
        const err = new WireFormatError(
          `lm:// reply length ${h.length} outside 0..${this.maxReplyBytes} (maxReplyBytes)`,
        );
        // taken off the queue already: failAll on the socket's close would not reach it
        w.reject(err);
        this.socket.destroy(err);
        return;
      } else {
        this.body = {
          buf: Buffer.allocUnsafe(h.length),
          filled: 0,
          meta: { fmt: h.fmt, dtype: h.dtype, shape: h.shape },
          waiter: w,
        };
        continue;
      }
      this.settled();
    }
  }

  private failAll(e: Error): void {
    this.failed ??= e;
    if (this.body) {
      this.body.waiter.reject(e);
      this.body = undefined;
    }
    for (let w = this.nextWaiter(); w; w = this.nextWaiter()) w.reject(e);
    this.settled();
  }
}
