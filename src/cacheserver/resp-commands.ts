// The commands of the cache server's RESP listener (resp.ts frames them): SET/GET/EXISTS/DEL and
// MSET/MGET/UNLINK on the shared store, scoped to the connection's namespace, and what redis-cli and
// ordinary clients send around them (PING, ECHO, HELLO 2, SELECT 0, CLIENT SETNAME/SETINFO, COMMAND,
// INFO, QUIT); AUTH is refused as Redis refuses it without a password. A command error gets `-ERR …`
// and the connection goes on. A SET whose value the budget refused still answers `+OK` (resp.ts says why).
import type { Socket } from "node:net";
import type { ConnectionContext } from "./connection.js";
import type { StoredObject } from "./memory.js";
import { scopedKey } from "./namespace.js";
import { DiscardPayload, payloadOf, type DirectPayload, type Payload } from "./payload.js";

export const RESP_MAX_KEY = 512;
const FMT_BINARY = 4;
const DTYPE_UINT8 = 6;
const CRLF = Buffer.from("\r\n");
const OK = Buffer.from("+OK\r\n");
const NIL = Buffer.from("$-1\r\n");
const ZERO = Buffer.from(":0\r\n");
const ONE = Buffer.from(":1\r\n");
const PONG = Buffer.from("+PONG\r\n");

/** A value received: its payload and what it reserved in the budget (0 when refused). */
export interface RespValue {
  payload: DirectPayload | DiscardPayload;
  reserved: number;
}

/** What the commands need of their connection. */
export interface RespSession {
  readonly socket: Socket;
  readonly ctx: ConnectionContext;
  readonly namespace: string;
  /** the connection is gone: a disk read that comes back writes nothing */
  closed(): boolean;
  /** QUIT: take no more commands, close once the reply is out */
  quit(): void;
}

export class RespCommands {
  private readonly socket: Socket;
  private readonly ctx: ConnectionContext;
  private readonly namespace: string;

  constructor(private readonly session: RespSession) {
    this.socket = session.socket;
    this.ctx = session.ctx;
    this.namespace = session.namespace;
  }

  private write(b: Buffer | string): void {
    this.socket.write(b);
  }

  private error(msg: string): undefined {
    this.write(`-ERR ${msg}\r\n`);
    return undefined;
  }

  private arity(name: string, args: unknown[], ok: boolean): boolean {
    if (!ok) this.error(`wrong number of arguments for '${name.toLowerCase()}' command`);
    return ok;
  }

  /** The scoped store key of argument `a`, or undefined (and an error reply) when it is not a key we take. */
  private key(a: Buffer | RespValue): string | undefined {
    if (!Buffer.isBuffer(a) || a.length === 0 || a.length > RESP_MAX_KEY) {
      this.error(`keys are 1-${RESP_MAX_KEY} bytes of printable ASCII`);
      return undefined;
    }
    for (let i = 0; i < a.length; i++) {
      const b = a[i]!;
      if (b < 0x20 || b > 0x7e) {
        this.error(`keys are 1-${RESP_MAX_KEY} bytes of printable ASCII`);
        return undefined;
      }
    }
    return scopedKey(this.namespace, a.toString("latin1"));
  }

