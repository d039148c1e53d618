// The chat templates vLLM applies, re-expressed as functions for plain text conversations (no tools).
// Each one reproduces the official Jinja template's output byte for byte; docs/tokenizers.md cites
// the sources and test/tokenizer/chat-templates.test.ts holds fixtures derived from them.
import { contentText, type ChatMessage } from "../protocol/chat-messages.js";
import { pyLstrip, pyRstrip, pyRstripSpace, pyStrip } from "./py-strings.js";
import { ChatTemplateError, type ChatTemplateOptions } from "./types.js";

export type ChatTemplate = (messages: readonly ChatMessage[], opts: ChatTemplateOptions) => string;

function requireMessages(messages: readonly ChatMessage[]): void {
  // Every official template indexes messages[0]; Jinja raises on an empty list and vLLM answers 400.
  if (messages.length === 0) throw new ChatTemplateError("messages must contain at least one message");
}

/**
 * Llama 3.1 Instruct (meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json). The system header
 * always carries the knowledge cutoff and the template's fixed default date "26 Jul 2024"; the first
 * system message (trimmed) follows it. Tool and ipython messages render under an "ipython" header with
 * their content as JSON (a Jinja string is iterable, so the template `tojson`s it).
 */
export const llama31Template: ChatTemplate = (messages, opts) => {
  requireMessages(messages);
  let rest = messages;
  let system = "";
  if (messages[0]!.role === "system") {
    system = pyStrip(contentText(messages[0]!.content));
    rest = messages.slice(1);
  }
  let out =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" +
    system +
    "<|eot_id|>";
  for (const m of rest) {
    const content = contentText(m.content);
    if (m.role === "tool" || m.role === "ipython") {
      out += "<|start_header_id|>ipython<|end_header_id|>\n\n" + JSON.stringify(content) + "<|eot_id|>";
    } else {
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + pyStrip(content) + "<|eot_id|>";
    }
  }
  if (opts.addGenerationPrompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
};

/** Consecutive tool results share one user turn in both Qwen templates. */
function qwenToolTurn(messages: readonly ChatMessage[], i: number, content: string): string {
  let out = "";
  if (i === 0 || messages[i - 1]!.role !== "tool") out += "<|im_start|>user";
  out += "\n<tool_response>\n" + content + "\n</tool_response>";
  if (i === messages.length - 1 || messages[i + 1]!.role !== "tool") out += "<|im_end|>\n";
  return out;
}

/** Qwen2.5 Instruct: ChatML, with a default system message when the conversation has none. */
export const qwen25Template: ChatTemplate = (messages, opts) => {
  requireMessages(messages);
  let out =
    messages[0]!.role === "system"
      ? "<|im_start|>system\n" + contentText(messages[0]!.content) + "<|im_end|>\n"
      : "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const content = contentText(m.content);
    if (m.role === "user" || (m.role === "system" && i > 0) || m.role === "assistant") {
      out += "<|im_start|>" + m.role + "\n" + content + "<|im_end|>\n";
    } else if (m.role === "tool") {
      out += qwenToolTurn(messages, i, content);
    }
  }
  if (opts.addGenerationPrompt) out += "<|im_start|>assistant\n";
  return out;
};

/**
 * Qwen3 (hybrid thinking): ChatML without a default system message. Reasoning in earlier assistant
 * turns (text before "</think>") is dropped; assistant turns after the last real user query keep it
 * inside <think> blocks. With enable_thinking=false the generation prompt gets an empty think block.
 */
export const qwen3Template: ChatTemplate = (messages, opts) => {
  requireMessages(messages);
  let out = "";
  if (messages[0]!.role === "system")
    out += "<|im_start|>system\n" + contentText(messages[0]!.content) + "<|im_end|>\n";
  let lastQueryIndex = messages.length - 1;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role !== "user") continue;
    const c = contentText(m.content);
    if (!(c.startsWith("<tool_response>") && c.endsWith("</tool_response>"))) {
      lastQueryIndex = i;
      break;
    }
  }
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    let content = contentText(m.content);
    if (m.role === "user" || (m.role === "system" && i > 0)) {
      out += "<|im_start|>" + m.role + "\n" + content + "<|im_end|>\n";
    } else if (m.role === "assistant") {
      let reasoning = "";
      if (content.includes("</think>")) {
        const beforeEnd = content.split("</think>")[0]!;
        const opened = pyRstrip(beforeEnd, "\n").split("<think>");
        reasoning = pyLstrip(opened[opened.length - 1]!, "\n");
        const parts = content.split("</think>");
        content = pyLstrip(parts[parts.length - 1]!, "\n");
      }
      const isLast = i === messages.length - 1;
      if (i > lastQueryIndex && (isLast || reasoning)) {
        out +=
          "<|im_start|>" +
          m.role +
          "\n<think>\n" +
          pyRstrip(pyLstrip(reasoning, "\n"), "\n") +
          "\n</think>\n\n" +
          pyLstrip(content, "\n");
      } else {
        out += "<|im_start|>" + m.role + "\n" + content;
      }
      out += "<|im_end|>\n";
    } else if (m.role === "tool") {
      out += qwenToolTurn(messages, i, content);
    }
  }
  if (opts.addGenerationPrompt) {
    out += "<|im_start|>assistant\n";
    if (opts.enableThinking === false) out += "<think>\n\n</think>\n\n";
  }
  return out;
};

