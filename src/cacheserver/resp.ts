// RESP (the Redis serialization protocol, version 2) beside lm://, on the same store, budget and
// metrics: LMCache's multiprocess server reaches a shared tier through its RESP L2 adapter, which sends
// SET, GET, EXISTS, DEL (and AUTH) one command at a time per worker connection. This serves that subset
// and what redis-cli needs around it, pipelined, in order, with every line, command and value bounded
// before it is held; a SET the budget refuses still answers `+OK`, since LMCache's connector reads
// exactly that and any other reply would desynchronise its connection. This file frames the commands
// and holds the connection; resp-commands.ts runs them. See docs/cache-server.md#resp-lmcache-mp-l2.
import type { Socket } from "node:net";
import type { ConnectionContext } from "./connection.js";
import { namespaceLabel, scopedKey } from "./namespace.js";
import { DirectPayload, DiscardPayload } from "./payload.js";
import type { ProtocolErrorKind } from "./protocol.js";
import { printable, RespCommands, type RespValue } from "./resp-commands.js";
import { TieredStore } from "./store.js";
import { WireFormatError } from "../errors/index.js";

export { RESP_MAX_KEY } from "./resp-commands.js";

/** An inline command or a `*N` / `$N` line may not be longer than this. */
export const RESP_MAX_LINE = 64 * 1024;
/** Arguments in one command. */
export const RESP_MAX_ARGS = 1024;
/** Bytes of a command's arguments other than values (names, keys, options). */
export const RESP_MAX_ARG_BYTES = 2 ** 20;
/** Stop handling commands while more than this many reply bytes wait in the socket's buffer. */
const MAX_QUEUED_REPLY_BYTES = 8 * 2 ** 20;
const CRLF = Buffer.from("\r\n");

/** The commands whose arguments at these positions are values (stored objects), not small arguments. */
function isValueArg(cmd: string, index: number): boolean {
  return (cmd === "SET" && index === 2) || (cmd === "MSET" && index >= 2 && index % 2 === 0);
}

class FrameError extends WireFormatError {
  constructor(
    message: string,
    readonly kind: ProtocolErrorKind = "bad_frame",
  ) {
    super(message);
  }
}

/** One command being received: its small arguments and its values, in argument order. */
interface Pending {
  expected: number;
  args: (Buffer | RespValue)[];
  argBytes: number;
  /** the command name, upper case, once argument 0 is in */
  name: string;
  started: number;
}

type Mode = "line" | "bulk" | "value" | "crlf";