  /** Runs one command; a promise when the next must wait for it (a disk read). */
  execute(name: string, args: (Buffer | RespValue)[]): Promise<void> | undefined {
    const m = this.ctx.metrics;
    switch (name) {
      case "GET": {
        if (!this.arity(name, args, args.length === 2)) return undefined;
        const key = this.key(args[1]!);
        if (key === undefined) return undefined;
        m?.request("get");
        return this.get(key);
      }
      case "SET": {
        if (!this.arity(name, args, args.length >= 3)) return undefined;
        let nx = false;
        let xx = false;
        for (const o of args.slice(3)) {
          const opt = Buffer.isBuffer(o) ? o.toString("latin1").toUpperCase() : "";
          if (opt === "NX") nx = true;
          else if (opt === "XX") xx = true;
          else
            return this.error(
              "syntax error (SET takes NX or XX; nothing expires here: LRU under the budget)",
            );
        }
        if (nx && xx) return this.error("syntax error");
        const key = this.key(args[1]!);
        if (key === undefined) return undefined;
        m?.request("put");
        if ((nx && this.ctx.store.has(key)) || (xx && !this.ctx.store.has(key))) {
          this.write(NIL);
          return undefined;
        }
        this.store(key, args[2] as RespValue);
        this.write(OK);
        return undefined;
      }
      case "MSET": {
        if (!this.arity(name, args, args.length >= 3 && args.length % 2 === 1)) return undefined;
        const keys: string[] = [];
        for (let i = 1; i < args.length; i += 2) {
          const k = this.key(args[i]!);
          if (k === undefined) return undefined;
          keys.push(k);
        }
        for (let i = 0; i < keys.length; i++) {
          m?.request("put");
          this.store(keys[i]!, args[2 + 2 * i] as RespValue);
        }
        this.write(OK);
        return undefined;
      }
      case "MGET": {
        if (!this.arity(name, args, args.length >= 2)) return undefined;
        const keys: string[] = [];
        for (const a of args.slice(1)) {
          const k = this.key(a);
          if (k === undefined) return undefined;
          keys.push(k);
        }
        return this.mget(keys);
      }
      case "EXISTS": {
        if (!this.arity(name, args, args.length >= 2)) return undefined;
        let n = 0;
        for (const a of args.slice(1)) {
          const k = this.key(a);
          if (k === undefined) return undefined;
          m?.request("exist");
          if (this.ctx.store.has(k)) n++;
        }
        this.write(n === 0 ? ZERO : n === 1 ? ONE : `:${n}\r\n`);
        return undefined;
      }
      case "DEL":
      case "UNLINK": {
        if (!this.arity(name, args, args.length >= 2)) return undefined;
        let n = 0;
        for (const a of args.slice(1)) {
          const k = this.key(a);
          if (k === undefined) return undefined;
          m?.request("delete");
          if (this.ctx.store.delete(k)) n++;
        }
        this.write(n === 0 ? ZERO : n === 1 ? ONE : `:${n}\r\n`);
        return undefined;
      }
      case "PING":
        if (!this.arity(name, args, args.length <= 2)) return undefined;
        m?.request("health");
        this.write(args.length === 2 ? bulk(args[1] as Buffer) : PONG);
        return undefined;
      case "ECHO":
        if (!this.arity(name, args, args.length === 2)) return undefined;
        this.write(bulk(args[1] as Buffer));
        return undefined;
      case "HELLO": {
        const ver = args.length > 1 ? (args[1] as Buffer).toString("latin1") : "2";
        if (ver !== "2") {
          this.write("-NOPROTO this server speaks RESP2 only\r\n");
          return undefined;
        }
        if (args.length > 2 && (args[2] as Buffer).toString("latin1").toUpperCase() === "AUTH")
          return this.noAuth();
        const f = [
          "server",
          "switchyard",
          "version",
          "7.2.0",
          "proto",
          2,
          "id",
          0,
          "mode",
          "standalone",
          "role",
          "master",
        ];
        this.write(`*${f.length + 2}\r\n${f.map(encodeScalar).join("")}$7\r\nmodules\r\n*0\r\n`);
        return undefined;
      }
      case "AUTH":
        return this.noAuth();
      case "SELECT": {
        if (!this.arity(name, args, args.length === 2)) return undefined;
        if ((args[1] as Buffer).toString("latin1") !== "0") return this.error("DB index is out of range");
        this.write(OK);
        return undefined;
      }
      case "CLIENT": {
        const sub = args.length > 1 ? (args[1] as Buffer).toString("latin1").toUpperCase() : "";
        if (sub === "SETNAME" || sub === "SETINFO") this.write(OK);
        else
          this.error(
            `unknown subcommand '${printable(args[1] as Buffer | undefined)}' (CLIENT SETNAME and SETINFO only)`,
          );
        return undefined;
      }
      case "COMMAND":
        this.write("*0\r\n");
        return undefined;
      case "INFO": {
        const s = this.ctx.store;
        const text =
          "# Server\r\nredis_version:7.2.0\r\nserver_name:switchyard\r\n# Memory\r\n" +
          `used_memory:${s.memory.usedBytes}\r\nmaxmemory:${s.memory.budgetBytes}\r\nmaxmemory_policy:allkeys-lru\r\n`;
        this.write(`$${Buffer.byteLength(text)}\r\n${text}\r\n`);
        return undefined;
      }
      case "QUIT":
        this.write(OK);
        this.session.quit();
        return undefined;
      default: {
        const rest = args
          .slice(1, 4)
          .map((a) => `'${Buffer.isBuffer(a) ? printable(a.subarray(0, 64)) : "…"}' `)
          .join("");
        return this.error(
          `unknown command '${printable((args[0] as Buffer).subarray(0, 64))}', with args beginning with: ${rest}`,
        );
      }
    }
  }

