// The tokenizer's worker thread: its chunked count gives the whole text's ids, and work nobody waits
// for (a cancelled owner) is not run, or stops at its next chunk, while the asks after it are answered.
import { test } from "node:test";
import assert from "node:assert/strict";
import { familyTokenizerFor } from "../../src/tokenizer/index.js";
import { WorkCancelled, type Cancellable } from "../../src/eventloop/turns.js";
import { tokenizerThread } from "../../src/tokenizer/offload.js";
import { mulberry32 } from "../../src/random/rng.js";

/** `words` made-up lowercase words: text the tokenizer's piece cache has never seen (slow to encode) */
function madeUpWords(seed: number, words: number): string {
  const rnd = mulberry32(seed);
  const out: string[] = [];
  for (let i = 0; i < words; i++) {
    let w = "";
    for (let k = 3 + Math.floor(rnd() * 6); k > 0; k--) w += String.fromCharCode(97 + Math.floor(rnd() * 26));
    out.push(w);
  }
  return out.join(" ");
}

const owner = (cancelled = false) => ({ cancelled });

test("the worker's count, chunk by chunk, gives the whole text's ids and stops between chunks once asked", () => {
  const tok = familyTokenizerFor("llama3");
  const text = madeUpWords(1, 3_000) + " ".repeat(5_000) + "after".repeat(400) + " <|eot_id|> the end";
  const whole = tok.encode(text, true);
  const never = () => false;
  assert.deepEqual(tok.countUnlessStopped(text, true, Infinity, never, 1_000), {
    count: whole.length,
    ids: whole,
  });
  assert.deepEqual(tok.countUnlessStopped(text, true, 100, never, 1_000), {
    count: whole.length,
    ids: whole.slice(0, 100),
  });
  // asked before each chunk: stopped after the third, it answers nothing
  let asked = 0;
  assert.equal(
    tok.countUnlessStopped(text, true, Infinity, () => ++asked > 3, 1_000),
    undefined,
  );
  assert.equal(asked, 4);
});

test("an ask given up while it waits for the worker is not run; the asks around it are answered", async () => {
  const tok = familyTokenizerFor("llama3");
  const first = madeUpWords(2, 20_000);
  const given = owner();
  const a = tokenizerThread.count("llama3", first, true, 10);
  const b = tokenizerThread.count("llama3", madeUpWords(3, 20_000), true, 10, given);
  const c = tokenizerThread.count("llama3", "a short one", false, 100, owner());
  // b waits behind a (the worker takes one ask at a time): its client leaves
  given.cancelled = true;
  const [ra, rb, rc] = await Promise.allSettled([a, b, c]);
  assert.equal(ra.status, "fulfilled");
  assert.equal(ra.status === "fulfilled" && ra.value.count, tok.encode(first, true).length);
  assert.ok(rb.status === "rejected" && rb.reason instanceof WorkCancelled, String(rb.status));
  assert.deepEqual(rc.status === "fulfilled" && rc.value.ids, tok.encode("a short one", false));
});

test("a count under way on the worker stops at its next chunk once its owner is cancelled", async () => {
  // the owner is still wanted when the ask is sent, and gone at the first look after: ~2 s of
  // never-seen text on the worker, stopped within one 64K-character chunk of it
  let reads = 0;
  const leaving: Cancellable = {
    get cancelled() {
      return ++reads > 1;
    },
  };
  const text = madeUpWords(4, 150_000);
  assert.ok(text.length > 900_000);
  await assert.rejects(tokenizerThread.count("llama3", text, true, 10, leaving), WorkCancelled);
  assert.ok(reads >= 2, "the owner was read while the worker counted");
  // the stop was for that ask only: the next one is answered in full
  const next = "the worker goes on with the next ask";
  assert.deepEqual(
    (await tokenizerThread.count("llama3", next, false, 100)).ids,
    familyTokenizerFor("llama3").encode(next, false),
  );
});
