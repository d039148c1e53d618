// A stored payload is the list of buffers it arrived in, not one joined Buffer: Node reads a socket
// into a fresh ArrayBuffer per read (64 KiB when data is flowing), so keeping those reads as they are
// stores a PUT with no copy and no page faults on a fresh large buffer, and a GET sends them back as
// one writev. Only reads that own their whole ArrayBuffer and are large enough are adopted; slices of
// a read shared with a header or the next request, and small reads, are copied into blocks cut to
// fit, so every stored byte pins exactly one byte of memory and per-buffer overhead stays below 1%
// (at most 256 B per 32 KiB).
import { WireFormatError } from "../errors/index.js";

export interface Payload {
  readonly chunks: readonly Buffer[];
  /** total bytes across chunks */
  readonly length: number;
  /** memory the chunks keep alive (their whole ArrayBuffers plus per-chunk overhead): what the budget is charged */
  readonly heldBytes: number;
  /** one Buffer that may go back to a BufferPool once no one holds it */
  readonly recyclable?: boolean;
}

/** A read at least this large that owns its ArrayBuffer is kept as is instead of copied. */
export const ADOPT_MIN_BYTES = 32 * 1024;
/** Small pieces are gathered into blocks of up to this size (cut to the bytes still expected). */
export const COPY_BLOCK_BYTES = 64 * 1024;
/** Heap and allocator cost of one chunk (JS view, ArrayBuffer, backing store), charged to the budget. */
export const PER_CHUNK_OVERHEAD = 256;

export const EMPTY_PAYLOAD: Payload = { chunks: [], length: 0, heldBytes: 0 };

/**
 * The most memory a payload of `length` bytes can hold once received, known from its header alone:
 * what a PUT reserves before anything is allocated. Direct reads hold one Buffer. The fallback
 * builder holds at most two chunks per 32 KiB (each adopted or exact-copied chunk is at least that
 * large and may close one part-filled block) plus the last block.
 */
export function maxHeldBytes(length: number, directReads: boolean): number {
  if (length === 0) return 0;
  if (directReads) return length + PER_CHUNK_OVERHEAD;
  return length + PER_CHUNK_OVERHEAD * (2 * Math.ceil(length / ADOPT_MIN_BYTES) + 1);
}

/**
 * A refused PUT's payload: the bytes are read (LMCache sends them whatever we do, and PUT has no
 * reply to refuse it with) and dropped, so the connection stays usable and nothing is allocated.
 */
export class DiscardPayload {
  private filled = 0;

  constructor(readonly length: number) {}

  get missing(): number {
    return this.length - this.filled;
  }

  take(_read: Buffer, start: number, end: number): number {
    const n = Math.min(this.missing, end - start);
    if (n <= 0) return 0;
    this.filled += n;
    return n;
  }
}

function held(chunks: readonly Buffer[]): number {
  let n = 0;
  for (const c of chunks) n += c.buffer.byteLength + PER_CHUNK_OVERHEAD;
  return n;
}

/** Wraps one Buffer (a disk read, a LIST reply). */
export function payloadOf(buf: Buffer): Payload {
  if (buf.length === 0) return EMPTY_PAYLOAD;
  return { chunks: [buf], length: buf.length, heldBytes: held([buf]) };
}

/** One Buffer with the payload's bytes (tests and small data; never on the hot path). */
export function joinPayload(p: Payload): Buffer {
  return p.chunks.length === 1 ? p.chunks[0]! : Buffer.concat(p.chunks as Buffer[], p.length);
}

function ownsItsMemory(b: Buffer): boolean {
  return b.byteOffset === 0 && b.buffer.byteLength === b.length;
}

/**
 * Collects exactly `length` bytes from socket reads: a whole read that owns its memory is adopted,
 * a large slice of a read is copied to a buffer of its exact size, small pieces are gathered into
 * blocks. A block is always cut to what is still expected and, if a read is adopted while it is
 * part full, copied down to its filled size: no stored byte pins more than itself.
 */
export class PayloadBuilder {
  private readonly chunks: Buffer[] = [];
  private filled = 0;
  /** the block being gathered into, until it is full */
  private block: Buffer | undefined;
  private blockFilled = 0;

  constructor(readonly length: number) {}

  get missing(): number {
    return this.length - this.filled;
  }