  private noAuth(): undefined {
    return this.error(
      "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
    );
  }

  /**
   * Stores a received value (its reservation given back first: it fits in it); a refused one (read
   * and dropped) supersedes the key all the same, as a newer value that was evicted at once.
   */
  private store(key: string, v: RespValue): void {
    if (v.payload instanceof DiscardPayload) {
      this.ctx.store.delete(key);
      return;
    }
    this.ctx.store.unreserve(v.reserved, this.namespace);
    v.reserved = 0;
    const payload = v.payload.finish();
    this.ctx.metrics?.bytesIn.inc(payload.length);
    this.ctx.store.put({
      key,
      payload,
      meta: { fmt: FMT_BINARY, dtype: DTYPE_UINT8, shape: [payload.length, 0, 0, 0] },
    });
  }

  private sendValue(payload: Payload, obj?: StoredObject): void {
    const s = this.socket;
    s.cork();
    s.write(`$${payload.length}\r\n`);
    const { chunks } = payload;
    if (obj && chunks.length > 0) {
      const store = this.ctx.store;
      store.sending(obj);
      for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i]!);
      s.write(chunks[chunks.length - 1]!, () => store.sent(obj));
    } else for (const c of chunks) s.write(c);
    s.write(CRLF);
    s.uncork();
  }

  /** Looks `key` up and writes its bulk reply (or nil); a promise when the disk tier must be read. */
  private get(key: string): Promise<void> | undefined {
    const t0 = performance.now();
    const m = this.ctx.metrics;
    const found = this.ctx.store.find(key);
    const miss = () => {
      this.write(NIL);
      m?.misses.inc();
      m?.getLatencyMiss.observe((performance.now() - t0) / 1000);
    };
    if (!found) {
      miss();
      return undefined;
    }
    if (found.tier === "memory") {
      this.sendValue(found.obj.payload, found.obj);
      m?.hitMemory.inc();
      m?.bytesOut.inc(found.obj.payload.length);
      m?.getLatencyMemory.observe((performance.now() - t0) / 1000);
      return undefined;
    }
    return this.ctx.store.disk!.read(found.entry).then((buf) => {
      if (this.session.closed()) return;
      if (!buf) return miss();
      this.sendValue(payloadOf(buf));
      m?.hitDisk.inc();
      m?.bytesOut.inc(buf.length);
      m?.getLatencyDisk.observe((performance.now() - t0) / 1000);
    });
  }

  private async mget(keys: string[]): Promise<void> {
    this.write(`*${keys.length}\r\n`);
    for (const k of keys) {
      this.ctx.metrics?.request("get");
      const wait = this.get(k);
      if (wait) await wait;
      if (this.session.closed()) return;
    }
  }
}

function bulk(b: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, CRLF]);
}

function encodeScalar(v: string | number): string {
  return typeof v === "number" ? `:${v}\r\n` : `$${Buffer.byteLength(v)}\r\n${v}\r\n`;
}

/** Bytes shown in an error reply: printable ASCII kept, the rest as '?', no CR/LF to break the reply. */
export function printable(b: Buffer | undefined): string {
  if (!b) return "";
  let s = "";
  for (const c of b) s += c >= 0x20 && c <= 0x7e && c !== 0x27 ? String.fromCharCode(c) : "?";
  return s;
}
