// The prompts of /v1/completions and /v1/chat/completions as token ids, with vLLM's checks: ids in
// the vocabulary, a chat template to render with (`add_generation_prompt`, `continue_final_message`),
// stream options only with a stream. Long text is tokenised in slices between turns of the event
// loop (Tokenizer.encodeAsync): a megabyte prompt must not stall every other request and /health.
import { HttpError } from "../../http/errors.js";
import { ChatTemplateError } from "../../tokenizer/types.js";
import { type ChatMessage } from "../../protocol/chat-messages.js";
import {
  CONTINUE_AND_GENERATION_PROMPT,
  CONTINUE_WITH_GENERATION_PROMPT,
} from "../../tokenizer/chat-templates.js";
import type { SimContext } from "./context.js";
import type { ChatBody, CompletionBody } from "../protocol/schemas.js";

export interface PromptInput {
  tokenIds: number[];
  /** the prompt as text, for echo */
  text: string;
  /** it came as text (vLLM then counts an over-long one only to one past the context: "at least") */
  fromText?: boolean;
}

function checkTokenIds(ids: number[], vocabSize: number): void {
  for (const id of ids) {
    if (id < 0 || id >= vocabSize) throw new HttpError(400, `Token id ${id} is out of vocabulary`);
  }
}

/** The prompts' token ids (one request may carry several). */
export async function completionPrompts(ctx: SimContext, body: CompletionBody): Promise<PromptInput[]> {
  const tk = ctx.tokenizer;
  const addSpecial = body.add_special_tokens ?? true;
  const p = body.prompt;
  if (p === null || p === undefined)
    throw new HttpError(
      400,
      "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
      "prompt",
    );
  if (Array.isArray(p) && p.length === 0) throw new HttpError(400, "You must pass at least one prompt");
  if (typeof p === "string")
    return [{ tokenIds: await tk.encodeAsync(p, addSpecial), text: p, fromText: true }];
  if (p.length > 0 && typeof p[0] === "string") {
    const out: PromptInput[] = [];
    for (const t of p as string[])
      out.push({ tokenIds: await tk.encodeAsync(t, addSpecial), text: t, fromText: true });
    return out;
  }
  const lists = (typeof p[0] === "number" ? [p as number[]] : (p as number[][])).map((ids) => {
    checkTokenIds(ids, tk.vocabSize);
    return ids;
  });
  // the text is only for echo: decoding a megabyte of ids nobody asked to see would hold the loop
  return lists.map((ids) => ({ tokenIds: ids, text: body.echo === true ? tk.decode(ids) : "" }));
}

export async function chatPrompt(ctx: SimContext, body: ChatBody): Promise<PromptInput> {
  const tk = ctx.tokenizer;
  if (!tk.hasChatTemplate) {
    throw new HttpError(
      400,
      "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat " +
        "template if the tokenizer does not define one.",
    );
  }
  if (body.messages.length === 0)
    throw new HttpError(
      400,
      "Cannot apply chat template to an empty conversation. Provide at least one message.",
    );
  const { continueFinal, addGenerationPrompt } = continuation(body);
  try {
    const ids = await tk.encodeChatAsync(body.messages as ChatMessage[], {
      addGenerationPrompt,
      continueFinalMessage: continueFinal,
    });
    // vLLM encodes the rendered template with add_special_tokens (default false for chat): true adds a BOS
    const bos = body.add_special_tokens === true ? tk.bosTokenId : null;
    return { tokenIds: bos === null ? ids : [bos, ...ids], text: "", fromText: true };
  } catch (err) {
    if (err instanceof ChatTemplateError) throw new HttpError(400, err.message, "messages");
    throw err;
  }
}

/**
 * `continue_final_message` and `add_generation_prompt` as vLLM reads them (chat and /tokenize alike),
 * with its two refusals of both: its request validator's, when the request sets both to true, and
 * transformers', when a continuation leaves add_generation_prompt at its default (true). Neither names
 * a param.
 */
export function continuation(body: {
  continue_final_message?: boolean | null;
  add_generation_prompt?: boolean | null;
}): { continueFinal: boolean; addGenerationPrompt: boolean } {
  const continueFinal = body.continue_final_message === true;
  const addGenerationPrompt = body.add_generation_prompt ?? true;
  if (continueFinal && body.add_generation_prompt === true)
    throw new HttpError(400, CONTINUE_AND_GENERATION_PROMPT);
  if (continueFinal && addGenerationPrompt) throw new HttpError(400, CONTINUE_WITH_GENERATION_PROMPT);
  return { continueFinal, addGenerationPrompt };
}

/** stream, include_usage, continuous_usage_stats as vLLM reads them */
export function streamFlags(ctx: SimContext, body: { stream?: boolean | null; stream_options?: unknown }) {
  const so = body.stream_options as {
    include_usage?: boolean | null;
    continuous_usage_stats?: boolean | null;
  } | null;
  const stream = body.stream === true;
  if (so && !stream)
    throw new HttpError(400, "Stream options can only be defined when `stream=True`.", "stream_options");
  const includeUsage = stream && (so?.include_usage === true || ctx.options.enableForceIncludeUsage);
  const continuousUsage = includeUsage && so?.continuous_usage_stats === true;
  return { stream, includeUsage, continuousUsage };
}
