// The router's sim tokenizer remembers long pieces between special tokens: its ids must equal the
// tokenizer's own for chat and completions, first time and from the cache, and the cache stays bounded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SimRequestTokenizer } from "../../../src/router/kv/tokenizers.js";
import { resolveModel } from "../../../src/models/profiles.js";
import { tokenizerForModel } from "../../../src/tokenizer/index.js";
import { type ChatMessage } from "../../../src/protocol/chat-messages.js";

const words = (seed: number, n: number) => {
  let x = seed >>> 0 || 1;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    out.push(["river", "Danube", "flows", "through", "ten", "countries,", "and", "Rhine"][x % 8]!);
  }
  return out.join(" ");
};

for (const model of ["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"]) {
  test(`${model}: cached long pieces give the tokenizer's own ids (chat, completions)`, () => {
    const tk = tokenizerForModel(resolveModel(model));
    const rt = new SimRequestTokenizer(tk);
    const system = `You are helpful.\n\n${words(1, 3000)}`;
    const messages: ChatMessage[] = [{ role: "system", content: system }];
    for (let round = 0; round < 4; round++) {
      messages.push({ role: "user", content: `question ${round}: ${words(round + 10, 400)}` });
      const view = { model, seq: round, messages, body: {} };
      const expected = tk.encodeChat(messages, { addGenerationPrompt: true });
      assert.deepEqual(rt.tokens(view), expected, `round ${round}, first time`);
      assert.deepEqual(rt.tokens(view), expected, `round ${round}, from the cache`);
      messages.push({ role: "assistant", content: words(round + 20, 120) });
    }
    assert.ok(rt.cachedChars > system.length, "the long pieces are remembered");
    // completions: BOS on request, special tokens inside the text recognised
    const prompt = `${words(3, 600)}<|im_end|>${words(4, 600)}`;
    for (const add of [true, false]) {
      const view = { model, seq: 9, prompt, body: { add_special_tokens: add } };
      assert.deepEqual(rt.tokens(view), tk.encode(prompt, add));
      assert.deepEqual(rt.tokens(view), tk.encode(prompt, add));
    }
  });
}

test("the long-piece cache is bounded by characters (LRU)", () => {
  const rt = new SimRequestTokenizer(tokenizerForModel(resolveModel("meta-llama/Llama-3.1-8B-Instruct")));
  for (let i = 0; i < 400; i++) rt.tokens({ model: "m", seq: i, prompt: `${i} ${words(i, 2000)}`, body: {} });
  assert.ok(rt.cachedChars <= 2_000_000, `${rt.cachedChars} chars cached`);
  assert.ok(rt.cachedChars > 1_000_000, `${rt.cachedChars} chars cached`);
});

test("prompts that share a prefix but never repeat whole give the tokenizer's own ids, chunk by chunk", () => {
  const model = "meta-llama/Llama-3.1-8B-Instruct";
  const tk = tokenizerForModel(resolveModel(model));
  const rt = new SimRequestTokenizer(tk);
  // shared prefixes of plain words, of code-like text with few cut points, and of mixed scripts
  const prefixes = [
    words(7, 1500),
    `def f(x):\n    return x+1\n\n${"a_b=c;d-e ".repeat(300)} tail words here`,
    `Größe 42, ünïcode — 東京 ${words(8, 300)}\n\n\tindented  double  spaces ${words(9, 300)}`,
  ];
  for (let i = 0; i < 30; i++) {
    const prompt = `${prefixes[i % 3]!} ${words(100 + i, 50 + i)}${i % 2 ? "" : "!"}`;
    const view = { model, seq: i, prompt, body: {} };
    assert.deepEqual(rt.tokens(view), tk.encode(prompt, true), `prompt ${i}`);
  }
});
