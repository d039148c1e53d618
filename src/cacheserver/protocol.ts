// The LMCache `lm://` wire format: fixed-size little-endian headers, parsed and built here only.
// Client → server: 186 bytes = nine int32 [command, length, fmt, dtype, location, shape0..3] + 150-byte
// key (ASCII, right-padded with spaces). Server → client: 36 bytes = nine int32
// [code, length, fmt, dtype, shape0..3, location] (location moves to the end).
import { WireFormatError } from "../errors/index.js";

export const CLIENT_HEADER_BYTES = 186;
export const SERVER_HEADER_BYTES = 36;
export const KEY_BYTES = 150;
const KEY_OFFSET = 36;

export const Command = { PUT: 1, GET: 2, EXIST: 3, LIST: 4, HEALTH: 5 } as const;
export type CommandCode = (typeof Command)[keyof typeof Command];
export const SUCCESS = 200;
export const FAIL = 400;

/** fmt and dtype carried by header-only replies (EXIST, HEALTH, a GET miss), as the reference server sends. */
export const DEFAULT_FMT = 1;
export const DEFAULT_DTYPE = 2;

/** What the server keeps next to a payload and echoes on a GET hit. */
export interface ObjectMeta {
  fmt: number;
  dtype: number;
  shape: [number, number, number, number];
}

export interface ClientHeader extends ObjectMeta {
  command: number;
  length: number;
  location: number;
  key: string;
}

export type ProtocolErrorKind =
  | "unknown_command"
  | "negative_length"
  | "oversized_length"
  | "empty_key"
  | "bad_key"
  | "truncated_header"
  | "truncated_payload"
  | "stalled_frame"
  | "stalled_reader"
  | "slow_payload"
  /** RESP framing that is not RESP (resp.ts) */
  | "bad_frame";

export class ProtocolError extends WireFormatError {
  constructor(
    readonly kind: ProtocolErrorKind,
    message: string,
  ) {
    super(message);
  }
}

const COMMANDS = new Set<number>(Object.values(Command));

/**
 * Reads the key field: trailing (and, like the reference server's strip(), leading) spaces removed.
 * Printable ASCII only: a control byte or a byte above 0x7e means the peer is not speaking lm://.
 */
export function readKey(buf: Buffer, start: number): string {
  let lo = start;
  let hi = start + KEY_BYTES;
  while (hi > lo && buf[hi - 1] === 0x20) hi--;
  while (lo < hi && buf[lo] === 0x20) lo++;
  for (let i = lo; i < hi; i++) {
    const b = buf[i]!;
    if (b < 0x20 || b > 0x7e)
      throw new ProtocolError("bad_key", `key byte 0x${b.toString(16)} at ${i - start}`);
  }
  return buf.toString("latin1", lo, hi);
}

/**
 * Parses and validates one client header at `buf[off..off+186)`. `maxObjectBytes` bounds PUT lengths.
 * The key is checked for the commands that use one (PUT, GET, EXIST); HEALTH and LIST ignore it.
 */
export function parseClientHeader(buf: Buffer, off: number, maxObjectBytes: number): ClientHeader {
  const command = buf.readInt32LE(off);
  if (!COMMANDS.has(command)) throw new ProtocolError("unknown_command", `unknown command ${command}`);
  const length = buf.readInt32LE(off + 4);
  if (length < 0) throw new ProtocolError("negative_length", `negative length ${length}`);
  if (command === Command.PUT && length > maxObjectBytes) {
    throw new ProtocolError(
      "oversized_length",
      `PUT of ${length} bytes exceeds max object ${maxObjectBytes}`,
    );
  }
  let key = "";
  if (command === Command.PUT || command === Command.GET || command === Command.EXIST) {
    key = readKey(buf, off + KEY_OFFSET);
    if (key.length === 0) throw new ProtocolError("empty_key", "empty key");
  }
  return {
    command,
    length,
    fmt: buf.readInt32LE(off + 8),
    dtype: buf.readInt32LE(off + 12),
    location: buf.readInt32LE(off + 16),
    shape: [
      buf.readInt32LE(off + 20),
      buf.readInt32LE(off + 24),
      buf.readInt32LE(off + 28),
      buf.readInt32LE(off + 32),
    ],
    key,
  };
}

/** Builds a client header (used by LmClient and tests). Throws on keys that do not fit or are not ASCII. */
export function encodeClientHeader(
  command: number,
  key: string,
  length = 0,
  meta: ObjectMeta = { fmt: DEFAULT_FMT, dtype: DEFAULT_DTYPE, shape: [0, 0, 0, 0] },
  location = 0,
): Buffer {
  if (key.length > KEY_BYTES) throw new RangeError(`key longer than ${KEY_BYTES} bytes`);
  if (!/^[\x20-\x7e]*$/.test(key)) throw new RangeError("key must be printable ASCII");
  const b = Buffer.allocUnsafe(CLIENT_HEADER_BYTES);
  b.writeInt32LE(command, 0);
  b.writeInt32LE(length, 4);
  b.writeInt32LE(meta.fmt, 8);
  b.writeInt32LE(meta.dtype, 12);
  b.writeInt32LE(location, 16);
  for (let i = 0; i < 4; i++) b.writeInt32LE(meta.shape[i]!, 20 + 4 * i);
  b.write(key, KEY_OFFSET, "latin1");
  b.fill(0x20, KEY_OFFSET + key.length);
  return b;
}

/** Builds a server reply header; one Buffer so that it goes out in one write. */
export function encodeServerHeader(code: number, length: number, meta?: ObjectMeta, location = 0): Buffer {
  const b = Buffer.allocUnsafe(SERVER_HEADER_BYTES);
  b.writeInt32LE(code, 0);
  b.writeInt32LE(length, 4);
  b.writeInt32LE(meta ? meta.fmt : DEFAULT_FMT, 8);
  b.writeInt32LE(meta ? meta.dtype : DEFAULT_DTYPE, 12);
  for (let i = 0; i < 4; i++) b.writeInt32LE(meta ? meta.shape[i]! : 0, 16 + 4 * i);
  b.writeInt32LE(location, 32);
  return b;
}

export interface ServerHeader extends ObjectMeta {
  code: number;
  length: number;
  location: number;
}

export function parseServerHeader(buf: Buffer, off = 0): ServerHeader {
  return {
    code: buf.readInt32LE(off),
    length: buf.readInt32LE(off + 4),
    fmt: buf.readInt32LE(off + 8),
    dtype: buf.readInt32LE(off + 12),
    shape: [
      buf.readInt32LE(off + 16),
      buf.readInt32LE(off + 20),
      buf.readInt32LE(off + 24),
      buf.readInt32LE(off + 28),
    ],
    location: buf.readInt32LE(off + 32),
  };
}

/** Header-only replies never change: build them once. */
export const REPLY_OK = encodeServerHeader(SUCCESS, 0);
export const REPLY_FAIL = encodeServerHeader(FAIL, 0);