/**
 * facebook/opt-125m ships no chat template, and vLLM (transformers >= 4.44 removed the implicit
 * default) answers chat requests for it with 400. When a caller still wants chat, this plain
 * fallback renders "role: content" lines and an "assistant:" cue; it is ours, not OPT's.
 */
export const plainFallbackTemplate: ChatTemplate = (messages, opts) => {
  requireMessages(messages);
  let out = "";
  for (const m of messages) out += m.role + ": " + contentText(m.content) + "\n";
  if (opts.addGenerationPrompt) out += "assistant:";
  return out;
};

/** vLLM's error text for chat on a model without a template (HTTP 400). */
export const NO_CHAT_TEMPLATE_MESSAGE =
  "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat " +
  "template if the tokenizer does not define one.";

/** transformers' marker for the end of the message to continue (`apply_chat_template`). */
const CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG ";

/** vLLM's refusal of a request that sets both to true itself (a 400, before any rendering). */
export const CONTINUE_AND_GENERATION_PROMPT =
  "Cannot set both `continue_final_message` and `add_generation_prompt` to True.";

/**
 * transformers' refusal of a rendering asked for both: what vLLM answers (a 400) when a request sets
 * `continue_final_message` and leaves `add_generation_prompt` at its default, true.
 */
export const CONTINUE_WITH_GENERATION_PROMPT =
  "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message " +
  "when you want the model to continue the final message, and add_generation_prompt when you want to " +
  "add a header that will prompt it to start a new assistant message instead.";

/**
 * A template's output, with vLLM's `continue_final_message` done as transformers does it
 * (`apply_chat_template(continue_final_message=True)`): a marker is appended to the final message's
 * text, the conversation rendered without a generation prompt, and the output cut where the marker
 * begins, so whatever the template puts after a message (end-of-turn tokens) is dropped and the
 * model continues the message itself. Templates that trim message text (Llama 3's `| trim`) lose the
 * message's trailing whitespace there, as with transformers.
 */
export function renderChat(
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  opts: ChatTemplateOptions,
): string {
  if (!opts.continueFinalMessage) return template(messages, opts);
  if (opts.addGenerationPrompt) throw new ChatTemplateError(CONTINUE_WITH_GENERATION_PROMPT);
  requireMessages(messages);
  const last = messages[messages.length - 1]!;
  let finalText: string;
  let tagged: ChatMessage;
  if (Array.isArray(last.content)) {
    let at = -1;
    for (let i = last.content.length - 1; i >= 0 && at < 0; i--) {
      if (typeof last.content[i]!.text === "string") at = i;
    }
    if (at < 0)
      throw new ChatTemplateError(
        "continue_final_message is set but we could not find any text to continue in the final message!",
      );
    finalText = last.content[at]!.text!;
    const parts = last.content.slice();
    parts[at] = { ...parts[at]!, text: finalText + CONTINUE_TAG };
    tagged = { ...last, content: parts };
  } else {
    finalText = last.content ?? "";
    tagged = { ...last, content: finalText + CONTINUE_TAG };
  }
  const rendered = template([...messages.slice(0, -1), tagged], { ...opts, addGenerationPrompt: false });
  const bare = CONTINUE_TAG.trim();
  if (!rendered.includes(pyStrip(finalText)) || !rendered.includes(bare)) {
    throw new ChatTemplateError(
      "continue_final_message is set but the final message does not appear in the chat after applying " +
        "the chat template! This can happen if the chat template deletes portions of the final message.",
    );
  }
  const at = rendered.lastIndexOf(bare);
  // the template kept the marker's trailing space: it keeps message text as it is
  if (rendered.startsWith(CONTINUE_TAG, at)) return rendered.slice(0, at);
  return pyRstripSpace(rendered.slice(0, at));
}
