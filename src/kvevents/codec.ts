// vLLM's KV-event payload codec: the msgspec msgpack bytes of a KVEventBatch, both ways.
//
// Encoding reproduces msgspec byte for byte (array_like structs, tagged events, omit_defaults):
// floats are always float64, integers use the smallest msgpack form (as msgspec does; 64-bit block
// hashes are therefore almost always `cf` uint64), strings use fixstr/str8/str16/str32.
//
// Decoding is schema-directed (no generic msgpack tree, then no second pass): it reads straight into
// typed events, accepts every shape vLLM has shipped (short arrays, extra trailing fields, events as
// maps with a "type" key, hashes as uint64 ints or raw digest bytes) and rejects anything else with a
// DecodeError that says what was wrong and at which byte offset.
import type { AllBlocksCleared, BlockRemoved, BlockStored, KvEvent, KvEventBatch } from "./events.js";

export class DecodeError extends Error {
  override name = "DecodeError";
}

/** Counters a caller may pass to decodeBatch to learn about skipped, forward-compatible content. */
export interface DecodeStats {
  /** events whose type this decoder does not know (newer vLLM); skipped, not fatal */
  unknownEvents: number;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const U64_MAX = (1n << 64n) - 1n;

class Writer {
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
}

function encodeEvent(w: Writer, ev: KvEvent): void {
  switch (ev.type) {
    case "BlockStored": {
      // omit_defaults on an array_like struct drops trailing default fields: lora_name (newest
      // builds) when null, and medium when null (the v0.10 shape, which had no medium field).
      const hasLoraName = ev.loraName !== undefined && ev.loraName !== null;
      const hasMedium = hasLoraName || (ev.medium !== null && ev.medium !== undefined);
      w.arrayHeader(6 + (hasMedium ? 1 : 0) + (hasLoraName ? 1 : 0));
      w.str("BlockStored");
      w.hashes(ev.blockHashes);
      if (ev.parentBlockHash === null || ev.parentBlockHash === undefined) w.nil();
      else w.u64(ev.parentBlockHash);
      w.arrayHeader(ev.tokenIds.length);
      for (const t of ev.tokenIds) w.int(t);
      w.int(ev.blockSize);
      w.optInt(ev.loraId);
      if (hasMedium) w.optStr(ev.medium);
      if (hasLoraName) w.str(ev.loraName as string);
      return;
    }
    case "BlockRemoved": {
      const hasMedium = ev.medium !== null && ev.medium !== undefined;
      w.arrayHeader(hasMedium ? 3 : 2);
      w.str("BlockRemoved");
      w.hashes(ev.blockHashes);
      if (hasMedium) w.str(ev.medium as string);
      return;
    }
    case "AllBlocksCleared":
      w.arrayHeader(1);
      w.str("AllBlocksCleared");
      return;
    default:
      throw new TypeError(`unknown KV event type ${String((ev as { type: unknown }).type)}`);
  }
}

let scratch: Writer | undefined;

/** The msgspec msgpack bytes vLLM publishes for this batch. The returned Buffer is the caller's. */
export function encodeBatch(batch: KvEventBatch): Buffer {
  // One scratch writer, reused: encoding allocates only the returned copy.
  const w = (scratch ??= new Writer(64 * 1024));
  w.pos = 0;
  const hasRank = batch.dataParallelRank !== null && batch.dataParallelRank !== undefined;
  w.arrayHeader(hasRank ? 3 : 2);
  w.float64(batch.ts);
  w.arrayHeader(batch.events.length);
  for (const ev of batch.events) encodeEvent(w, ev);
  if (hasRank) w.int(batch.dataParallelRank as number);
  const out = Buffer.from(w.buf.subarray(0, w.pos));
  // Do not pin a huge scratch buffer after one outsized batch.
  if (w.buf.length > 4 * 1024 * 1024) scratch = undefined;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

const MAX_SKIP_DEPTH = 32;

/** Cursor over one payload. Every read checks bounds; every length is checked against what is left. */
class Reader {
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
    if (depth > MAX_SKIP_DEPTH) this.fail("nesting too deep");
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
  advance(n: number): void {
    this.need(n);
    this.pos += n;
  }
}

function typeName(b: number): string {
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

/** Reads the fields of a tagged array event after its tag; `n` is the array length including the tag. */
function eventFromArray(r: Reader, tag: string, n: number, stats: DecodeStats | undefined): KvEvent | null {
  let left = n - 1;
  switch (tag) {
    case "BlockStored": {
      if (left < 4) r.fail(`BlockStored needs at least 4 fields, has ${left}`);
      const ev: BlockStored = {
        type: "BlockStored",
        blockHashes: r.hashes("BlockStored.block_hashes"),
        parentBlockHash: r.optHash("BlockStored.parent_block_hash"),
        tokenIds: r.ints("BlockStored.token_ids"),
        blockSize: r.int("BlockStored.block_size"),
        loraId: null,
        medium: null,
      };
      left -= 4;
      if (left > 0) {
        ev.loraId = r.optInt("BlockStored.lora_id");
        left--;
      }
      if (left > 0) {
        ev.medium = r.optStr("BlockStored.medium");
        left--;
      }
      if (left > 0) {
        ev.loraName = r.optStr("BlockStored.lora_name");
        left--;
      }
      while (left-- > 0) r.skip();
      return ev;
    }
    case "BlockRemoved": {
      if (left < 1) r.fail("BlockRemoved needs block_hashes");
      const ev: BlockRemoved = {
        type: "BlockRemoved",
        blockHashes: r.hashes("BlockRemoved.block_hashes"),
        medium: null,
      };
      left--;
      if (left > 0) {
        ev.medium = r.optStr("BlockRemoved.medium");
        left--;
      }
      while (left-- > 0) r.skip();
      return ev;
    }
    case "AllBlocksCleared":
      while (left-- > 0) r.skip();
      return { type: "AllBlocksCleared" } satisfies AllBlocksCleared;
    default:
      while (left-- > 0) r.skip();
      if (stats) stats.unknownEvents++;
      return null;
  }
}

/** The map form some newer builds publish: {"type": "BlockStored", "block_hashes": [...], ...}. */
function eventFromMap(r: Reader, n: number, stats: DecodeStats | undefined): KvEvent | null {
  let type: string | undefined;
  let blockHashes: bigint[] | undefined;
  let parent: bigint | null = null;
  let tokenIds: number[] | undefined;
  let blockSize: number | undefined;
  let loraId: number | null = null;
  let medium: string | null = null;
  let loraName: string | null | undefined;
  for (let i = 0; i < n; i++) {
    const key = r.str("event map key");
    switch (key) {
      case "type":
        type = r.str("event type");
        break;
      case "block_hashes":
        blockHashes = r.hashes("block_hashes");
        break;
      case "parent_block_hash":
        parent = r.optHash("parent_block_hash");
        break;
      case "token_ids":
        tokenIds = r.ints("token_ids");
        break;
      case "block_size":
        blockSize = r.int("block_size");
        break;
      case "lora_id":
        loraId = r.optInt("lora_id");
        break;
      case "medium":
        medium = r.optStr("medium");
        break;
      case "lora_name":
        loraName = r.optStr("lora_name");
        break;
      default:
        r.skip();
    }
  }
  switch (type) {
    case "BlockStored": {
      if (!blockHashes || !tokenIds || blockSize === undefined)
        r.fail("BlockStored map needs block_hashes, token_ids and block_size");
      const ev: BlockStored = {
        type: "BlockStored",
        blockHashes,
        parentBlockHash: parent,
        tokenIds,
        blockSize,
        loraId,
        medium,
      };
      if (loraName !== undefined) ev.loraName = loraName;
      return ev;
    }
    case "BlockRemoved":
      if (!blockHashes) r.fail("BlockRemoved map needs block_hashes");
      return { type: "BlockRemoved", blockHashes, medium };
    case "AllBlocksCleared":
      return { type: "AllBlocksCleared" } satisfies AllBlocksCleared;
    case undefined:
      return r.fail('event map without a "type" key');
    default:
      if (stats) stats.unknownEvents++;
      return null;
  }
}

function readEvent(r: Reader, stats: DecodeStats | undefined): KvEvent | null {
  const m = r.mapLenOrNot();
  if (m >= 0) return eventFromMap(r, m, stats);
  const n = r.arrayLen("event");
  if (n === 0) r.fail("empty event array (no type tag)");
  const tag = r.str("event type tag");
  return eventFromArray(r, tag, n, stats);
}

function readEvents(r: Reader, stats: DecodeStats | undefined): KvEvent[] {
  const n = r.arrayLen("events");
  const events: KvEvent[] = [];
  for (let i = 0; i < n; i++) {
    const ev = readEvent(r, stats);
    if (ev) events.push(ev);
  }
  return events;
}

/**
 * Decodes one ZMQ payload frame into a typed batch. Throws DecodeError (and nothing else) on input
 * that is not a KV event batch; never reads past the buffer, never allocates more than the input
 * could describe.
 */
export function decodeBatch(buf: Uint8Array, stats?: DecodeStats): KvEventBatch {
  const r: Reader = new Reader(
    Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength),
  );
  let batch: KvEventBatch;
  const m = r.mapLenOrNot();
  if (m >= 0) {
    let ts: number | undefined;
    let events: KvEvent[] | undefined;
    let rank: number | null = null;
    for (let i = 0; i < m; i++) {
      const key = r.str("batch map key");
      if (key === "ts") ts = r.num("ts");
      else if (key === "events") events = readEvents(r, stats);
      else if (key === "data_parallel_rank") rank = r.optInt("data_parallel_rank");
      else r.skip();
    }
    if (ts === undefined || events === undefined) r.fail("batch map needs ts and events");
    batch = { ts, events, dataParallelRank: rank };
  } else {
    const n = r.arrayLen("batch");
    if (n < 2) r.fail(`batch needs [ts, events], has ${n} element(s)`);
    const ts = r.num("ts");
    const events = readEvents(r, stats);
    const rank = n > 2 ? r.optInt("data_parallel_rank") : null;
    for (let i = 3; i < n; i++) r.skip();
    batch = { ts, events, dataParallelRank: rank };
  }
  if (r.pos !== buf.length) r.fail(`${buf.length - r.pos} trailing byte(s) after the batch`);
  return batch;
}