export class RespConnection {
  readonly peer: string;
  readonly done: Promise<void>;
  private mode: Mode = "line";
  /** the line being gathered (a header line split across reads) */
  private line: Buffer[] = [];
  private lineBytes = 0;
  private cmd: Pending | undefined;
  /** the small bulk being gathered, or the value being received */
  private bulk: Buffer | undefined;
  private bulkFilled = 0;
  private value: RespValue | undefined;
  private crlfSeen = 0;
  private readonly backlog: Buffer[] = [];
  private busy = false;
  private closed = false;
  private stopping = false;
  private peerEnded = false;
  private readonly commands: RespCommands;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: ConnectionContext,
    readonly namespace: string,
  ) {
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.commands = new RespCommands({
      socket,
      ctx,
      namespace,
      closed: () => this.closed,
      quit: () => {
        this.stopping = true;
        this.finish();
      },
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    socket.setTimeout(ctx.stallTimeoutMs, () => this.onIdle());
    this.done = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => {
      this.peerEnded = true;
      if (!this.busy) this.endOfInput();
    });
    socket.on("error", (err) => ctx.log.debug({ peer: this.peer, err: err.message }, "connection error"));
    socket.once("close", () => {
      this.closed = true;
      this.dropCommand();
      this.backlog.length = 0;
    });
    socket.resume(); // accepted paused (pauseOnConnect)
  }

  /** Shutdown: take no new commands, let the one in flight finish and its reply flush, then close. */
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

  private get midCommand(): boolean {
    return this.cmd !== undefined || this.lineBytes > 0;
  }

  private endOfInput(): void {
    if (this.midCommand) this.fail("truncated_payload", "connection closed in the middle of a command");
    else this.finish();
  }

  private onIdle(): void {
    if (this.closed || this.stopping) return;
    const ms = this.ctx.stallTimeoutMs;
    if (this.busy && this.socket.writableLength > 0)
      this.fail("stalled_reader", `${this.socket.writableLength} reply bytes unread for ${ms} ms`);
    else if (this.midCommand) this.fail("stalled_frame", `no bytes of a command for ${ms} ms`);
  }

  /** Closes the connection; `reply` (a RESP error) is sent first when the peer broke the framing. */
  private fail(kind: ProtocolErrorKind, message: string, reply?: string): void {
    if (this.closed) return;
    this.ctx.metrics?.protocolError(kind);
    this.ctx.log.warn(
      { peer: this.peer, namespace: namespaceLabel(this.namespace), kind, protocol: "resp" },
      `protocol error, closing connection: ${message}`,
    );
    this.closed = true;
    this.dropCommand();
    if (reply) this.socket.end(`-ERR Protocol error: ${reply}\r\n`, () => this.socket.destroy());
    else this.socket.destroy();
  }

  /** The command being received dies: its values' reservations go back to the budget. */
  private dropCommand(): void {
    const c = this.cmd;
    const v = this.value;
    this.cmd = undefined;
    this.value = undefined;
    this.bulk = undefined;
    if (v && v.reserved > 0) this.ctx.store.unreserve(v.reserved, this.namespace);
    if (!c) return;
    for (const a of c.args)
      if (!Buffer.isBuffer(a) && a.reserved > 0) this.ctx.store.unreserve(a.reserved, this.namespace);
    c.args.length = 0;
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.stopping) return;
    if (this.busy) {
      this.backlog.push(chunk);
      this.socket.pause();
      return;
    }
    try {
      this.consume(chunk);
    } catch (err) {
      if (err instanceof FrameError) this.fail(err.kind, err.message, err.message);
      else throw err;
    }
  }

  private consume(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (this.closed || this.stopping) return;
      switch (this.mode) {
        case "line": {
          const nl = chunk.indexOf(0x0a, off);
          const end = nl < 0 ? len : nl + 1;
          if (this.lineBytes + (end - off) > RESP_MAX_LINE + 2)
            throw new FrameError(`line longer than ${RESP_MAX_LINE} bytes`);
          if (nl < 0) {
            this.line.push(chunk.subarray(off));
            this.lineBytes += len - off;
            return;
          }
          let text: Buffer;
          if (this.lineBytes === 0) text = chunk.subarray(off, nl);
          else {
            this.line.push(chunk.subarray(off, nl));
            text = Buffer.concat(this.line);
          }
          this.line = [];
          this.lineBytes = 0;
          off = nl + 1;
          // a CR before the LF is the norm; a bare LF is accepted, as Redis does for inline commands
          if (text.length > 0 && text[text.length - 1] === 0x0d) text = text.subarray(0, text.length - 1);
          const wait = this.onLine(text);
          if (wait || this.socket.writableLength > MAX_QUEUED_REPLY_BYTES)
            return this.pauseFor(wait, chunk, off);
          break;
        }
        case "bulk": {
          const b = this.bulk!;
          const n = Math.min(b.length - this.bulkFilled, len - off);
          chunk.copy(b, this.bulkFilled, off, off + n);
          this.bulkFilled += n;
          off += n;
          if (this.bulkFilled === b.length) {
            this.cmd!.args.push(b);
            this.bulk = undefined;
            this.mode = "crlf";
          }
          break;
        }
        case "value": {
          const v = this.value!;
          off += v.payload.take(chunk, off, len);
          if (v.payload.missing === 0) {
            this.cmd!.args.push(v);
            this.value = undefined;
            this.mode = "crlf";
          } else this.checkDeadline();
          break;
        }
        case "crlf": {
          const want = CRLF[this.crlfSeen]!;
          if (chunk[off] !== want) throw new FrameError("expected CRLF after a bulk string");
          off++;
          if (++this.crlfSeen < 2) break;
          this.crlfSeen = 0;
          this.mode = "line";
          const c = this.cmd!;
          if (c.args.length === c.expected) {
            const wait = this.run();
            if (wait || this.socket.writableLength > MAX_QUEUED_REPLY_BYTES)
              return this.pauseFor(wait, chunk, off);
          }
          break;
        }
      }
    }
  }

  private checkDeadline(): void {
    const c = this.cmd;
    if (!c) return;
    const ms = performance.now() - c.started;
    if (ms > this.ctx.putTimeoutMs)
      this.fail("slow_payload", `a command still short after ${Math.round(ms)} ms`);
  }

  /** Stops reading until `wait` (or the socket's drain) and keeps the rest of `chunk` for then. */
  private pauseFor(wait: Promise<void> | undefined, chunk: Buffer, off: number): void {
    if (off < chunk.length) this.backlog.unshift(chunk.subarray(off));
    this.busy = true;
    this.socket.pause();
    const until = wait ?? new Promise<void>((resolve) => this.socket.once("drain", resolve));
    void Promise.race([until, this.done]).then(() => this.unblock());
  }

  private unblock(): void {
    this.busy = false;
    if (this.closed) return;
    if (this.stopping) return this.finish();
    while (this.backlog.length > 0 && !this.busy && !this.closed) {
      try {
        this.consume(this.backlog.shift()!);
      } catch (err) {
        if (err instanceof FrameError) this.fail(err.kind, err.message, err.message);
        else throw err;
      }
    }
    if (this.busy || this.closed) return;
    if (this.peerEnded) return this.endOfInput();
    this.socket.resume();
  }

  /** A complete line: a `*N` array header, a `$N` bulk header inside one, or an inline command. */
  private onLine(text: Buffer): Promise<void> | undefined {
    const c = this.cmd;
    if (c) {
      if (text[0] !== 0x24) throw new FrameError(`expected '$', got '${printable(text.subarray(0, 1))}'`);
      const n = readInt(text, 1);
      if (n === undefined || n < 0) throw new FrameError("invalid bulk length");
      const index = c.args.length;
      if (index === 1) c.name = (c.args[0] as Buffer).toString("latin1").toUpperCase();
      if (index === 0 || !isValueArg(c.name, index)) {
        if (c.argBytes + n > RESP_MAX_ARG_BYTES)
          throw new FrameError(`arguments longer than ${RESP_MAX_ARG_BYTES} bytes (values aside)`);
        c.argBytes += n;
        this.bulk = Buffer.allocUnsafe(n);
        this.bulkFilled = 0;
        this.mode = n === 0 ? "crlf" : "bulk";
        if (n === 0) {
          c.args.push(this.bulk);
          this.bulk = undefined;
        }
        return undefined;
      }
      if (n > this.ctx.maxObjectBytes)
        throw new FrameError(
          `value of ${n} bytes exceeds the max object size ${this.ctx.maxObjectBytes}`,
          "oversized_length",
        );
      // the key is argument index-1, already in: the reservation counts it as lm:// does
      const key = c.args[index - 1] as Buffer;
      const bytes = TieredStore.reservationBytes(scopedKey(this.namespace, key.toString("latin1")), n, true);
      let v: RespValue;
      if (n > 0 && this.ctx.store.reserve(bytes, this.namespace))
        v = { payload: new DirectPayload(n, this.ctx.store.pool), reserved: bytes };
      else if (n > 0) {
        this.ctx.metrics?.putRefused.inc();
        this.ctx.onPutRefused?.(this.peer, this.namespace, n);
        v = { payload: new DiscardPayload(n), reserved: 0 };
      } else v = { payload: new DirectPayload(0), reserved: 0 };
      if (n === 0) {
        c.args.push(v);
        this.mode = "crlf";
      } else {
        this.value = v;
        this.mode = "value";
      }
      return undefined;
    }
    if (text[0] === 0x2a) {
      const n = readInt(text, 1);
      if (n === undefined) throw new FrameError("invalid multibulk length");
      if (n > RESP_MAX_ARGS) throw new FrameError(`more than ${RESP_MAX_ARGS} arguments`);
      if (n <= 0) return undefined; // an empty array is no command (Redis ignores it too)
      this.cmd = { expected: n, args: [], argBytes: 0, name: "", started: performance.now() };
      return undefined;
    }
    // inline: words separated by spaces (no quoting), for telnet and health probes
    const words: Buffer[] = [];
    let i = 0;
    while (i < text.length) {
      while (i < text.length && (text[i] === 0x20 || text[i] === 0x09)) i++;
      const s = i;
      while (i < text.length && text[i] !== 0x20 && text[i] !== 0x09) i++;
      if (i > s) words.push(Buffer.from(text.subarray(s, i)));
    }
    if (words.length === 0) return undefined;
    if (words.length > RESP_MAX_ARGS) throw new FrameError(`more than ${RESP_MAX_ARGS} arguments`);
    const name = words[0]!.toString("latin1").toUpperCase();
    this.cmd = { expected: words.length, args: [], argBytes: 0, name, started: performance.now() };
    for (let k = 0; k < words.length; k++) {
      const w = words[k]!;
      if (k === 0 || !isValueArg(name, k)) this.cmd.args.push(w);
      else {
        const key = (this.cmd.args[k - 1] as Buffer).toString("latin1");
        const bytes = TieredStore.reservationBytes(scopedKey(this.namespace, key), w.length, true);
        if (this.ctx.store.reserve(bytes, this.namespace)) {
          const p = new DirectPayload(w.length, this.ctx.store.pool);
          p.take(w, 0, w.length);
          this.cmd.args.push({ payload: p, reserved: bytes });
        } else {
          this.ctx.metrics?.putRefused.inc();
          this.cmd.args.push({ payload: new DiscardPayload(0), reserved: 0 });
        }
      }
    }
    return this.run();
  }

  /** Runs the command whose arguments are all in; returns a promise when the next must wait for it. */
  private run(): Promise<void> | undefined {
    const c = this.cmd!;
    this.cmd = undefined;
    const args = c.args;
    if (c.name === "") c.name = (args[0] as Buffer).toString("latin1").toUpperCase();
    try {
      return this.commands.execute(c.name, args);
    } finally {
      // values not stored (an error reply, a refused one) give their reservation back
      for (const a of args)
        if (!Buffer.isBuffer(a) && a.reserved > 0) this.ctx.store.unreserve(a.reserved, this.namespace);
    }
  }
}

/** A non-negative decimal integer at text[from..]; undefined when it is not one (or absurdly long). */
function readInt(text: Buffer, from: number): number | undefined {
  if (text.length <= from || text.length - from > 12) return undefined;
  let neg = false;
  let i = from;
  if (text[i] === 0x2d) {
    neg = true;
    i++;
  }
  if (i >= text.length) return undefined;
  let n = 0;
  for (; i < text.length; i++) {
    const d = text[i]! - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return neg ? -n : n;
}
