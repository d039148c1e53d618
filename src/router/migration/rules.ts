// Which requests may move to another engine mid-stream, and the request that continues one. A stream
// continues from the exact token ids its engine saw and produced (`return_token_ids`), as a
// `/v1/completions` request of the prompt's ids and every output id, a chat included: rendering the
// partial answer through the chat template again does not give back the same ids, and a greedy model
// continues exactly only from the same ids. Without ids a greedy request ends with an error event and a
// sampled one continues from the text. What cannot continue at all is refused up front; the reasons
// and the why of each choice: docs/reliability.md#migration.
import type { MigrationLedger, GenerationKind } from "./ledger.js";
import type { RoutedRequest } from "../request/routed-request.js";
import { endpointOf } from "../request/endpoints.js";

/**
 * Why a stream broke off after its first byte: the engine's connection was lost or closed before
 * [DONE], it fell silent past the idle timeout, it sent an error event, or the router moved the
 * stream off an engine that is draining or was ejected.
 */
export type BreakReason = "connection_lost" | "closed" | "idle_timeout" | "error_event" | "drain" | "ejected";

/** A migratable stream broke off: the data plane continues it on another engine, or ends it. */
export interface MigrateOutcome {
  kind: "migrate";
  reason: BreakReason;
  /** what went wrong, for the error event when the stream cannot continue */
  detail: string;
  /** in-flight: the engine failed holding it (counts toward poisonAfter); router: the router moved it */
  cause: "in-flight" | "router";
}

/** Why the router moves a stream off its engine. */
export type MoveReason = "drain" | "ejected";

/** What the data plane keeps to continue a migratable request. */
export interface MigrationPlan {
  kind: GenerationKind;
  /** the client's request as parsed (never mutated: continuations are built from copies) */
  request: Record<string, unknown>;
  /** the client asked for token ids itself: they are relayed, not blanked */
  clientWantsIds: boolean;
  /** the client asked for a usage chunk (stream_options.include_usage) */
  includeUsage: boolean;
  /**
   * the client did not ask for a stream: the engines are asked for one (so that the answer can
   * continue elsewhere) and the client gets the assembled JSON answer
   */
  buffered: boolean;
}

/** What a stream that broke off continues as. */
export type Continuation =
  | {
      kind: "request";
      body: Buffer;
      /** the continuation as routing sees it (its prompt, or its messages, and its fields) */
      request: Record<string, unknown>;
      prompt: unknown;
      messages: unknown[] | undefined;
      /**
       * set when it runs as a completion from token ids: the route it goes to (a chat's events then
       * come back as completion chunks, re-wrapped by the ledger), and for a chat that asked for
       * logprobs, how many alternatives per token it wants (`top_logprobs`)
       */
      asTokens?: { path: string; topLogprobs: number | undefined };
    }
  /** nothing is left to generate: the router ends the stream itself */
  | { kind: "end"; finish: string }
  /** `no_token_ids`: a greedy answer that could continue only from ids the engine did not return */
  | { kind: "refused"; why: string; outcome: "not_migratable" | "no_token_ids" };

/** Where a continuation from token ids goes: vLLM's completions take a token-id `prompt`. */
export const TOKEN_CONTINUATION_PATH = "/v1/completions";

const RETURN_TOKEN_IDS = Buffer.from(',"return_token_ids":true');
const AS_STREAM = Buffer.from(',"stream":true,"stream_options":{"include_usage":true}');

/** Keys that make the engine constrain or parse its output from the answer's first token on. */
const STRUCTURED = [
  "guided_json",
  "guided_regex",
  "guided_choice",
  "guided_grammar",
  "structured_outputs",
] as const;

const isInt = (v: unknown) => typeof v === "number" && Number.isInteger(v);
const isIds = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every(isInt);

/**
 * The request is greedy: temperature 0, or top_k 1. Without a temperature vLLM samples at 1.0 (or at
 * the model's generation config's, usually above 0), so only an explicit one makes a request greedy.
 */
