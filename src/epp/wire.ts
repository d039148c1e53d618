// Protocol Buffers wire format, only as much as the endpoint picker speaks: varints, length-delimited
// fields, doubles and bools. The ext_proc messages are decoded by hand against the field numbers of
// Envoy's published protos (messages.ts), so no schema compiler or generated code is needed, and every
// read is bounds-checked: a malformed peer message throws WireError, never reads past its buffer.
import { WireFormatError } from "../errors/index.js";

export class WireError extends WireFormatError {}

export const enum WireType {
  Varint = 0,
  Fixed64 = 1,
  Bytes = 2,
  Fixed32 = 5,
}

/** Reads one message (or a nested one, as a window onto the same buffer). */
export class ProtoReader {
  pos: number;

  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** The next field's tag: field number = tag >>> 3, wire type = tag & 7. */
  tag(): number {
    const t = this.varint();
    if (t >>> 3 === 0) throw new WireError("field number 0");
    return t;
  }

  /** An unsigned varint up to 2^53 (enums, bools, lengths, uint32): larger values are refused. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (result > Number.MAX_SAFE_INTEGER) throw new WireError("varint too large");
        return result;
      }
      scale *= 128;
    }
    throw new WireError("varint longer than 10 bytes");
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new WireError("truncated double");
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A length-delimited field's bytes, as a view (no copy). */
  bytes(): Buffer {
    const n = this.varint();
    if (n > this.end - this.pos) throw new WireError("length past the end of the message");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(): string {
    return this.bytes().toString("utf8");
  }

  /** A nested message: a reader over its bytes. */
  message(): ProtoReader {
    const n = this.varint();
    if (n > this.end - this.pos) throw new WireError("nested message past the end");
    const r = new ProtoReader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  /** Steps over a field of a type this decoder does not read. */
  skip(wire: number): void {
    switch (wire) {
      case WireType.Varint:
        this.varint();
        return;
      case WireType.Fixed64:
        this.advance(8);
        return;
      case WireType.Bytes:
        this.advance(this.varint());
        return;
      case WireType.Fixed32:
        this.advance(4);
        return;
      default:
        // groups (3, 4) are proto2-only and absent from every message here
        throw new WireError(`unsupported wire type ${wire}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new WireError("field past the end of the message");
    this.pos += n;
  }
}

/** Builds one message out of parts, concatenated once at the end. */
export class ProtoWriter {
  private readonly parts: Buffer[] = [];
  private size = 0;

  get length(): number {
    return this.size;
  }

  private push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }

  private rawVarint(v: number): void {
    const bytes: number[] = [];
    while (v >= 0x80) {
      bytes.push((v % 128) | 0x80);
      v = Math.floor(v / 128);
    }
    bytes.push(v);
    this.push(Buffer.from(bytes));
  }

  private key(field: number, wire: WireType): void {
    this.rawVarint(field * 8 + wire);
  }

  varint(field: number, v: number): this {
    if (!Number.isInteger(v) || v < 0) throw new WireError(`field ${field}: not an unsigned integer: ${v}`);
    this.key(field, WireType.Varint);
    this.rawVarint(v);
    return this;
  }

  bool(field: number, v: boolean): this {
    return this.varint(field, v ? 1 : 0);
  }

  double(field: number, v: number): this {
    this.key(field, WireType.Fixed64);
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(v, 0);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Buffer | Uint8Array): this {
    this.key(field, WireType.Bytes);
    this.rawVarint(b.length);
    this.push(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length));
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, Buffer.from(s, "utf8"));
  }

  /** A nested message written by `fill`; written even when empty (presence matters for oneofs). */
  message(field: number, fill: (w: ProtoWriter) => void): this {
    const sub = new ProtoWriter();
    fill(sub);
    this.key(field, WireType.Bytes);
    this.rawVarint(sub.size);
    for (const p of sub.parts) this.push(p);
    return this;
  }

  finish(): Buffer {
    return this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
  }
}
