// Chat message shape at the HTTP edge, and the flattening vLLM applies before the template runs.
import { z } from "zod";
import type { ChatMessage } from "./types.js";

const contentPartSchema = z.looseObject({ type: z.string(), text: z.string().optional() });

/** One chat message as accepted on /v1/chat/completions and /tokenize; unknown fields pass through. */
export const chatMessageSchema = z.looseObject({
  role: z.string().min(1),
  content: z
    .union([z.string(), z.array(contentPartSchema), z.null()])
    .optional()
    .default(null),
  name: z.string().optional(),
});

export const chatMessagesSchema = z.array(chatMessageSchema).min(1);

/**
 * vLLM (content format "string") joins the text parts of a content array with "\n" before the
 * template sees the message; non-text parts carry no text here, and null content renders as "".
 */
export function contentText(content: ChatMessage["content"] | undefined): string {
  if (typeof content === "string") return content;
  if (!content) return "";
  const texts: string[] = [];
  for (const part of content) {
    if (part.type === "text" && typeof part.text === "string") texts.push(part.text);
  }
  return texts.join("\n");
}

// Python's str.isspace() set, so `| trim` and .strip() match Jinja exactly (JS trim() differs on
// \x1c-\x1f, \x85 and \ufeff).
const PY_WS = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, "g");

/** Python str.strip() with no argument (Jinja's `trim` filter) */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, "");
}

/** Python str.lstrip(chars) / rstrip(chars) / strip(chars) for a set of single chars */
export function pyLstrip(s: string, chars: string): string {
  let i = 0;
  while (i < s.length && chars.includes(s[i]!)) i++;
  return s.slice(i);
}
export function pyRstrip(s: string, chars: string): string {
  let j = s.length;
  while (j > 0 && chars.includes(s[j - 1]!)) j--;
  return s.slice(0, j);
}