function greedy(p: Record<string, unknown>): boolean {
  return p.temperature === 0 || p.top_k === 1;
}

/** Some message carries a content part that is not text (an image, audio, a video, a file). */
function hasMedia(messages: unknown[]): boolean {
  for (const m of messages) {
    const content = (m as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      const type = (part as { type?: unknown } | null)?.type;
      if (type !== "text" && type !== "input_text") return true;
    }
  }
  return false;
}

/**
 * Chat fields a completion request takes as they are: vLLM's sampling parameters and request
 * options. The rest of a chat request (messages, template options, tools, response format) went into
 * the prompt's ids already or is refused up front; `truncate_prompt_tokens` is left out because the
 * ids the engine reported are the prompt after truncation.
 */
const CHAT_TO_COMPLETION = [
  "model",
  "temperature",
  "top_p",
  "top_k",
  "min_p",
  "seed",
  "stop",
  "stop_token_ids",
  "include_stop_str_in_output",
  "ignore_eos",
  "presence_penalty",
  "frequency_penalty",
  "repetition_penalty",
  "length_penalty",
  "logit_bias",
  "allowed_token_ids",
  "bad_words",
  "skip_special_tokens",
  "spaces_between_special_tokens",
  "priority",
  "cache_salt",
  "user",
  "request_id",
  "vllm_xargs",
  "logits_processors",
  "stream",
  "stream_options",
] as const;

/** vLLM's default max_tokens for completions (chat's is what the context leaves). */
const COMPLETION_MAX_TOKENS = 16;

/**
 * The plan for a completion or chat that may migrate (streamed, or with `nonStreaming` not), a
 * sentence saying why one may not, or undefined for requests that are not generations at all.
 */
export function planMigration(
  route: string,
  pr: RoutedRequest,
  nonStreaming = false,
): MigrationPlan | string | undefined {
  // which routes continue, and as what, is the endpoint table's (../request/endpoints.ts)
  const kind: GenerationKind | undefined = (pr.endpoint ?? endpointOf(route))?.migrates;
  if (kind === undefined || (!pr.stream && !nonStreaming)) return undefined;
  const p = pr.parsed;
  if (!p || !Buffer.isBuffer(pr.body)) return "the request body streams through the router";
  const n = p.n ?? 1;
  if (n !== 1 || (p.best_of ?? 1) !== 1) return "more than one choice (n > 1)";
  if (p.use_beam_search === true) return "beam search";
  for (const k of STRUCTURED) if (p[k] !== undefined && p[k] !== null) return "structured output";
  const rf = p.response_format as { type?: unknown } | null | undefined;
  if (rf && typeof rf === "object" && rf.type !== "text") return "structured output (response_format)";
  const stop = p.stop;
  const hasStop = typeof stop === "string" ? stop !== "" : Array.isArray(stop) && stop.length > 0;
  // vLLM holds back the text of a partial stop-string match, so a stop string never spans a break,
  // unless the stop string is to be included in the output
  if (hasStop && p.include_stop_str_in_output === true) return "include_stop_str_in_output with stop strings";
  if (kind === "completion") {
    const prompt = p.prompt;
    const single =
      typeof prompt === "string" ||
      isIds(prompt) ||
      (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === "string" || isIds(prompt[0])));
    if (!single) return "more than one prompt";
    // vLLM sends no echoed text when ids are asked for, and the continuation must not echo
    if (p.echo === true) return "echo";
    if (p.suffix !== undefined && p.suffix !== null) return "suffix";
  } else {
    const tools = p.tools;
    if (Array.isArray(tools) && tools.length > 0 && p.tool_choice !== "none") return "tool calls";
    if (!Array.isArray(p.messages) || p.messages.length === 0) return "no messages";
    // a token-id prompt cannot carry them; only text continues them, which is not the same answer
    if (greedy(p) && hasMedia(p.messages))
      return "image, audio or video content in a greedy chat (a token-id continuation cannot carry it)";
  }
  const so = p.stream_options as { include_usage?: unknown } | null | undefined;
  return {
    kind,
    request: p,
    clientWantsIds: p.return_token_ids === true,
    includeUsage: so?.include_usage === true || !pr.stream,
    buffered: !pr.stream,
  };
}

