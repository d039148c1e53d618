// Which requests may move to another engine mid-stream, and the request that continues one. A
// stream continues with vLLM's own facilities: a completion as a token-id prompt (the first engine's
// prompt ids + every output id, from `return_token_ids`, vLLM 0.10.2+); a chat as the conversation
// with the partial answer as its last, open assistant message (`continue_final_message: true`,
// `add_generation_prompt: false`, vLLM 0.6.3+). The continuation asks for what is left of
// `max_tokens` and `min_tokens`. What cannot continue this way is refused up front (the stream then
// ends with an error event on failure, as it did before migration existed); the reasons are the
// documented list in docs/reliability.md.
import type { MigrationLedger, GenerationKind } from "./migration-ledger.js";
import type { RoutedRequest } from "./request.js";
import { endpointOf } from "./endpoints.js";

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
    }
  /** nothing is left to generate: the router ends the stream itself */
  | { kind: "end"; finish: string }
  | { kind: "refused"; why: string };

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
  // which routes continue, and as what, is the endpoint table's (endpoints.ts)
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
  const body: Record<string, unknown> = { ...p, return_token_ids: true, n: 1 };
  delete body.echo;
  delete body.prompt_logprobs;
  if (plan.buffered) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  if (typeof p.min_tokens === "number") body.min_tokens = Math.max(0, p.min_tokens - used);
  let messages: unknown[] | undefined;
  if (plan.kind === "completion") {
    const left = (remaining(p.max_tokens, used) ?? COMPLETION_MAX_TOKENS - used) as number;
    if (left <= 0) return { kind: "end", finish: "length" };
    body.max_tokens = left;
    if (used > 0) {
      const original = Array.isArray(p.prompt) && p.prompt.length === 1 ? p.prompt[0] : p.prompt;
      if (ledger.exact && ledger.promptIds) body.prompt = [...ledger.promptIds, ...ledger.outputIds];
      else if (ledger.exact && isIds(original))
        body.prompt = [...(original as number[]), ...ledger.outputIds];
      // engines without return_token_ids (vLLM before 0.10.2): the text, tokenised again
      else if (typeof original === "string") body.prompt = original + ledger.text;
      else return { kind: "refused", why: "the engine returned no token ids for a token-id prompt" };
    }
  } else {
    const key =
      p.max_completion_tokens !== undefined && p.max_completion_tokens !== null
        ? "max_completion_tokens"
        : "max_tokens";
    const left = remaining(p[key], used);
    if (left !== undefined) {
      if (left <= 0) return { kind: "end", finish: "length" };
      body[key] = left;
    }
    if (used > 0) {
      messages = (p.messages as unknown[]).slice();
      const last = messages[messages.length - 1] as { role?: unknown; content?: unknown } | undefined;
      if (p.continue_final_message === true) {
        // the client was continuing a message already: the answer extends that one
        if (!last || typeof last.content !== "string")
          return { kind: "refused", why: "continue_final_message on a message with content parts" };
        messages[messages.length - 1] = { ...last, content: last.content + ledger.text };
      } else messages.push({ role: "assistant", content: ledger.text });
      body.messages = messages;
      body.continue_final_message = true;
      body.add_generation_prompt = false;
    }
  }
  return {
    kind: "request",
    body: Buffer.from(JSON.stringify(body)),
    request: body,
    prompt: plan.kind === "completion" ? body.prompt : undefined,
    messages: plan.kind === "chat" ? (body.messages as unknown[]) : undefined,
  };
}
