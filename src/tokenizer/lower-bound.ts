// A floor under a text's token count, for any byte-level BPE tokenizer whose pre-tokenizer splits at
// whitespace (Llama 3's, cl100k's, GPT-2's, Qwen's: every family here and the real engines' own),
// computed at memory speed. Counting a 5 MiB prompt exactly costs ~0.4 s of a core; a prompt that
// is refused for its length anyway should not cost a loaded router that.
//
// Why it is a floor: every pre-tokenizer pattern of those families (`[^\r\n\p{L}\p{N}]?\p{L}+`,
// ` ?\p{L}+`, ` ?[^\s\p{L}\p{N}]+[\r\n]*`, `\s+(?!\S)`, ...) matches at most one run of non-whitespace,
// so each such run starts a piece of its own, BPE never merges across pieces, and every piece is at
// least one token (added tokens hold no whitespace, so they never join two runs either). Only the
// starts of runs that the bound can be sure of are counted: a printable ASCII character after an
// ASCII space, tab or line break (or at the start). Any Unicode definition of whitespace agrees on
// those two classes, so the floor holds for the engine's tokenizer library too, whatever its `\s`.
import { nextTurn, waitingSlices, type Cancellable } from "../eventloop/turns.js";

const SLICE_CHARS = 1 << 20; // ~1 ms of the loop per slice

function isAsciiSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

/** Runs of non-whitespace the floor is sure of in text[from, to), given whether text[from-1] was a space. */
function countRuns(text: string, from: number, to: number, afterSpace: boolean): number {
  let n = 0;
  let prevSpace = afterSpace;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (prevSpace && c > 0x20 && c < 0x7f) n++;
    prevSpace = isAsciiSpace(c);
  }
  return n;
}

/** A number of tokens `text` has at least, under every tokenizer family here (see above). */
export function tokenCountFloor(text: string): number {
  return countRuns(text, 0, text.length, true);
}

/** tokenCountFloor in ~1 ms slices between turns of the event loop. */
export async function tokenCountFloorAsync(
  text: string,
  /** when the caller's work began, if earlier than now: its place in line (eventloop/turns.ts) */
  since = performance.now(),
  /** what the count is for: once cancelled, the next turn rejects with WorkCancelled */
  owner?: Cancellable,
): Promise<number> {
  let n = 0;
  for (let pos = 0; pos < text.length; pos += SLICE_CHARS) {
    // its first slice too waits behind work already in line (eventloop/turns.ts)
    if (pos > 0 || waitingSlices() > 0) await nextTurn(since, owner);
    const end = Math.min(text.length, pos + SLICE_CHARS);
    n += countRuns(text, pos, end, pos === 0 || isAsciiSpace(text.charCodeAt(pos - 1)));
  }
  return n;
}
