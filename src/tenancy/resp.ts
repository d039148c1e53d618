// A minimal Redis client over node:net (RESP2): one connection, pipelined commands answered in
// order, a timeout per command, no offline queue. While Redis is unreachable commands fail at once
// (after one connect attempt per backoff period), so the caller's fail-open/closed rule decides
// quickly instead of stacking requests behind a dead socket.
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";

export type RespValue = string | number | null | RespValue[] | RespError;

export class RespError extends Error {}

/** A transport failure (refused, reset, timeout), as opposed to an error reply. */
export class RedisUnavailable extends Error {}

interface Pending {
  resolve: (v: RespValue) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface RespClientOptions {
  url: string;
  /** per command, ms */
  timeout?: number;
  /** after a failed connect, commands fail fast for this long, ms */
  retryBackoff?: number;
  /** commands in flight on the socket before new ones are refused */
  maxPending?: number;
}

export class RespClient {
  private socket: Socket | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending: Pending[] = [];
  private head = 0;
  private buf: Buffer = Buffer.alloc(0);
  private downUntil = 0;
  private closed = false;
  private readonly host: string;
  private readonly port: number;
  private readonly tls: boolean;
  private readonly password: string | undefined;
  private readonly username: string | undefined;
  private readonly db: number;
  private readonly timeout: number;
  private readonly retryBackoff: number;
  private readonly maxPending: number;

  constructor(opts: RespClientOptions) {
    const u = new URL(opts.url);
    this.tls = u.protocol === "rediss:";
    this.host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
    this.port = Number(u.port || 6379);
    this.username = u.username ? decodeURIComponent(u.username) : undefined;
    this.password = u.password ? decodeURIComponent(u.password) : undefined;
    this.db = Number(u.pathname.slice(1) || 0);
    this.timeout = opts.timeout ?? 250;
    this.retryBackoff = opts.retryBackoff ?? 1000;
    this.maxPending = opts.maxPending ?? 10_000;
  }

  async command(...args: (string | number)[]): Promise<RespValue> {
    if (this.closed) throw new RedisUnavailable("redis client closed");
    if (!this.socket) {
      if (Date.now() < this.downUntil) throw new RedisUnavailable("redis unreachable (backing off)");
      this.ready ??= this.open();
      await this.ready;
    } else if (this.ready) await this.ready;
    return this.send(args);
  }

  private send(args: (string | number)[]): Promise<RespValue> {
    const s = this.socket;
    if (!s) return Promise.reject(new RedisUnavailable("redis connection lost"));
    if (this.pending.length - this.head >= this.maxPending)
      return Promise.reject(new RedisUnavailable("too many redis commands in flight"));
    return new Promise<RespValue>((resolve, reject) => {
      const timer = setTimeout(() => {
        // replies come in order: after a timeout the stream can no longer be trusted
        this.fail(new RedisUnavailable(`redis did not answer within ${this.timeout} ms`));
      }, this.timeout);
      this.pending.push({ resolve, reject, timer });
      s.write(encode(args));
    });
  }

  private open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const s = this.tls
        ? tlsConnect({ host: this.host, port: this.port, servername: this.host })
        : netConnect({ host: this.host, port: this.port });
      s.setNoDelay(true);
      const connectTimer = setTimeout(() => s.destroy(new Error("connect timeout")), this.timeout * 4);
      s.once(this.tls ? "secureConnect" : "connect", () => {
        clearTimeout(connectTimer);
        this.socket = s;
        const init: Promise<RespValue>[] = [];
        if (this.password !== undefined)
          init.push(
            this.send(this.username ? ["AUTH", this.username, this.password] : ["AUTH", this.password]),
          );
        if (this.db) init.push(this.send(["SELECT", this.db]));
        Promise.all(init).then(
          (replies) => {
            const bad = replies.find((r) => r instanceof RespError);
            if (bad) {
              this.fail(
                new RedisUnavailable(`redis refused the connection setup: ${(bad as RespError).message}`),
              );
              reject(new RedisUnavailable("redis refused the connection setup"));
            } else {
              this.ready = undefined;
              resolve();
            }
          },
          (e: Error) => reject(e),
        );
      });
      s.on("data", (d: Buffer) => this.onData(d));
      s.on("error", () => {});
      s.once("close", () => {
        clearTimeout(connectTimer);
        if (this.socket !== s) {
          // never connected
          this.downUntil = Date.now() + this.retryBackoff;
          this.ready = undefined;
          reject(new RedisUnavailable(`cannot connect to redis at ${this.host}:${this.port}`));
          return;
        }
        this.fail(new RedisUnavailable("redis connection closed"));
      });
    });
  }

  private fail(err: Error): void {
    const s = this.socket;
    this.socket = undefined;
    this.ready = undefined;
    this.buf = Buffer.alloc(0);
    const waiting = this.pending.splice(0);
    for (let i = this.head; i < waiting.length; i++) {
      clearTimeout(waiting[i]!.timer);
      waiting[i]!.reject(err);
    }
    this.head = 0;
    if (s && !s.destroyed) s.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    let pos = 0;
    for (;;) {
      let r: ReturnType<typeof parse>;
      try {
        r = parse(this.buf, pos);
      } catch (err) {
        this.fail(new RedisUnavailable((err as Error).message));
        return;
      }
      if (!r) break;
      pos = r.end;
      const p = this.pending[this.head];
      if (!p) {
        this.fail(new RedisUnavailable("redis sent a reply nobody asked for"));
        return;
      }
      this.pending[this.head++] = undefined as unknown as Pending;
      clearTimeout(p.timer);
      p.resolve(r.value);
    }
    this.buf = pos >= this.buf.length ? Buffer.alloc(0) : this.buf.subarray(pos);
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.fail(new RedisUnavailable("redis client closed"));
  }
}

function encode(args: (string | number)[]): Buffer {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = String(a);
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return Buffer.from(out);
}

/** Parses one RESP2 value at `pos`; undefined when the buffer does not hold all of it yet. */
export function parse(buf: Buffer, pos: number): { value: RespValue; end: number } | undefined {
  if (pos >= buf.length) return undefined;
  const nl = buf.indexOf("\r\n", pos);
  if (nl < 0) return undefined;
  const type = buf[pos];
  const line = buf.toString("utf8", pos + 1, nl);
  const next = nl + 2;
  switch (type) {
    case 0x2b: // +
      return { value: line, end: next };
    case 0x2d: // -
      return { value: new RespError(line), end: next };
    case 0x3a: // :
      return { value: Number(line), end: next };
    case 0x24: {
      // $
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return undefined;
      return { value: buf.toString("utf8", next, next + n), end: next + n + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const arr: RespValue[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p);
        if (!r) return undefined;
        arr.push(r.value);
        p = r.end;
      }
      return { value: arr, end: p };
    }
    default:
      throw new RespError(`unexpected RESP type byte ${type}`);
  }
}
