// Large JSON answers are written as pieces, not one JSON.stringify: a field whose JSON is already built
// or made on demand (logprob columns, a batch's choices) goes into the body as a placeholder string, the
// placeholders are replaced by their pieces as the body is written, and a body past LARGE_BODY goes out
// a bounded run of pieces per turn of the event loop (job.ts, batch.ts), so it holds no other stream.
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";

/** characters of a JSON answer written in one piece; larger ones go out in paced pieces */
const LARGE_BODY = 1 << 20;

/**
 * `body` with each placeholder (a key of `raw`, as JSON.stringify wrote it) replaced by its JSON
 * pieces. A placeholder the body does not hold (its field left out of the answer) is skipped: spliced
 * at indexOf's -1, it cut the body's last character and repeated the rest, an answer no client parses.
 */
export function* spliceRaw(body: string, raw: ReadonlyMap<string, Iterable<string>>): Generator<string> {
  const found: Array<[number, string]> = [];
  for (const key of raw.keys()) {
    const at = body.indexOf(key);
    if (at >= 0) found.push([at, key]);
  }
  found.sort((a, b) => a[0] - b[0]);
  let from = 0;
  for (const [at, key] of found) {
    yield body.slice(from, at);
    yield* raw.get(key)!;
    from = at + key.length;
  }
  yield body.slice(from);
}

/**
 * Writes a 200 JSON answer from its pieces: at most LARGE_BODY characters in one write with its
 * Content-Length, as vLLM sends it; more chunked, the pieces made and written a bounded run per turn.
 */
export function writeJsonPieces(
  res: ServerResponse,
  pieces: Iterator<string>,
  headers: OutgoingHttpHeaders = {},
): void {
  const head: string[] = [];
  let size = 0;
  let next = pieces.next();
  while (!next.done && size <= LARGE_BODY) {
    head.push(next.value);
    size += next.value.length;
    next = pieces.next();
  }
  if (next.done) {
    const body = head.join("");
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
    return;
  }
  res.writeHead(200, { "content-type": "application/json", ...headers });
  res.write(head.join(""));
  let pending: IteratorResult<string> = next;
  const pump = (): void => {
    if (res.destroyed) return;
    let sent = 0;
    while (!pending.done && sent < LARGE_BODY) {
      sent += pending.value.length;
      res.write(pending.value);
      pending = pieces.next();
    }
    if (pending.done) res.end();
    else setImmediate(pump);
  };
  setImmediate(pump);
}
