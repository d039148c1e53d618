// msgpack, written: the primitives the KV-event encoder (codec.ts) is built from. Every integer takes its
// smallest form and every float is a float64, because that is what msgspec (vLLM's encoder) writes and the
// bytes must match vLLM's byte for byte.
import type { MsgValue } from "./events.js";

/** Free-form values nest at most this deep (reading and writing alike). */
export const MAX_VALUE_DEPTH = 32;

export const U64_MAX = (1n << 64n) - 1n;

/** Appends msgpack values to a growable buffer; every number in its smallest form, as msgspec writes. */
export class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  u8(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }
  arrayHeader(n: number): void {
    this.ensure(5);
    if (n < 16) this.buf[this.pos++] = 0x90 | n;
    else if (n < 0x10000) {
      this.buf[this.pos++] = 0xdc;
      this.buf.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xdd;
      this.buf.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
  }
  nil(): void {
    this.u8(0xc0);
  }
  float64(x: number): void {
    this.ensure(9);
    this.buf[this.pos++] = 0xcb;
    this.buf.writeDoubleBE(x, this.pos);
    this.pos += 8;
  }
  int(x: number): void {
    if (!Number.isSafeInteger(x)) throw new TypeError(`cannot encode ${x} as a msgpack integer`);
    this.ensure(9);
    const b = this.buf;
    if (x >= 0) {
      if (x < 0x80) b[this.pos++] = x;
      else if (x < 0x100) {
        b[this.pos++] = 0xcc;
        b[this.pos++] = x;
      } else if (x < 0x10000) {
        b[this.pos++] = 0xcd;
        b.writeUInt16BE(x, this.pos);
        this.pos += 2;
      } else if (x < 0x100000000) {
        b[this.pos++] = 0xce;
        b.writeUInt32BE(x, this.pos);
        this.pos += 4;
      } else {
        b[this.pos++] = 0xcf;
        b.writeBigUInt64BE(BigInt(x), this.pos);
        this.pos += 8;
      }
    } else if (x >= -32) b[this.pos++] = x & 0xff;
    else if (x >= -0x80) {
      b[this.pos++] = 0xd0;
      b.writeInt8(x, this.pos);
      this.pos += 1;
    } else if (x >= -0x8000) {
      b[this.pos++] = 0xd1;
      b.writeInt16BE(x, this.pos);
      this.pos += 2;
    } else if (x >= -0x80000000) {
      b[this.pos++] = 0xd2;
      b.writeInt32BE(x, this.pos);
      this.pos += 4;
    } else {
      b[this.pos++] = 0xd3;
      b.writeBigInt64BE(BigInt(x), this.pos);
      this.pos += 8;
    }
  }
  /** unsigned 64-bit block hash, smallest form (msgspec writes Python ints minimally) */
  u64(x: bigint): void {
    if (x < 0n || x > U64_MAX) throw new TypeError(`block hash ${x} is outside uint64`);
    if (x < 0x100000000n) return this.int(Number(x));
    this.ensure(9);
    this.buf[this.pos++] = 0xcf;
    this.buf.writeBigUInt64BE(x, this.pos);
    this.pos += 8;
  }
  str(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.ensure(5 + n);
    const b = this.buf;
    if (n < 32) b[this.pos++] = 0xa0 | n;
    else if (n < 0x100) {
      b[this.pos++] = 0xd9;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos++] = 0xda;
      b.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      b[this.pos++] = 0xdb;
      b.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
    this.pos += b.write(s, this.pos, n, "utf8");
  }
  optInt(x: number | null | undefined): void {
    if (x === null || x === undefined) this.nil();
    else this.int(x);
  }
  optStr(s: string | null | undefined): void {
    if (s === null || s === undefined) this.nil();
    else this.str(s);
  }
  hashes(hs: bigint[]): void {
    this.arrayHeader(hs.length);
    for (const h of hs) this.u64(h);
  }
  bin(b: Uint8Array): void {
    const n = b.length;
    this.ensure(5 + n);
    const buf = this.buf;
    if (n < 0x100) {
      buf[this.pos++] = 0xc4;
      buf[this.pos++] = n;
    } else if (n < 0x10000) {
      buf[this.pos++] = 0xc5;
      buf.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      buf[this.pos++] = 0xc6;
      buf.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
    buf.set(b, this.pos);
    this.pos += n;
  }
  mapHeader(n: number): void {
    this.ensure(5);
    if (n < 16) this.buf[this.pos++] = 0x80 | n;
    else if (n < 0x10000) {
      this.buf[this.pos++] = 0xde;
      this.buf.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xdf;
      this.buf.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
  }
  /** A free-form value (vLLM's extra_keys): what msgspec writes for the Python value it stands for. */
  value(v: MsgValue, depth = 0): void {
    if (depth > MAX_VALUE_DEPTH) throw new TypeError("value nested too deep to encode");
    if (v === null) this.nil();
    else if (typeof v === "string") this.str(v);
    else if (typeof v === "boolean") this.u8(v ? 0xc3 : 0xc2);
    else if (typeof v === "number") {
      if (Number.isSafeInteger(v)) this.int(v);
      else this.float64(v);
    } else if (typeof v === "bigint") {
      if (v >= 0n) this.u64(v);
      else if (v >= -(1n << 63n)) {
        this.ensure(9);
        this.buf[this.pos++] = 0xd3;
        this.buf.writeBigInt64BE(v, this.pos);
        this.pos += 8;
      } else throw new TypeError(`integer ${v} is outside int64`);
    } else if (v instanceof Uint8Array) this.bin(v);
    else {
      this.arrayHeader(v.length);
      for (const x of v) this.value(x, depth + 1);
    }
  }
}
