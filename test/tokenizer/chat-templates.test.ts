// Chat templates against fixtures derived by hand from the official Jinja templates that vLLM
// applies (sources in docs/tokenizers.md):
//  - Llama 3.1: meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json "chat_template": bos_token, a
//    system header with "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" (the
//    template's default date_string), the first system message `| trim`med, then each message as
//    <|start_header_id|>role<|end_header_id|>\n\n + content|trim + <|eot_id|>.
//  - Qwen2.5: Qwen/Qwen2.5-*-Instruct tokenizer_config.json: ChatML with a default system message.
//  - Qwen3: Qwen/Qwen3-* tokenizer_config.json: ChatML, no default system, thinking handling.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChatTemplateError, tokenizerFor } from "../../src/tokenizer/index.js";
import { chatMessagesSchema, type ChatMessage } from "../../src/protocol/chat-messages.js";

const SYSTEM_USER: ChatMessage[] = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "What is the capital of France?" },
];
const GEN = { addGenerationPrompt: true };

test("llama3: system+user equals the Llama 3.1 template's output", () => {
  const t = tokenizerFor("llama3");
  assert.equal(
    t.applyChatTemplate(SYSTEM_USER, GEN),
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" +
      "You are a helpful assistant.<|eot_id|>" +
      "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\n",
  );
  const ids = t.encodeChat(SYSTEM_USER, GEN);
  // The system header's ids as HF's Llama 3.1 tokenizer produces them.
  assert.deepEqual(
    ids.slice(0, 25),
    [
      128000, 128006, 9125, 128007, 271, 38766, 1303, 33025, 2696, 25, 6790, 220, 2366, 18, 198, 15724, 2696,
      25, 220, 1627, 10263, 220, 2366, 19, 271,
    ],
  );
  assert.equal(ids.filter((id) => id === 128000).length, 1, "exactly one BOS: the template's own");
  assert.deepEqual(ids.slice(-4), [128006, 78191, 128007, 271], "assistant header");
  assert.equal(ids.filter((id) => id === 128009).length, 2);
  assert.equal(t.decode(ids), t.applyChatTemplate(SYSTEM_USER, GEN));
});

test("llama3: no system message still gets the dated system block; content is trimmed", () => {
  const t = tokenizerFor("llama3");
  const out = t.applyChatTemplate(
    [
      { role: "user", content: "  Hi\n" },
      { role: "assistant", content: "Hello!" },
      {
        role: "user",
        content: [
          { type: "text", text: "part one" },
          { type: "image_url" },
          { type: "text", text: "part two" },
        ],
      },
    ],
    { addGenerationPrompt: false },
  );
  assert.equal(
    out,
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>" +
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" +
      "<|start_header_id|>user<|end_header_id|>\n\npart one\npart two<|eot_id|>",
  );
  const tool = t.applyChatTemplate([{ role: "tool", content: 'sunny "22C"' }], {
    addGenerationPrompt: false,
  });
  assert.ok(tool.endsWith('<|start_header_id|>ipython<|end_header_id|>\n\n"sunny \\"22C\\""<|eot_id|>'));
});

