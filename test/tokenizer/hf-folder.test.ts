// A Hugging Face model folder's tokenizer (test/fixtures/tiny-model): the ids equal Python
// `tokenizers`' and @huggingface/tokenizers' own, chat prompts equal rendering the folder's template
// with @huggingface/jinja and encoding it as vLLM does, long text counted in slices (or on the worker
// thread) gives the same ids, decode round-trips, and the router reads the folder the same way.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { createHfTokenizer, folderTokenIds, tokenizerForModel } from "../../src/tokenizer/index.js";
import { HfRequestTokenizer } from "../../src/router/kv/tokenizers.js";
import { fixturePath } from "../helpers/vectors.js";

const DIR = fixturePath("tiny-model");
const tokJson = JSON.parse(readFileSync(join(DIR, "tokenizer.json"), "utf8")) as object;
const tokCfg = JSON.parse(readFileSync(join(DIR, "tokenizer_config.json"), "utf8")) as {
  chat_template: string;
  bos_token: string;
  eos_token: string;
};
const hf = new HfTokenizer(tokJson, tokCfg);
const expected = JSON.parse(readFileSync(join(DIR, "expected-ids.json"), "utf8")) as {
  cases: Array<{ text: string; ids: number[]; ids_no_special: number[] }>;
};

const CONVERSATIONS = [
  [{ role: "user", content: "Hi" }],
  [
    { role: "system", content: "  You route requests.  " },
    { role: "user", content: "Which engine holds my prefix?" },
    { role: "assistant", content: "The one that cached it." },
    { role: "user", content: "café 🙂 and <tool_call>x</tool_call>" },
  ],
  [
    {
      role: "user",
      content: [
        { type: "text", text: "two" },
        { type: "text", text: "parts" },
      ],
    },
  ],
];

function copyFixture(): string {
  const dir = mkdtempSync(join(tmpdir(), "sy-tiny-"));
  cpSync(DIR, dir, { recursive: true });
  return dir;
}

test("a folder's prompt ids equal Python tokenizers' and @huggingface/tokenizers' own, with and without special tokens", () => {
  const tk = createHfTokenizer(DIR);
  assert.equal(expected.cases.length, 20);
  for (const c of expected.cases) {
    assert.deepEqual(tk.encode(c.text, true), c.ids, JSON.stringify(c.text));
    assert.deepEqual(tk.encode(c.text, false), c.ids_no_special, JSON.stringify(c.text));
    assert.deepEqual(hf.encode(c.text).ids, c.ids);
    assert.deepEqual(hf.encode(c.text, { add_special_tokens: false }).ids, c.ids_no_special);
  }
  assert.equal(tk.bosTokenId, hf.token_to_id("<|begin_of_text|>"));
  assert.equal(tk.eosTokenId, hf.token_to_id("<|eot_id|>"));
  assert.equal(tk.vocabSize, 8192);
  assert.equal(tk.hasChatTemplate, true);
});

test("chat prompts are the folder's Jinja template rendered with the generation prompt, then encoded without special tokens", () => {
  const tk = createHfTokenizer(DIR);
  const tpl = new Template(tokCfg.chat_template);
  for (const messages of CONVERSATIONS) {
    const flat = messages.map((m) => ({
      ...m,
      content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("\n"),
    }));
    const text = tpl.render({
      messages: flat,
      add_generation_prompt: true,
      bos_token: tokCfg.bos_token,
      eos_token: tokCfg.eos_token,
    });
    assert.equal(tk.applyChatTemplate(messages, { addGenerationPrompt: true }), text);
    const ids = hf.encode(text, { add_special_tokens: false }).ids;
    assert.deepEqual(tk.encodeChat(messages, { addGenerationPrompt: true }), ids);
    assert.equal(ids[0], tk.bosTokenId, "the template's BOS, none added");
  }
});

test("long text counted in slices between turns (a long run without a cut point on the worker thread) gives encode's ids, and equals the library's", async () => {
  const tk = createHfTokenizer(DIR);
  // a run of Japanese has no cut point: over 4,096 characters of it is encoded on the worker thread
  const prompts = expected.cases.map((c) => c.text).join("\n");
  const text = prompts.repeat(30) + "日本語のテキスト".repeat(800) + prompts.repeat(30);
  assert.ok(text.length > 40_000);
  const ids = tk.encode(text, true);
  assert.deepEqual(await tk.encodeAsync(text, true), ids);
  const counted = await tk.countAsync(text, true, 100);
  assert.equal(counted.count, ids.length);
  assert.deepEqual(counted.ids, ids.slice(0, 100));
  assert.deepEqual(ids, hf.encode(text).ids);
});

