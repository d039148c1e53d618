// Server-Sent Events as OpenAI streams use them, for both sides. Servers (the sim, the router) take the
// framing from here: the response headers and the `data: [DONE]` event that ends a stream. Clients (the
// bench's, `switchyard smoke`) take the incremental parser over raw Buffers: it splits on newline bytes
// and decodes only complete lines, so a stream is never concatenated into one growing string; only an
// unfinished trailing line is carried to the next chunk.

/** Response headers of an event stream: never cached, and not buffered by a proxy in front (nginx). */
export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
} as const;

/** The data of the event that ends an OpenAI stream. */
export const DONE_DATA = "[DONE]";

/** The event that ends an OpenAI stream, as written. */
export const DONE_EVENT = `data: ${DONE_DATA}\n\n`;

/** DONE_EVENT as bytes, for writers of Buffers. */
export const DONE_BYTES = Buffer.from(DONE_EVENT);

/** Whether a stream's bytes end with its [DONE] event, which may straddle its last two chunks. */
export function endsWithDone(last: Buffer, prev: Buffer | undefined): boolean {
  const tail = last.length >= DONE_BYTES.length || !prev ? last : Buffer.concat([prev, last]);
  return (
    tail.length >= DONE_BYTES.length &&
    tail.compare(DONE_BYTES, 0, DONE_BYTES.length, tail.length - DONE_BYTES.length) === 0
  );
}

const LF = 0x0a;
const CR = 0x0d;

export class SseParser {
  private tail: Buffer | null = null;
  private data: string[] = [];

  /** Feeds one network chunk; calls `onEvent` with the data of every event it completes. */
  push(chunk: Buffer, onEvent: (data: string) => void): void {
    let buf = chunk;
    if (this.tail) {
      buf = Buffer.concat([this.tail, chunk]);
      this.tail = null;
    }
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(LF, start);
      if (nl < 0) break;
      let end = nl;
      if (end > start && buf[end - 1] === CR) end--;
      this.line(buf, start, end, onEvent);
      start = nl + 1;
    }
    if (start < buf.length) this.tail = buf.subarray(start);
  }

  /** Flushes an event left open when the stream ended without a blank line. */
  end(onEvent: (data: string) => void): void {
    if (this.tail) {
      const t = this.tail;
      this.tail = null;
      this.line(t, 0, t.length, onEvent);
    }
    if (this.data.length) this.dispatch(onEvent);
  }

  private line(buf: Buffer, start: number, end: number, onEvent: (data: string) => void): void {
    if (end === start) {
      if (this.data.length) this.dispatch(onEvent);
      return;
    }
    // "data:" = 64 61 74 61 3a; other fields (event, id, retry) and comments (":") are ignored.
    if (
      end - start >= 5 &&
      buf[start] === 0x64 &&
      buf[start + 1] === 0x61 &&
      buf[start + 2] === 0x74 &&
      buf[start + 3] === 0x61 &&
      buf[start + 4] === 0x3a
    ) {
      let s = start + 5;
      if (buf[s] === 0x20) s++;
      this.data.push(buf.toString("utf8", s, end));
    }
  }

  private dispatch(onEvent: (data: string) => void): void {
    const d = this.data.length === 1 ? this.data[0]! : this.data.join("\n");
    this.data = [];
    onEvent(d);
  }
}