/**
 * The body sent to the first engine: the client's bytes with `"return_token_ids":true` added before
 * the closing brace (JSON parsers keep a repeated key's last value, Python's included), so the
 * output's token ids come back with it; unchanged when the client asked for them itself.
 */
export function firstBody(body: Buffer, plan: MigrationPlan): Buffer {
  if (plan.clientWantsIds && !plan.buffered) return body;
  let end = body.length - 1;
  while (end > 0 && body[end] !== 0x7d) end--;
  let before = end - 1;
  while (
    before > 0 &&
    (body[before] === 0x20 || body[before] === 0x0a || body[before] === 0x0d || body[before] === 0x09)
  )
    before--;
  // `{}`: nothing to add a field after (a generation request always has fields)
  if (end <= 0 || body[before] === 0x7b) return body;
  const parts = [body.subarray(0, end)];
  if (plan.buffered) parts.push(AS_STREAM);
  if (!plan.clientWantsIds) parts.push(RETURN_TOKEN_IDS);
  parts.push(body.subarray(end));
  return Buffer.concat(parts);
}

/** What is left of a token budget the client set; undefined when it set none. */
function remaining(v: unknown, used: number): number | undefined {
  return typeof v === "number" ? v - used : undefined;
}

/** The request that continues a stream after `ledger.tokens` output tokens on other engines. */
export function continuation(plan: MigrationPlan, ledger: MigrationLedger): Continuation {
  const used = ledger.tokens;
  const p = plan.request;
  let left: number | undefined;
  if (plan.kind === "completion") left = remaining(p.max_tokens, used) ?? COMPLETION_MAX_TOKENS - used;
  else left = remaining(p.max_completion_tokens ?? p.max_tokens, used);
  if (left !== undefined && left <= 0) return { kind: "end", finish: "length" };
  // nothing delivered yet: the client's request again, as it was
  if (used === 0) return asRequest(plan, p, left, used);
  const ids = tokenIdPrompt(plan, ledger);
  if (ids !== undefined) return fromTokenIds(plan, ids, left, used);
  if (greedy(p))
    return {
      kind: "refused",
      outcome: "no_token_ids",
      why:
        "the engine returned no token ids (vLLM 0.10.2+ returns them), and a greedy answer continues " +
        "exactly only from the ids it saw and produced",
    };
  return fromText(plan, ledger, left, used);
}

/**
 * The ids to continue from: the prompt's as the first engine saw them (its `prompt_token_ids`, or the
 * client's own token-id prompt), then every output id; undefined when the engines did not say.
 */
function tokenIdPrompt(plan: MigrationPlan, ledger: MigrationLedger): number[] | undefined {
  if (!ledger.exact) return undefined;
  let prompt: readonly number[] | undefined = ledger.promptIds;
  if (prompt === undefined && plan.kind === "completion") {
    const p = plan.request.prompt;
    const original = Array.isArray(p) && p.length === 1 ? p[0] : p;
    if (isIds(original)) prompt = original as number[];
  }
  return prompt === undefined ? undefined : [...prompt, ...ledger.outputIds];
}

/** What every continuation body has: ids asked for, one choice, a stream when the client wants JSON. */
function common(plan: MigrationPlan, body: Record<string, unknown>, used: number): void {
  const p = plan.request;
  body.return_token_ids = true;
  body.n = 1;
  if (plan.buffered) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  if (typeof p.min_tokens === "number") body.min_tokens = Math.max(0, p.min_tokens - used);
}

/**
 * A completion from the exact ids: the prompt's and the output's so far, no special tokens added
 * (they are in the ids), what is left of max_tokens (`null` for a chat that set none: vLLM then
 * allows what the context leaves, as it did for the chat), the client's sampling parameters.
 */
