// msgpack, read: a bounds-checked cursor the KV-event decoder (codec.ts) reads straight into typed events
// with. Every read checks what is left, every length is checked against the bytes that could hold it, and
// every failure is a DecodeError naming what was being read and the byte offset.
import type { MsgValue } from "./events.js";
import { MAX_VALUE_DEPTH } from "./msgpack-write.js";
import { WireFormatError } from "../errors/index.js";

export class DecodeError extends WireFormatError {
  override name = "DecodeError";
}

/** thrown inside tryValue() when a value is not plain data; never escapes it */
const NOT_PLAIN = Symbol("not plain");

/** Cursor over one payload. Every read checks bounds; every length is checked against what is left. */
export class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  fail(what: string, at = this.pos): never {
    throw new DecodeError(`KV event batch: ${what} (byte ${at} of ${this.buf.length})`);
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) this.fail(`truncated: ${n} more byte(s) needed`);
  }
  byte(): number {
    if (this.pos >= this.buf.length) this.fail("truncated");
    return this.buf[this.pos++]!;
  }
  peek(): number {
    if (this.pos >= this.buf.length) this.fail("truncated");
    return this.buf[this.pos]!;
  }
  tryNil(): boolean {
    if (this.peek() === 0xc0) {
      this.pos++;
      return true;
    }
    return false;
  }
  /** element count of an array (each element takes at least one byte, so a count cannot exceed what is left) */
  arrayLen(what: string): number {
    const at = this.pos;
    const b = this.byte();
    let n: number;
    if ((b & 0xf0) === 0x90) n = b & 0x0f;
    else if (b === 0xdc) {
      this.need(2);
      n = this.buf.readUInt16BE(this.pos);
      this.pos += 2;
    } else if (b === 0xdd) {
      this.need(4);
      n = this.buf.readUInt32BE(this.pos);
      this.pos += 4;
    } else return this.fail(`${what} must be an array, found ${typeName(b)}`, at);
    if (n > this.buf.length - this.pos) this.fail(`${what}: array of ${n} elements cannot fit`, at);
    return n;
  }
  /** entry count of a map, or -1 if the next value is not a map (nothing consumed then) */
  mapLenOrNot(): number {
    const b = this.peek();
    let n: number;
    if ((b & 0xf0) === 0x80) {
      this.pos++;
      n = b & 0x0f;
    } else if (b === 0xde) {
      this.pos++;
      this.need(2);
      n = this.buf.readUInt16BE(this.pos);
      this.pos += 2;
    } else if (b === 0xdf) {
      this.pos++;
      this.need(4);
      n = this.buf.readUInt32BE(this.pos);
      this.pos += 4;
    } else return -1;
    if (n * 2 > this.buf.length - this.pos) this.fail(`map of ${n} entries cannot fit`);
    return n;
  }
  strLen(what: string): number {
    const at = this.pos;
    const b = this.byte();
    let n: number;
    if ((b & 0xe0) === 0xa0) n = b & 0x1f;
    else if (b === 0xd9) n = this.byte();
    else if (b === 0xda) {
      this.need(2);
      n = this.buf.readUInt16BE(this.pos);
      this.pos += 2;
    } else if (b === 0xdb) {
      this.need(4);
      n = this.buf.readUInt32BE(this.pos);
      this.pos += 4;
    } else return this.fail(`${what} must be a string, found ${typeName(b)}`, at);
    this.need(n);
    return n;
  }
  str(what: string): string {
    const n = this.strLen(what);
    const s = this.buf.toString("utf8", this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  optStr(what: string): string | null {
    return this.tryNil() ? null : this.str(what);
  }
  /** any msgpack number (int or float), as a JS number */
  num(what: string): number {
    const b = this.peek();
    if (b === 0xcb) {
      this.pos++;
      this.need(8);
      const x = this.buf.readDoubleBE(this.pos);
      this.pos += 8;
      return x;
    }
    if (b === 0xca) {
      this.pos++;
      this.need(4);
      const x = this.buf.readFloatBE(this.pos);
      this.pos += 4;
      return x;
    }
    return this.int(what);
  }
  /** an integer that fits a JS number exactly */
  int(what: string): number {
    const at = this.pos;
    const b = this.byte();
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    const buf = this.buf;
    let x: number;
    switch (b) {
      case 0xcc:
        return this.byte();
      case 0xcd:
        this.need(2);
        x = buf.readUInt16BE(this.pos);
        this.pos += 2;
        return x;
      case 0xce:
        this.need(4);
        x = buf.readUInt32BE(this.pos);
        this.pos += 4;
        return x;
      case 0xd0:
        this.need(1);
        return buf.readInt8(this.pos++);
      case 0xd1:
        this.need(2);
        x = buf.readInt16BE(this.pos);
        this.pos += 2;
        return x;
      case 0xd2:
        this.need(4);
        x = buf.readInt32BE(this.pos);
        this.pos += 4;
        return x;
      case 0xcf:
      case 0xd3: {
        this.need(8);
        const hi = b === 0xcf ? buf.readUInt32BE(this.pos) : buf.readInt32BE(this.pos);
        const lo = buf.readUInt32BE(this.pos + 4);
        this.pos += 8;
        x = hi * 0x100000000 + lo;
        if (!Number.isSafeInteger(x)) this.fail(`${what}: integer beyond 2^53`, at);
        return x;
      }
      default:
        return this.fail(`${what} must be an integer, found ${typeName(b)}`, at);
    }
  }
  optInt(what: string): number | null {
    return this.tryNil() ? null : this.int(what);
  }
  /**
   * A block hash: an integer (uint64; a negative int64 from pre-0.10 engines, which used Python's
   * hash(), is read as its two's complement) or raw digest bytes (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0),
   * of which the last 8 bytes are read big-endian — the same low 64 bits vLLM's int form carries.
   */
  hash(what: string): bigint {
    const at = this.pos;
    const b = this.byte();
    const buf = this.buf;
    if (b < 0x80) return BigInt(b);
    if (b >= 0xe0) return BigInt.asUintN(64, BigInt(b - 0x100));
    switch (b) {
      case 0xcf:
        this.need(8);
        this.pos += 8;
        return buf.readBigUInt64BE(this.pos - 8);
      case 0xd3:
        this.need(8);
        this.pos += 8;
        return BigInt.asUintN(64, buf.readBigInt64BE(this.pos - 8));
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xd0:
      case 0xd1:
      case 0xd2:
        this.pos = at;
        return BigInt.asUintN(64, BigInt(this.int(what)));
      case 0xc4:
      case 0xc5:
      case 0xc6: {
        let n: number;
        if (b === 0xc4) n = this.byte();
        else if (b === 0xc5) {
          this.need(2);
          n = buf.readUInt16BE(this.pos);
          this.pos += 2;
        } else {
          this.need(4);
          n = buf.readUInt32BE(this.pos);
          this.pos += 4;
        }
        this.need(n);
        if (n === 0 || n > 64) this.fail(`${what}: ${n}-byte hash digest`, at);
        const end = this.pos + n;
        this.pos = end;
        if (n >= 8) return buf.readBigUInt64BE(end - 8);
        let x = 0n;
        for (let i = end - n; i < end; i++) x = (x << 8n) | BigInt(buf[i]!);
        return x;
      }
      default:
        return this.fail(`${what} must be an integer or bytes, found ${typeName(b)}`, at);
    }
  }
  optHash(what: string): bigint | null {
    return this.tryNil() ? null : this.hash(what);
  }
  hashes(what: string): bigint[] {
    const n = this.arrayLen(what);
    const out = new Array<bigint>(n);
    for (let i = 0; i < n; i++) out[i] = this.hash(what);
    return out;
  }
  ints(what: string): number[] {
    const n = this.arrayLen(what);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.int(what);
    return out;
  }
  /** skip one value of any type (extra fields from newer vLLM builds) */
  skip(depth = 0): void {
    if (depth > MAX_VALUE_DEPTH) this.fail("nesting too deep");
    const at = this.pos;
    const b = this.byte();
    const buf = this.buf;
    if (b < 0x80 || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return;
    if ((b & 0xe0) === 0xa0) return this.advance(b & 0x1f);
    if ((b & 0xf0) === 0x90 || b === 0xdc || b === 0xdd) {
      this.pos = at;
      const n = this.arrayLen("value");
      for (let i = 0; i < n; i++) this.skip(depth + 1);
      return;
    }
    if ((b & 0xf0) === 0x80 || b === 0xde || b === 0xdf) {
      this.pos = at;
      const n = this.mapLenOrNot();
      for (let i = 0; i < 2 * n; i++) this.skip(depth + 1);
      return;
    }
    switch (b) {
      case 0xcc:
      case 0xd0:
        return this.advance(1);
      case 0xcd:
      case 0xd1:
        return this.advance(2);
      case 0xce:
      case 0xd2:
      case 0xca:
        return this.advance(4);
      case 0xcf:
      case 0xd3:
      case 0xcb:
        return this.advance(8);
      case 0xd4:
        return this.advance(2);
      case 0xd5:
        return this.advance(3);
      case 0xd6:
        return this.advance(5);
      case 0xd7:
        return this.advance(9);
      case 0xd8:
        return this.advance(17);
      case 0xc4:
      case 0xd9:
        return this.advance(this.byte());
      case 0xc5:
      case 0xda:
        this.need(2);
        this.pos += 2;
        return this.advance(buf.readUInt16BE(this.pos - 2));
      case 0xc6:
      case 0xdb:
        this.need(4);
        this.pos += 4;
        return this.advance(buf.readUInt32BE(this.pos - 4));
      case 0xc7:
        this.need(1);
        return this.advance(1 + buf[this.pos]!);
      case 0xc8:
        this.need(2);
        return this.advance(3 + buf.readUInt16BE(this.pos));
      case 0xc9:
        this.need(4);
        return this.advance(5 + buf.readUInt32BE(this.pos));
      default:
        return this.fail(`invalid msgpack byte 0x${b.toString(16)}`, at);
    }
  }
  /**
   * A free-form value (vLLM's extra_keys: strings, ints, bytes, nested lists), or undefined when it holds
   * something a Python tuple of keys never does (a map, an extension): then it is skipped whole.
   */
  tryValue(what: string): MsgValue | undefined {
    const at = this.pos;
    try {
      return this.plainValue(what, 0);
    } catch (err) {
      if (err !== NOT_PLAIN) throw err;
      this.pos = at;
      this.skip();
      return undefined;
    }
  }
  private plainValue(what: string, depth: number): MsgValue {
    if (depth > MAX_VALUE_DEPTH) this.fail("nesting too deep");
    const b = this.peek();
    if (b === 0xc0) {
      this.pos++;
      return null;
    }
    if (b === 0xc2 || b === 0xc3) {
      this.pos++;
      return b === 0xc3;
    }
    if (b === 0xca || b === 0xcb) return this.num(what);
    if (b === 0xcf || b === 0xd3) {
      const at = this.pos;
      this.pos++;
      this.need(8);
      this.pos += 8;
      const x = b === 0xcf ? this.buf.readBigUInt64BE(at + 1) : this.buf.readBigInt64BE(at + 1);
      return x >= -BigInt(Number.MAX_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
    }
    if (b < 0x80 || b >= 0xe0 || (b >= 0xcc && b <= 0xd2)) return this.int(what);
    if ((b & 0xe0) === 0xa0 || (b >= 0xd9 && b <= 0xdb)) return this.str(what);
    if (b >= 0xc4 && b <= 0xc6) {
      this.pos++;
      let n: number;
      if (b === 0xc4) n = this.byte();
      else if (b === 0xc5) {
        this.need(2);
        n = this.buf.readUInt16BE(this.pos);
        this.pos += 2;
      } else {
        this.need(4);
        n = this.buf.readUInt32BE(this.pos);
        this.pos += 4;
      }
      this.need(n);
      // a copy: a view would keep the whole ZMQ frame alive for as long as the event is held
      const out = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
      this.pos += n;
      return out;
    }
    if ((b & 0xf0) === 0x90 || b === 0xdc || b === 0xdd) {
      const n = this.arrayLen(what);
      const out: MsgValue[] = new Array<MsgValue>(n);
      for (let i = 0; i < n; i++) out[i] = this.plainValue(what, depth + 1);
      return out;
    }
    throw NOT_PLAIN;
  }
  advance(n: number): void {
    this.need(n);
    this.pos += n;
  }
}

export function typeName(b: number): string {
  if (b < 0x80 || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) return "an integer";
  if ((b & 0xf0) === 0x80 || b === 0xde || b === 0xdf) return "a map";
  if ((b & 0xf0) === 0x90 || b === 0xdc || b === 0xdd) return "an array";
  if ((b & 0xe0) === 0xa0 || (b >= 0xd9 && b <= 0xdb)) return "a string";
  if (b === 0xc0) return "nil";
  if (b === 0xc2 || b === 0xc3) return "a boolean";
  if (b === 0xca || b === 0xcb) return "a float";
  if (b >= 0xc4 && b <= 0xc6) return "bytes";
  if (b === 0xc1) return "the invalid byte 0xc1";
  return "an extension";
}
