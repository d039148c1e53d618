// Tokenizer throughput: first-use load time, encode of a ~1k-token prompt and of tiny chat prompts,
// 200 made-up words once the piece caches are full, and decode. Prompts differ on every iteration so
// no cache sees the same text twice.
// Run: npm run bench -- micro/tokenizer   (or: node --import tsx bench/micro/tokenizer.ts [family ...])
import { tokenizerFor, TOKENIZER_FAMILIES, type Tokenizer } from "../../src/tokenizer/index.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** English-like text: pool words, made-up words (to exercise real BPE merges), numbers, punctuation */
function makeText(tok: Tokenizer, rand: () => number, words: number): string {
  const pool = tok.outputPool.texts;
  let s = "";
  for (let i = 0; i < words; i++) {
    const r = rand();
    if (r < 0.75) s += pool[Math.floor(rand() * pool.length)];
    else if (r < 0.9) {
      let w = " ";
      const n = 3 + Math.floor(rand() * 8);
      for (let k = 0; k < n; k++) w += String.fromCharCode(97 + Math.floor(rand() * 26));
      s += w;
    } else if (r < 0.95) s += " " + Math.floor(rand() * 100000);
    else s += rand() < 0.5 ? "." : ",\n";
  }
  return s;
}

function timeIt(iterations: number, fn: (i: number) => void): number {
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) fn(i);
  return (performance.now() - t0) / 1000;
}

const families = process.argv.length > 2 ? process.argv.slice(2) : [...TOKENIZER_FAMILIES];
for (const family of families) {
  const t0 = performance.now();
  const tok = tokenizerFor(family);
  const loadMs = performance.now() - t0;
  const rand = rng(42);

  // ~1k-token prompts: calibrate the word count once, then encode fresh texts.
  const probe = tok.encode(makeText(tok, rand, 1000), false).length;
  const words = Math.round((1000 * 1000) / probe);
  const long = Array.from({ length: 200 }, () => makeText(tok, rand, words));
  let longTokens = 0;
  timeIt(20, (i) => tok.encode(long[i]!)); // warm-up (JIT)
  const longSec = timeIt(long.length, (i) => {
    longTokens += tok.encode(long[i]!).length;
  });

  const tiny = Array.from({ length: 20000 }, () => [
    { role: "user", content: makeText(tok, rand, 12).trim() },
  ]);
  let tinyTokens = 0;
  const tinySec = timeIt(tiny.length, (i) => {
    tinyTokens += tok.encode(tok.applyChatTemplate(tiny[i]!, { addGenerationPrompt: true }), false).length;
  });

  // new words once the piece caches are full (40,000 made-up words first): what dropping a piece costs
  const made = (n: number) => {
    let s = "";
    for (let w = 0; w < n; w++) {
      s += " ";
      for (let k = 3 + Math.floor(rand() * 8); k > 0; k--)
        s += String.fromCharCode(97 + Math.floor(rand() * 26));
    }
    return s;
  };
  for (let i = 0; i < 200; i++) tok.encode(made(200), false);
  const fresh = Array.from({ length: 200 }, () => made(200));
  const fullSec = timeIt(fresh.length, (i) => tok.encode(fresh[i]!, false));

  const decodeIds = long.slice(0, 50).map((s) => tok.encode(s, false));
  let decodedTokens = 0;
  timeIt(200, (i) => tok.decode(decodeIds[i % decodeIds.length]!)); // warm-up (JIT)
  const decodeSec = timeIt(1000, (i) => {
    const ids = decodeIds[i % decodeIds.length]!;
    tok.decode(ids);
    decodedTokens += ids.length;
  });

  console.log(
    JSON.stringify({
      family,
      loadMs: Math.round(loadMs),
      longPrompt: {
        avgTokens: Math.round(longTokens / long.length),
        usPerPrompt: Math.round((longSec / long.length) * 1e6),
        tokensPerSec: Math.round(longTokens / longSec),
      },
      newWordsCacheFull: { words: 200, usPerPrompt: Math.round((fullSec / fresh.length) * 1e6) },
      tinyChat: {
        avgTokens: Math.round(tinyTokens / tiny.length),
        usPerPrompt: Number(((tinySec / tiny.length) * 1e6).toFixed(1)),
        promptsPerSec: Math.round(tiny.length / tinySec),
      },
      decode: { tokensPerSec: Math.round(decodedTokens / decodeSec) },
    }),
  );
}
