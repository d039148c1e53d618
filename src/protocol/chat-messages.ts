// The OpenAI chat message as every layer that reads one sees it (the tokenizer's templates, the sim,
// the router's budget and KV tokenizers, routing's prefix index and session inference): its shape at
// the HTTP edge, and the flattening vLLM applies to a content array before the template runs. On the
// ground floor, so that routing and the router's edge need not import the tokenizer for a type.
import { z } from "zod";

/** One OpenAI chat message as the chat template sees it. Extra fields (tool_calls, ...) are ignored. */
export interface ChatMessage {
  role: string;
  content: string | Array<{ type: string; text?: string }> | null;
  name?: string;
}

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
