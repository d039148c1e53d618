// How a request's prompt and max_tokens must fit the model's context, and vLLM's 400s when they do not,
// word for word: shared by the sim, which answers them as an engine, and the router, which answers
// them itself for long prompts before they reach an engine. One definition keeps the two in step.
//
// vLLM changed the rule between the releases the sim claims (read from vLLM's renderers/params.py
// TokenizeParams and entrypoints/serve/utils/api_utils.py get_max_tokens of each release):
//  - "reserve" (0.28): max_tokens is held back from the context, so a prompt longer than
//    max_model_len - max_tokens is refused, blaming the input tokens;
//  - "clamp" (0.32): max_tokens is only an upper bound. A prompt up to max_model_len is served and
//    max_tokens cut to the room left; only a prompt past max_model_len is refused.
// Both refuse a max_tokens above max_model_len before tokenising, and both then refuse an output
// budget under 1 token (a prompt filling the whole context, or max_tokens 0), as SamplingParams does.
import { HttpError } from "./errors.js";

export type ContextRules = "reserve" | "clamp";

/** the first vLLM release checked to clamp max_tokens to the room left (0.28.0 still reserved it) */
export const CLAMP_SINCE = "0.32.0";

/** the request field that set the output budget, which vLLM's refusals name */
export type OutputParam = "max_tokens" | "max_completion_tokens" | "max_output_tokens";

export interface ContextAsk {
  maxModelLen: number;
  /** the prompt's token count (a floor on it when `floor`) */
  promptTokens: number;
  /** the output budget as asked, after the endpoint's default (completions: 16); null when none */
  maxTokens: number | null;
  /** default max_tokens */
  param?: OutputParam;
  /**
   * The prompt came as text. vLLM tokenises text with truncation one token past what may fit, so it
   * never knows more than "at least" that many, and says so.
   */
  text?: boolean;
  /** `promptTokens` is only a floor on the count (the router's lower bound for huge prompts) */
  floor?: boolean;
  /** default "clamp": what a vLLM 0.32 engine does */
  rules?: ContextRules;
}

/** vLLM's VLLMValidationError text: the message, then the parameter and value it names. */
export function validationError(message: string, param: string, value: number): HttpError {
  return new HttpError(400, `${message} (parameter=${param}, value=${value})`, param);
}

/**
 * vLLM's refusal for a request that cannot fit, in vLLM's order (max_tokens, prompt, output budget),
 * or null when it fits.
 */
export function contextLengthError(a: ContextAsk): HttpError | null {
  const rules = a.rules ?? "clamp";
  const m = a.maxModelLen;
  const param = a.param ?? "max_tokens";
  const asked = a.maxTokens;
  if (asked !== null && asked > m) {
    // 0.28 wrote the limit with a stray debug format ("max_model_len=max_total_tokens=2048")
    const limit = rules === "reserve" ? `max_total_tokens=${m}` : `${m}`;
    return validationError(
      `${param}=${asked} cannot be greater than max_model_len=${limit}. Please request fewer output tokens.`,
      param,
      asked,
    );
  }
  // what may be the prompt: the whole context, or (0.28) what max_tokens leaves of it
  const reserved = rules === "reserve" ? (asked ?? 0) : 0;
  const fits = m - reserved;
  if (a.promptTokens > fits) {
    // text is counted no further than one past what fits; a count of exactly that is "at least"
    const n = a.text === true || a.floor === true ? Math.min(a.promptTokens, fits + 1) : a.promptTokens;
    const q = n === fits + 1 ? "at least " : "";
    const message =
      rules === "reserve"
        ? `This model's maximum context length is ${m} tokens. However, you requested ${reserved} output ` +
          `tokens and your prompt contains ${q}${n} input tokens, for a total of ${q}${n + reserved} tokens. ` +
          `Please reduce the length of the input prompt or the number of requested output tokens.`
        : `This model's maximum context length is ${m} tokens. However, your prompt contains ${q}${n} ` +
          `input tokens, which exceeds this limit even without any output tokens. Please reduce the ` +
          `length of the input prompt.`;
    return validationError(message, "input_tokens", n);
  }
  const budget = outputBudget(m, a.promptTokens, asked);
  if (budget < 1)
    return validationError(`max_tokens must be at least 1, got ${budget}.`, "max_tokens", budget);
  return null;
}

/**
 * The output budget a request that fits runs with (vLLM's get_max_tokens): what it asked (none: all
 * the room left), never more than the context leaves after the prompt.
 */
export function outputBudget(maxModelLen: number, promptTokens: number, maxTokens: number | null): number {
  const room = maxModelLen - promptTokens;
  return maxTokens === null ? room : Math.min(maxTokens, room);
}