  /** Takes bytes `[start, end)` of `read`, at most `missing` of them; returns how many it took. */
  take(read: Buffer, start: number, end: number): number {
    const n = Math.min(this.missing, end - start);
    if (n <= 0) return 0;
    if (n >= ADOPT_MIN_BYTES) {
      if (start === 0 && n === read.length && ownsItsMemory(read)) {
        this.closeBlock();
        this.chunks.push(read);
        this.filled += n;
        return n;
      }
      if (this.block === undefined) {
        const exact = Buffer.allocUnsafeSlow(n);
        read.copy(exact, 0, start, start + n);
        this.chunks.push(exact);
        this.filled += n;
        return n;
      }
    }
    let done = 0;
    while (done < n) {
      let block = this.block;
      if (block === undefined) {
        block = this.block = Buffer.allocUnsafeSlow(Math.min(this.missing, COPY_BLOCK_BYTES));
        this.blockFilled = 0;
      }
      const k = Math.min(block.length - this.blockFilled, n - done);
      read.copy(block, this.blockFilled, start + done, start + done + k);
      this.blockFilled += k;
      this.filled += k;
      done += k;
      if (this.blockFilled === block.length) {
        this.chunks.push(block);
        this.block = undefined;
      }
    }
    return n;
  }

  private closeBlock(): void {
    const block = this.block;
    if (block === undefined) return;
    this.block = undefined;
    const exact = Buffer.allocUnsafeSlow(this.blockFilled);
    block.copy(exact, 0, 0, this.blockFilled);
    this.chunks.push(exact);
  }

  /** The payload, once `missing` is 0. */
  finish(): Payload {
    if (this.missing !== 0) throw new WireFormatError(`payload ${this.missing} bytes short`);
    return { chunks: this.chunks, length: this.length, heldBytes: held(this.chunks) };
  }
}

/**
 * A payload read straight from the socket into its final Buffer (see `directReads` in
 * connection.ts): `view()` is handed to libuv as the next read buffer, `advance(n)` records a read.
 * Bytes that arrived together with the header are copied in with `take`.
 */
export class DirectPayload {
  private readonly buf: Buffer;
  private filled = 0;

  constructor(
    readonly length: number,
    private readonly pool?: BufferPool,
  ) {
    this.buf = pool ? pool.acquire(length) : Buffer.allocUnsafeSlow(length);
  }

  get missing(): number {
    return this.length - this.filled;
  }

  take(read: Buffer, start: number, end: number): number {
    const n = Math.min(this.missing, end - start);
    if (n <= 0) return 0;
    read.copy(this.buf, this.filled, start, start + n);
    this.filled += n;
    return n;
  }

  /** Where the next read should land: exactly the bytes still missing, so it never takes the next request. */
  view(): Buffer {
    return this.buf.subarray(this.filled);
  }

  advance(n: number): void {
    this.filled += n;
  }

  finish(): Payload {
    if (this.missing !== 0) throw new WireFormatError(`payload ${this.missing} bytes short`);
    return { ...payloadOf(this.buf), recyclable: this.pool !== undefined && this.length > 0 };
  }
}

/** Only buffers at least this large are worth keeping for reuse. */
export const POOL_MIN_BYTES = 1024 * 1024;

/**
 * Receive buffers of objects that were replaced or evicted, handed to the next PUT of the same size
 * (LMCache chunks all have one size). A fresh large Buffer costs a page fault and a zeroed page per
 * 4 KiB, an munmap when it dies, and external-memory GC pressure: that, not copying, is most of
 * what a PUT costs. Bounded by `maxBytes` (held outside the store's budget); beyond it, buffers are
 * left to the GC. Callers must release a Buffer only when nothing reads it any more.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private held = 0;

  constructor(readonly maxBytes: number) {}

  get heldBytes(): number {
    return this.held;
  }

  acquire(length: number): Buffer {
    const list = this.free.get(length);
    const b = list?.pop();
    if (!b) return Buffer.allocUnsafeSlow(length);
    if (list!.length === 0) this.free.delete(length);
    this.held -= length;
    return b;
  }

  release(b: Buffer): void {
    if (b.length < POOL_MIN_BYTES || this.held + b.length > this.maxBytes) return;
    if (b.byteOffset !== 0 || b.buffer.byteLength !== b.length) return; // only whole buffers
    const list = this.free.get(b.length);
    if (list) list.push(b);
    else this.free.set(b.length, [b]);
    this.held += b.length;
  }
}
