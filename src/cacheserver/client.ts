// LmClient: a small typed client for lm:// servers (ours or LMCache's reference server), for the
// engine model's remote tier, tests and benchmarks. One TCP connection; requests may be pipelined
// and replies are matched to them in order (the protocol has no request ids). PUT has no reply:
// its promise resolves when the bytes have been handed to the kernel; follow a batch of PUTs with
// exist() or health() to know the server has processed them.
import { connect, type Socket } from "node:net";
import {
  Command,
  SERVER_HEADER_BYTES,
  SUCCESS,
  encodeClientHeader,
  parseServerHeader,
  type ObjectMeta,
} from "./protocol.js";

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

export class LmClient {
  private readonly waiters: Waiter[] = [];
  private head = 0;
  private readonly hdr = Buffer.allocUnsafe(SERVER_HEADER_BYTES);
  private hdrFilled = 0;
  private body: { buf: Buffer; filled: number; meta: ObjectMeta; waiter: Waiter } | undefined;
  private failed: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly maxReplyBytes: number,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (c: Buffer) => this.onData(c));
    socket.on("error", (e) => this.failAll(e));
    socket.on("close", () => this.failAll(new Error("lm:// connection closed")));
  }

  /** `maxReplyBytes`: a reply announcing more closes the connection before anything is allocated. */
  static connect(
    host: string,
    port: number,
    timeoutMs = 10_000,
    maxReplyBytes = DEFAULT_MAX_REPLY_BYTES,
  ): Promise<LmClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      const t = setTimeout(() => s.destroy(new Error(`connect to ${host}:${port} timed out`)), timeoutMs);
      s.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
      s.once("connect", () => {
        clearTimeout(t);
        s.removeAllListeners("error");
        resolve(new LmClient(s, maxReplyBytes));
      });
    });
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
    if (this.failed) return Promise.reject(this.failed);
    let h: Buffer;
    try {
      h = encodeClientHeader(Command.PUT, key, payload.length, meta);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return new Promise((resolve, reject) => {
      this.socket.cork();
      this.socket.write(h);
      // a socket destroyed with this write still queued calls back without an error: the bytes were dropped
      this.socket.write(payload, (err) => (err || this.failed ? reject(err ?? this.failed) : resolve()));
      this.socket.uncork();
    });
  }

  get(key: string): Promise<LmObject | undefined> {
    return this.request(Command.GET, key, "payload") as Promise<LmObject | undefined>;
  }

  exist(key: string): Promise<boolean> {
    return this.request(Command.EXIST, key, "status") as Promise<boolean>;
  }

  health(): Promise<boolean> {
    return this.request(Command.HEALTH, "", "status") as Promise<boolean>;
  }

  /** Keys the server holds (our server's LIST extension; the reference server does not answer it). */
  async list(): Promise<string[]> {
    const o = (await this.request(Command.LIST, "", "payload")) as LmObject | undefined;
    const text = o ? o.payload.toString("latin1") : "";
    return text === "" ? [] : text.split("\n");
  }

  /**
   * Closes at once, without waiting for the server to finish or answer: pending requests reject and PUT
   * bytes not yet written are dropped. For shutdown paths that must not hang on a slow or dead server;
   * close() is the orderly way.
   */
  destroy(): void {
    this.failAll(new Error("lm:// client destroyed"));
    this.socket.destroy();
  }

  /** Ends the connection once what was written has been sent; resolves when the server has closed its side. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once("close", () => resolve());
      this.socket.end();
    });
  }

  private request(cmd: number, key: string, kind: Waiter["kind"]): Promise<boolean | LmObject | undefined> {
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
        this.socket.destroy(new Error("lm:// reply with no request waiting for it"));
        return;
      }
      if (w.kind === "status") w.resolve(h.code === SUCCESS);
      else if (h.code !== SUCCESS) w.resolve(undefined);
      else if (h.length === 0)
        w.resolve({ payload: Buffer.alloc(0), meta: { fmt: h.fmt, dtype: h.dtype, shape: h.shape } });
      else if (h.length < 0 || h.length > this.maxReplyBytes) {
        const err = new Error(
          `lm:// reply length ${h.length} outside 0..${this.maxReplyBytes} (maxReplyBytes)`,
        );
        // taken off the queue already: failAll on the socket's close would not reach it
        w.reject(err);
        this.socket.destroy(err);
        return;
      } else
        this.body = {
          buf: Buffer.allocUnsafe(h.length),
          filled: 0,
          meta: { fmt: h.fmt, dtype: h.dtype, shape: h.shape },
          waiter: w,
        };
    }
  }

  private failAll(e: Error): void {
    this.failed ??= e;
    if (this.body) {
      this.body.waiter.reject(e);
      this.body = undefined;
    }
    for (let w = this.nextWaiter(); w; w = this.nextWaiter()) w.reject(e);
  }
}
