// Encode/decode behaviour of every tokenizer family: round trips, known ids from the real
// tokenizers, special tokens, vocabulary bounds and the output pool's guarantees.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { tokenizerFor, tokenizerForModel, TOKENIZER_FAMILIES } from "../../src/tokenizer/index.js";
import { pyStrip } from "../../src/tokenizer/py-strings.js";

/** String.prototype.toWellFormed (ES2024, not in this project's lib): lone surrogates -> U+FFFD */
function wellFormed(s: string): string {
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");
}

const ROUND_TRIP = [
  "Hello world!",
  "The quick brown fox jumps over the lazy dog.",
  "héllo wörld, naïve café — “quotes” ‘single’ …",
  "日本語のテキストと中文混合 and 한국어",
  "emoji 👋🏽 family 👨‍👩‍👧‍👦 flags 🇺🇸 llama 🦙",
  "   leading spaces, trailing spaces   ",
  "tabs\t\tand\nnewlines\n\n\nand\r\nCRLF\r\n",
  "          ten spaces then text",
  "",
  " ",
  "\n",
  "code: for (let i = 0; i < n; i++) { x[i] = y[i] * 2; } // 12345 67890",
  "text that looks special <|im_start|x <|eot_id| </ s> <think",
  "\u0000\u0001 control \u007f chars and \ufeff BOM",
];

for (const family of TOKENIZER_FAMILIES) {
  const tok = tokenizerFor(family);

  test(`${family}: decode(encode(s)) === s without special tokens`, () => {
    for (const s of ROUND_TRIP) {
      const ids = tok.encode(s, false);
      assert.equal(tok.decode(ids), s, JSON.stringify(s));
      for (const id of ids)
        assert.ok(Number.isInteger(id) && id >= 0 && id < tok.vocabSize, `${id} out of range`);
    }
  });

  test(`${family}: addSpecialTokens adds only the family's BOS, and skipSpecialTokens removes it`, () => {
    for (const s of ROUND_TRIP) {
      const plain = tok.encode(s, false);
      const withSpecial = tok.encode(s);
      if (tok.bosTokenId === null) {
        assert.deepEqual(withSpecial, plain);
      } else {
        assert.deepEqual(withSpecial, [tok.bosTokenId, ...plain]);
        assert.equal(tok.decode(withSpecial, true), s);
      }
    }
  });

  test(`${family}: decode never throws for any id below vocabSize, nor for junk ids`, () => {
    for (let id = 0; id < tok.vocabSize; id++) {
      const s = tok.decode([id]);
      assert.equal(typeof s, "string");
    }
    const junk = [-1, tok.vocabSize, tok.vocabSize + 1000, 2 ** 40, Number.NaN, 1.5];
    assert.equal(typeof tok.decode(junk), "string");
    assert.deepEqual(tok.tokenStrings(junk.slice(0, 3)), ["", "", ""]);
  });

  test(`${family}: random text (specials, digits, unicode, lone surrogates) encodes in range and round-trips`, () => {
    const pieces = ["<|im_start|>", "<|eot_id|>", "</s>", "<think>", " ", "\n", "\t", "'s", "'LL", "123456"];
    pieces.push("é", "👋", "\u200b", "\r\n", "<|", "|>", "<", "a", "Z", "中");
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let i = 0; i < 1000; i++) {
      let s = "";
      const n = Math.floor(rand() * 30);
      for (let k = 0; k < n; k++) {
        const x = rand();
        if (x < 0.6) s += pieces[Math.floor(rand() * pieces.length)];
        else if (x < 0.9) s += String.fromCodePoint(Math.floor(rand() * 0x2ffff) % 0xd800);
        else s += String.fromCharCode(0xd800 + Math.floor(rand() * 0x800));
      }
      const ids = tok.encode(s, false);
      for (const id of ids) assert.ok(Number.isInteger(id) && id >= 0 && id < tok.vocabSize);
      // A lone surrogate cannot be UTF-8 encoded: it comes back as U+FFFD, as from any UTF-8 tokenizer.
      assert.equal(tok.decode(ids), wellFormed(s), JSON.stringify(s));
    }
  });

  test(`${family}: output pool holds single-token words whose decodes concatenate`, () => {
    const { ids, texts } = tok.outputPool;
    assert.ok(ids.length >= 200, `only ${ids.length} pool tokens`);
    assert.equal(ids.length, texts.length);
    assert.equal(new Set(ids).size, ids.length, "pool ids are unique");
    for (let i = 0; i < ids.length; i++) {
      assert.match(texts[i]!, /^ [a-z]+$/);
      assert.ok(ids[i]! < tok.vocabSize);
      assert.deepEqual(tok.encode(texts[i]!, false), [ids[i]], texts[i]);
      assert.equal(tok.decode([ids[i]!]), texts[i]);
    }
    // A deterministic pseudo-random walk through the pool stands in for a generated completion.
    let seed = 12345;
    const seq: number[] = [];
    let expected = "";
    for (let n = 0; n < 500; n++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const k = seed % ids.length;
      seq.push(ids[k]!);
      expected += texts[k];
    }
    assert.equal(tok.decode(seq), expected);
    assert.equal(tok.decode(seq, true), expected);
  });
}

