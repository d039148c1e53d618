// The few canonical-CBOR (RFC 8949 §4.2.1, as Python's cbor2 canonical=True writes them) shapes vLLM's
// sha256_cbor block hash needs: unsigned ints, byte strings, text strings, arrays and null. Written by
// hand into a caller-owned buffer so hashing a block allocates nothing but the digest.

export const CBOR_NULL = 0xf6;

/** Writes a CBOR head (major type + argument, shortest form) at `off`; returns the new offset. */
export function writeHead(buf: Buffer, off: number, major: number, value: number): number {
  const m = major << 5;
  if (value < 24) {
    buf[off] = m | value;
    return off + 1;
  }
  if (value < 0x100) {
    buf[off] = m | 24;
    buf[off + 1] = value;
    return off + 2;
  }
  if (value < 0x10000) {
    buf[off] = m | 25;
    buf.writeUInt16BE(value, off + 1);
    return off + 3;
  }
  if (value < 0x100000000) {
    buf[off] = m | 26;
    buf.writeUInt32BE(value, off + 1);
    return off + 5;
  }
  buf[off] = m | 27;
  buf.writeBigUInt64BE(BigInt(value), off + 1);
  return off + 9;
}

export function writeUint(buf: Buffer, off: number, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`CBOR: not an unsigned int: ${value}`);
  return writeHead(buf, off, 0, value);
}

export function writeBytes(buf: Buffer, off: number, bytes: Uint8Array): number {
  off = writeHead(buf, off, 2, bytes.length);
  buf.set(bytes, off);
  return off + bytes.length;
}

export function writeText(buf: Buffer, off: number, text: string): number {
  const len = Buffer.byteLength(text, "utf8");
  off = writeHead(buf, off, 3, len);
  buf.write(text, off, "utf8");
  return off + len;
}

export function writeArrayHead(buf: Buffer, off: number, length: number): number {
  return writeHead(buf, off, 4, length);
}

/** Worst-case encoded size of a text string (head + UTF-8 bytes). */
export function textSize(text: string): number {
  return 9 + Buffer.byteLength(text, "utf8");
}