test("qwen2.5: system+user, and the default system message when none is given", () => {
  const t = tokenizerFor("qwen2.5");
  assert.equal(
    t.applyChatTemplate(SYSTEM_USER, GEN),
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
      "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
  assert.equal(
    t.applyChatTemplate([{ role: "user", content: "Hi" }], GEN),
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
  );
  const ids = t.encodeChat(SYSTEM_USER, GEN);
  assert.equal(ids[0], 151644);
  assert.equal(ids.filter((id) => id === 151644).length, 3);
  assert.equal(ids.filter((id) => id === 151645).length, 2);
  assert.ok(ids.every((id) => id < t.vocabSize));
});

test("qwen3: system+user, no default system, and the empty think block only when thinking is off", () => {
  const t = tokenizerFor("qwen3");
  const expected =
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n" +
    "<|im_start|>assistant\n";
  assert.equal(t.applyChatTemplate(SYSTEM_USER, GEN), expected);
  assert.equal(
    t.applyChatTemplate(SYSTEM_USER, { addGenerationPrompt: true, enableThinking: true }),
    expected,
  );
  assert.equal(
    t.applyChatTemplate(SYSTEM_USER, { addGenerationPrompt: true, enableThinking: false }),
    expected + "<think>\n\n</think>\n\n",
  );
  assert.equal(
    t.applyChatTemplate([{ role: "user", content: "Hi" }], GEN),
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
  );
  const ids = t.encodeChat(SYSTEM_USER, { addGenerationPrompt: true, enableThinking: false });
  // <|im_start|> "assistant" "\n" <think> "\n\n" </think> "\n\n": Qwen3's think markers are single tokens.
  assert.deepEqual(ids.slice(-7), [151644, 78191, 198, 151667, 271, 151668, 271]);
});

test("qwen3: history reasoning is dropped before the last query and kept after it", () => {
  const t = tokenizerFor("qwen3");
  // The published behaviour of the official template for a closing assistant turn with no reasoning.
  assert.equal(
    t.applyChatTemplate(
      [
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello" },
      ],
      { addGenerationPrompt: false },
    ),
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n",
  );
  assert.equal(
    t.applyChatTemplate(
      [
        { role: "user", content: "2+2?" },
        { role: "assistant", content: "<think>\nadd them\n</think>\n\n4" },
        { role: "user", content: "and 3+3?" },
      ],
      GEN,
    ),
    "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n" +
      "<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n",
  );
  assert.equal(
    t.applyChatTemplate(
      [
        { role: "user", content: "weather?" },
        { role: "assistant", content: "<think>\ncall the tool\n</think>\n\nchecking" },
        { role: "tool", content: "sunny" },
        { role: "tool", content: "22C" },
      ],
      GEN,
    ),
    "<|im_start|>user\nweather?<|im_end|>\n" +
      "<|im_start|>assistant\n<think>\ncall the tool\n</think>\n\nchecking<|im_end|>\n" +
      "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\n22C\n</tool_response><|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
});

test("opt: no chat template of its own; the plain fallback is documented and encodes with OPT ids", () => {
  const t = tokenizerFor("opt");
  assert.equal(t.hasChatTemplate, false);
  assert.equal(
    t.applyChatTemplate(SYSTEM_USER, GEN),
    "system: You are a helpful assistant.\nuser: What is the capital of France?\nassistant:",
  );
  const ids = t.encodeChat(SYSTEM_USER, GEN);
  assert.notEqual(ids[0], 2, "chat encoding adds no BOS");
  assert.ok(ids.every((id) => id >= 4 && id < t.vocabSize));
  assert.equal(tokenizerFor("llama3").hasChatTemplate, true);
});

test("every template rejects an empty conversation with ChatTemplateError", () => {
  for (const family of ["llama3", "qwen3", "qwen2.5", "opt"]) {
    assert.throws(() => tokenizerFor(family).applyChatTemplate([], GEN), ChatTemplateError);
  }
});

test("chatMessagesSchema accepts OpenAI message shapes and rejects malformed ones", () => {
  const ok = chatMessagesSchema.safeParse([
    { role: "system", content: "s" },
    {
      role: "user",
      content: [
        { type: "text", text: "t" },
        { type: "image_url", image_url: { url: "x" } },
      ],
    },
    { role: "assistant", content: null, tool_calls: [] },
    { role: "user", content: "u", name: "bob" },
  ]);
  assert.ok(ok.success);
  assert.equal(ok.data[2]!.content, null);
  assert.equal(chatMessagesSchema.safeParse([]).success, false);
  assert.equal(chatMessagesSchema.safeParse([{ content: "no role" }]).success, false);
  assert.equal(chatMessagesSchema.safeParse([{ role: "user", content: 42 }]).success, false);
});