test("llama3: ids equal the real Llama 3 tokenizer's", () => {
  const t = tokenizerFor("llama3");
  // Reference ids as produced by meta-llama/Llama-3.1-8B-Instruct's tokenizer (HF tokenizers).
  assert.deepEqual(t.encode("Hello world!"), [128000, 9906, 1917, 0]);
  assert.deepEqual(t.encode("This is a test sentence.", false), [2028, 374, 264, 1296, 11914, 13]);
  assert.deepEqual(t.encode("🦙", false), [9468, 99, 247]);
  assert.deepEqual(t.encode("           grabbed", false), [1881, 30418]);
  assert.deepEqual(t.tokenStrings(t.encode("Hello world!")), ["<|begin_of_text|>", "Hello", "Ġworld", "!"]);
  assert.equal(t.vocabSize, 128256);
  assert.equal(t.bosTokenId, 128000);
  assert.equal(t.eosTokenId, 128009);
});

test("llama3: special tokens in text map to their ids", () => {
  const t = tokenizerFor("llama3");
  assert.deepEqual(
    t.encode("<|begin_of_text|><|start_header_id|>user<|end_header_id|>hi<|eot_id|>", false),
    [128000, 128006, 882, 128007, 6151, 128009],
  );
  assert.deepEqual(
    t.encode("<|reserved_special_token_247|><|python_tag|><|eom_id|>", false),
    [128255, 128010, 128008],
  );
  assert.equal(t.addedTokens.size, 256);
  assert.equal(t.decode([128006, 882, 128007], true), "user");
  // Other families' specials are plain text here.
  assert.ok(t.encode("<|im_start|>", false).length > 1);
});

test("qwen: cl100k text ids with Qwen's real special ids", () => {
  for (const family of ["qwen3", "qwen2.5"]) {
    const t = tokenizerFor(family);
    assert.deepEqual(t.encode("hello world"), [15339, 1917], "no BOS, cl100k ids");
    assert.deepEqual(t.encode("<|endoftext|><|im_start|><|im_end|>"), [151643, 151644, 151645]);
    assert.equal(t.bosTokenId, null);
    assert.equal(t.eosTokenId, 151645);
    assert.equal(t.vocabSize, 151936);
    // Llama's specials are text for Qwen.
    assert.ok(t.encode("<|eot_id|>").length > 1);
    assert.equal(t.decode([151644, 882, 151645], true), "user");
  }
  const q3 = tokenizerFor("qwen3");
  assert.deepEqual(q3.encode("<think>\n\n</think>"), [151667, 271, 151668]);
  // <think> is an added but not special token: skip_special_tokens keeps it, as HF does.
  assert.equal(q3.decode([151667, 271, 151668], true), "<think>\n\n</think>");
  assert.ok(tokenizerFor("qwen2.5").encode("<think>").length > 1, "Qwen2.5 has no <think> token");
  // Ids between cl100k's table and Qwen's specials are valid prompt ids that decode to nothing.
  assert.equal(q3.decode([120000, 151000, 151935]), "");
  assert.deepEqual(q3.tokenStrings([120000, 151644]), ["", "<|im_start|>"]);
});

test("opt: r50k ids shifted past OPT's four specials, </s> as BOS", () => {
  const t = tokenizerFor("opt");
  // r50k (GPT-2) encodes "Hello world" as [15496, 995]; the stand-in shifts by 4.
  assert.deepEqual(t.encode("Hello world"), [2, 15500, 999]);
  assert.deepEqual(t.encode("</s><s><pad><unk>", false), [2, 0, 1, 3]);
  assert.equal(t.decode([2, 15500, 999]), "</s>Hello world");
  assert.equal(t.decode([2, 15500, 999], true), "Hello world");
  assert.equal(t.vocabSize, 50272);
  assert.equal(t.bosTokenId, 2);
  assert.equal(t.eosTokenId, 2);
  for (const id of t.encode("every id stays below the real vocabulary <|endoftext|>", false)) {
    assert.ok(id >= 4 && id < 50265);
  }
});