test("a folder whose text cannot be cut safely (a normaliser) is encoded whole on the worker thread, with the same ids", async () => {
  const dir = copyFixture();
  try {
    const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as Record<string, unknown>;
    json.normalizer = { type: "Lowercase" };
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(json));
    const tk = createHfTokenizer(dir);
    const lib = new HfTokenizer(json, tokCfg);
    const text = "The Router Sends Requests. ".repeat(1_500);
    const ids = lib.encode(text).ids;
    assert.deepEqual(tk.encode(text, true), ids);
    assert.deepEqual(await tk.encodeAsync(text, true), ids);
    assert.equal((await tk.countAsync(text, true, 10)).count, ids.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("decode round-trips text, drops special tokens only when asked, and output words are single tokens of the vocabulary", () => {
  const tk = createHfTokenizer(DIR);
  for (const c of expected.cases) {
    assert.equal(tk.decode(c.ids_no_special), c.text);
    if (c.ids_no_special.length === 0) continue;
    assert.equal(
      tk.decode(c.ids_no_special),
      hf.decode(c.ids_no_special, { clean_up_tokenization_spaces: false }),
    );
  }
  const ids = tk.encode("a<|eot_id|>b <tool_call>", true);
  assert.equal(tk.decode(ids), "<|begin_of_text|>a<|eot_id|>b <tool_call>");
  assert.equal(tk.decode(ids, true), "ab <tool_call>");
  const pool = tk.outputPool;
  assert.ok(pool.ids.length >= 64, `pool of ${pool.ids.length}`);
  for (let i = 0; i < pool.ids.length; i++) {
    assert.ok(pool.ids[i]! < tk.vocabSize);
    assert.deepEqual(tk.encode(pool.texts[i]!, false), [pool.ids[i]]);
  }
  const some = Array.from(pool.ids.slice(0, 20));
  assert.equal(tk.decode(some), pool.texts.slice(0, 20).join(""));
  assert.deepEqual(tk.tokenStrings(hf.encode("Hello world").ids), hf.encode("Hello world").tokens);
});

test("chat_template.jinja wins over tokenizer_config.json, and add_bos_token false drops the post-processor's BOS", () => {
  const dir = copyFixture();
  try {
    writeFileSync(
      join(dir, "chat_template.jinja"),
      "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
    );
    const cfg = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    cfg.add_bos_token = false;
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
    const tk = createHfTokenizer(dir);
    assert.equal(
      tk.applyChatTemplate([{ role: "user", content: "hi" }], { addGenerationPrompt: true }),
      "[user] hi\n",
    );
    assert.deepEqual(tk.encode("Hello world", true), tk.encode("Hello world", false));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the router's --tokenizer-dir reads a folder as the sim does: the same ids for prompts and chats", () => {
  const router = new HfRequestTokenizer(DIR);
  const sim = tokenizerForModel({ tokenizer: `hf:${DIR}`, vocabSize: 8192 });
  for (const c of expected.cases.slice(0, 10)) {
    assert.deepEqual(router.tokens({ prompt: c.text, body: {} } as never), sim.encode(c.text, true));
  }
  const messages = CONVERSATIONS[1]!;
  assert.deepEqual(
    router.tokens({ messages, body: {} } as never),
    sim.encodeChat(messages, { addGenerationPrompt: true }),
  );
});

test("folderTokenIds gives the ids the sim answers for prompts and conversations (for parity checks with a real vLLM)", () => {
  const [a, b, c] = folderTokenIds(DIR, [
    { text: "Hello world" },
    { text: "Hello world", addSpecialTokens: false },
    { messages: [{ role: "user", content: "Hi" }] },
  ]);
  assert.deepEqual(a, expected.cases[1]!.ids);
  assert.deepEqual(b, expected.cases[1]!.ids_no_special);
  assert.equal(c![0], 0);
});
