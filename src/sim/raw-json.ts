// Large JSON answers are written as pieces, not one JSON.stringify: a field whose JSON is already built
// (logprob columns, a long answer) goes into the body as a placeholder string, and the placeholders are
// replaced by their pieces as the body is written (job.ts). This is the replacement.

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