test("tokenizerForModel: picks the Qwen variant from the model id and keeps the model's vocab size", () => {
  const q25 = tokenizerForModel({ tokenizer: "qwen", vocabSize: 151936, id: "Qwen/Qwen2.5-0.5B-Instruct" });
  assert.equal(q25.family, "qwen2.5");
  const q3 = tokenizerForModel({ tokenizer: "qwen", vocabSize: 151936, id: "Qwen/Qwen3-32B" });
  assert.equal(q3.family, "qwen3");
  assert.equal(
    tokenizerForModel({ tokenizer: "qwen", vocabSize: 151936, id: "Qwen/Qwen3-32B" }),
    q3,
    "cached",
  );
  const wide = tokenizerForModel({ tokenizer: "qwen2.5", vocabSize: 152064 });
  assert.equal(wide.vocabSize, 152064);
  assert.equal(wide.decode([152000]), "");
  const llama = tokenizerForModel({ tokenizer: "llama3", vocabSize: 128256 });
  assert.equal(llama, tokenizerFor("llama3"));
  assert.throws(() => tokenizerFor("gpt-neox"), /unknown tokenizer family/);
});

/** A long text mixing everything a pre-tokenizer treats specially, seeded. */
function mixedText(seed: number, pieces: number): string {
  const parts = [
    ...ROUND_TRIP,
    "word",
    " word",
    "Word.",
    "\n\n",
    "  \n ",
    "don't",
    " I'LL",
    "12345678",
    "<|eot_id|>",
    "<|im_start|>",
    "<think>",
    "日本語",
    "   ",
    "\t",
    "x".repeat(300),
  ];
  let s = seed >>> 0;
  let out = "";
  for (let i = 0; i < pieces; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out += parts[s % parts.length]!;
    if (s & 1) out += " ";
  }
  return out;
}

for (const family of TOKENIZER_FAMILIES) {
  test(`${family}: encodeAsync (long text in slices between event-loop turns) gives encode's ids`, async () => {
    const tok = tokenizerFor(family);
    for (const seed of [1, 2]) {
      const text = mixedText(seed, 5_000);
      assert.ok(text.length > 40_000);
      assert.deepEqual(await tok.encodeAsync(text, true), tok.encode(text, true), `seed ${seed}`);
    }
    const messages = [
      { role: "system", content: mixedText(4, 3000) },
      { role: "user", content: mixedText(5, 6000) },
    ];
    if (tok.hasChatTemplate) {
      const opts = { addGenerationPrompt: true };
      assert.deepEqual(await tok.encodeChatAsync(messages, opts), tok.encodeChat(messages, opts));
    }
  });
}

test("a long stretch without a cut point (one pre-tokenizer piece) is encoded on the worker thread, same ids", async () => {
  const tok = tokenizerFor("llama3");
  const text = "some words before ".repeat(2000) + " ".repeat(20_000) + "after".repeat(4000) + " and the end";
  assert.deepEqual(await tok.encodeAsync(text, false), tok.encode(text, false));
});

test("llama3: the piece cache gives the library's own ids for whole texts", () => {
  const require = createRequire(import.meta.url);
  const lib = (
    require("llama3-tokenizer-js/bundle/commonjs-llama3-tokenizer-with-baked-data.cjs") as {
      llama3Tokenizer: { encode(t: string, o: { bos: boolean; eos: boolean }): number[] };
    }
  ).llama3Tokenizer;
  const tok = tokenizerFor("llama3");
  for (const seed of [7, 8]) {
    // the library splits special tokens itself; compare on ordinary text
    const text = mixedText(seed, 3000).replace(/<\|[a-z_]+\|>/g, "<x>");
    assert.deepEqual(tok.encode(text, false), lib.encode(text, { bos: false, eos: false }), `seed ${seed}`);
  }
});

test("trimming a message with 200 000 spaces inside takes linear time (the regex took quadratic)", () => {
  const inner = "a" + " ".repeat(200_000) + "b";
  assert.equal(pyStrip(`  ${inner}\n`), inner);
  assert.equal(pyStrip(" \u3000\x1c\x85 "), "");
});

test("long texts that share a prefix are encoded from remembered chunks with the whole text's ids (encodeAsync, countAsync)", async () => {
  const words = "river Danube flows through ten countries, and the Rhine; 1999 Größe 東京".split(" ");
  const text = (seed: number, n: number) => {
    let x = seed >>> 0 || 1;
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
      out.push(words[x % words.length]!);
      if (x % 97 === 0) out.push("\n\n");
    }
    return out.join(" ");
  };
  for (const family of TOKENIZER_FAMILIES) {
    const tk = tokenizerFor(family);
    const shared = text(family.length, 6000);
    for (let i = 0; i < 6; i++) {
      // the same prefix, parting at a different place each time, a special token in some tails
      const t = `${shared.slice(0, shared.length - i * 997)} ${text(100 + i, 300)}${i % 2 ? "<|endoftext|>x" : ""}`;
      assert.deepEqual(await tk.encodeAsync(t, true), tk.encode(t, true), `${family} text ${i}`);
      const c = await tk.countAsync(t, false, 5000);
      const whole = tk.encode(t, false);
      assert.equal(c.count, whole.length, `${family} count ${i}`);
      assert.deepEqual(c.ids, whole.slice(0, 5000), `${family} kept ids ${i}`);
    }
  }
});
