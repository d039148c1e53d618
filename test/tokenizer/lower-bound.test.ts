// The floor under a token count that lets the router refuse a huge prompt without counting it: it
// must never exceed the real count, for any family and any text (words, code, whitespace of every
// kind, non-Latin scripts, special tokens), and be close to it for ordinary prose.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  TOKENIZER_FAMILIES,
  tokenCountFloor,
  tokenCountFloorAsync,
  tokenizerFor,
} from "../../src/tokenizer/index.js";
import { mulberry32 } from "../../src/random/rng.js";

const PIECES = [
  "the",
  "quick",
  "fox",
  "a",
  "I'm",
  "don't",
  "x=1;",
  "{}",
  "()",
  "--",
  "...",
  "42",
  "123456",
  "3.14",
  "naïve",
  "café",
  "日本語",
  "тест",
  "🙂",
  "<|eot_id|>",
  "<|im_end|>",
  "<|endoftext|>",
  "\u00a0",
  "\u2003",
  "\u0085",
  "\ufeff",
  "\u200b",
  "",
  "'s",
  "'ll",
  "http://x.y/z?q=1",
];
const SPACES = [" ", "  ", "\n", "\r\n", "\t", "\n\n", " \n ", "", "\u3000", "\u00a0"];

function randomText(seed: number, parts: number): string {
  const rnd = mulberry32(seed);
  let s = "";
  for (let i = 0; i < parts; i++) {
    s += PIECES[Math.floor(rnd() * PIECES.length)]!;
    s += SPACES[Math.floor(rnd() * SPACES.length)]!;
  }
  return s;
}

test("the token-count floor never exceeds the real count, in any family, for any mix of text", () => {
  for (const family of TOKENIZER_FAMILIES) {
    const tk = tokenizerFor(family);
    for (let seed = 1; seed <= 200; seed++) {
      const text = randomText(seed, 1 + (seed % 60));
      const floor = tokenCountFloor(text);
      const real = tk.encode(text, false).length;
      assert.ok(
        floor <= real,
        `${family}, seed ${seed}: floor ${floor} > count ${real} for ${JSON.stringify(text)}`,
      );
    }
  }
});

test("for prose the floor is the word count, within a fifth of the real count", () => {
  const words = "the quick brown fox jumps over the lazy dog and then it runs away ".repeat(200);
  const tk = tokenizerFor("llama3");
  const floor = tokenCountFloor(words);
  assert.equal(floor, 14 * 200);
  assert.ok(floor >= 0.8 * tk.encode(words, false).length);
});

test("the sliced floor equals the one-piece floor across slice boundaries", async () => {
  // 3 MiB: the async form cuts it into 1 MiB slices, some inside a run and some after a space
  const text = randomText(7, 200).repeat(Math.ceil((3 << 20) / randomText(7, 200).length));
  assert.equal(await tokenCountFloorAsync(text), tokenCountFloor(text));
  const spaced = "ab ".repeat(1 << 20); // a slice boundary falls after a space and inside "ab"
  assert.equal(await tokenCountFloorAsync(spaced), 1 << 20);
});