function fromTokenIds(
  plan: MigrationPlan,
  ids: number[],
  left: number | undefined,
  used: number,
): Continuation {
  const p = plan.request;
  let body: Record<string, unknown>;
  let topLogprobs: number | undefined;
  if (plan.kind === "completion") {
    body = { ...p };
    delete body.echo;
    delete body.prompt_logprobs;
    delete body.truncate_prompt_tokens;
  } else {
    body = {};
    for (const k of CHAT_TO_COMPLETION) if (p[k] !== undefined) body[k] = p[k];
    if (p.logprobs === true) {
      topLogprobs = typeof p.top_logprobs === "number" ? p.top_logprobs : 0;
      // a completion's logprobs hold the sampled token and this many alternatives
      body.logprobs = topLogprobs;
    }
  }
  body.prompt = ids;
  body.add_special_tokens = false;
  body.max_tokens = left ?? null;
  common(plan, body, used);
  return {
    kind: "request",
    body: Buffer.from(JSON.stringify(body)),
    request: body,
    prompt: ids,
    messages: undefined,
    asTokens: { path: TOKEN_CONTINUATION_PATH, topLogprobs },
  };
}

/** The client's request once more (nothing was delivered), with what is left of its budgets. */
function asRequest(
  plan: MigrationPlan,
  p: Record<string, unknown>,
  left: number | undefined,
  used: number,
): Continuation {
  const body: Record<string, unknown> = { ...p };
  delete body.echo;
  delete body.prompt_logprobs;
  common(plan, body, used);
  if (plan.kind === "completion") body.max_tokens = left;
  else if (left !== undefined) body[chatCapKey(p)] = left;
  return {
    kind: "request",
    body: Buffer.from(JSON.stringify(body)),
    request: body,
    prompt: plan.kind === "completion" ? body.prompt : undefined,
    messages: plan.kind === "chat" ? (body.messages as unknown[]) : undefined,
  };
}

/** The field a chat's token budget is in. */
function chatCapKey(p: Record<string, unknown>): "max_completion_tokens" | "max_tokens" {
  return p.max_completion_tokens !== undefined && p.max_completion_tokens !== null
    ? "max_completion_tokens"
    : "max_tokens";
}

/**
 * A sampled request without ids continues from the text: a completion's text prompt + the text so
 * far (tokenised again), a chat's conversation with the partial answer as its last, open assistant
 * message. Not the same ids, which a new draw does not need.
 */
function fromText(
  plan: MigrationPlan,
  ledger: MigrationLedger,
  left: number | undefined,
  used: number,
): Continuation {
  const p = plan.request;
  const body: Record<string, unknown> = { ...p };
  delete body.echo;
  delete body.prompt_logprobs;
  common(plan, body, used);
  let messages: unknown[] | undefined;
  if (plan.kind === "completion") {
    body.max_tokens = left;
    const original = Array.isArray(p.prompt) && p.prompt.length === 1 ? p.prompt[0] : p.prompt;
    if (typeof original !== "string")
      return {
        kind: "refused",
        outcome: "no_token_ids",
        why: "the engine returned no token ids for a token-id prompt",
      };
    body.prompt = original + ledger.text;
  } else {
    if (left !== undefined) body[chatCapKey(p)] = left;
    messages = (p.messages as unknown[]).slice();
    const last = messages[messages.length - 1] as { role?: unknown; content?: unknown } | undefined;
    if (p.continue_final_message === true) {
      // the client was continuing a message already: the answer extends that one
      if (!last || typeof last.content !== "string")
        return {
          kind: "refused",
          outcome: "not_migratable",
          why: "continue_final_message on a message with content parts",
        };
      messages[messages.length - 1] = { ...last, content: last.content + ledger.text };
    } else messages.push({ role: "assistant", content: ledger.text });
    body.messages = messages;
    body.continue_final_message = true;
    body.add_generation_prompt = false;
  }
  return {
    kind: "request",
    body: Buffer.from(JSON.stringify(body)),
    request: body,
    prompt: plan.kind === "completion" ? body.prompt : undefined,
    messages,
  };
}
