// vLLM's 400 for a prompt that does not fit the model's context, word for word (vLLM's
// `_validate_input` in the OpenAI server, as of v0.11): shared by the sim, which answers it as an
// engine, and the router, which answers it itself for long prompts before they reach an engine.
import { HttpError } from "./errors.js";

/**
 * The error for `promptTokens` (+ `maxTokens` to generate, null when the client set none) against a
 * `maxModelLen` context, or null when it fits. `param` names what to shrink, as vLLM does.
 */
export function contextLengthError(
  maxModelLen: number,
  promptTokens: number,
  maxTokens: number | null,
  atLeast = false,
): HttpError | null {
  let message: string;
  if (promptTokens >= maxModelLen) {
    // atLeast: the router proved the prompt too long from a floor on its count (src/tokenizer
    // lower-bound.ts) and did not count the rest; vLLM's sentence, with the figure said for what it is
    message =
      `This model's maximum context length is ${maxModelLen} tokens. However, your request has ` +
      `${atLeast ? "at least " : ""}${promptTokens} input tokens. Please reduce the length of the input messages.`;
  } else if (maxTokens !== null && promptTokens + maxTokens > maxModelLen) {
    message =
      `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum context ` +
      `length is ${maxModelLen} tokens and your request has ${promptTokens} input tokens ` +
      `(${maxTokens} > ${maxModelLen} - ${promptTokens}).`;
  } else return null;
  return new HttpError(400, message, maxTokens !== null ? "max_tokens" : "input_tokens");
}
