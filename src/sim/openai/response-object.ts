// vLLM 0.32's ResponsesResponse as it writes one, every field dumped in its order: what a whole
// answer is, what response.created / in_progress / completed carry, what the store keeps and GET
// answers. Clients of the Responses API (and the conformance suite) read these keys, so the echo of
// the request's settings (tool_choice, text, the penalties) follows vLLM's resolution of them.
import type { FinishReason } from "../../engine/types.js";
import { HttpError } from "../../http/errors.js";
import type { GenerationResult } from "../serving/engine-request.js";
import { resolveSampling } from "../serving/sampling-params.js";

/** The request's `text` setting (responses.ts validates it). */
export interface TextSetting {
  format?: {
    type: string;
    name?: string | undefined;
    schema?: unknown;
    description?: string | null | undefined;
    strict?: boolean | null | undefined;
  } | null;
  verbosity?: string | null;
}

/** The fields of a Responses request its answer echoes (responses.ts validates them). */
export interface EchoedRequest {
  instructions?: string | null;
  metadata?: Record<string, unknown> | null;
  parallel_tool_calls?: boolean | null;
  temperature?: number | null;
  top_p?: number | null;
  max_tool_calls?: number | null;
  previous_response_id?: string | null;
  service_tier?: string | null;
  text?: TextSetting | null;
  truncation?: string | null;
  user?: string | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  tools?: unknown[] | null;
  tool_choice?: unknown;
}

/** What a response's answer is built from: the request, its prompt and its ids. */
export interface ResponseHead {
  id: string;
  created: number;
  body: EchoedRequest;
  model: { name: string };
  promptIds: readonly number[];
  maxTokens: number;
  itemId: string;
}

/** The assistant's message item: empty while it runs, its text once done. */
export function outputMessage(itemId: string, text: string, status: string): Record<string, unknown> {
  const content =
    status === "in_progress" ? [] : [{ annotations: [], text, type: "output_text", logprobs: null }];
  return { id: itemId, content, role: "assistant", status, type: "message", phase: null };
}

export function statusOf(reason: FinishReason): string {
  return reason === "length" ? "incomplete" : reason === "abort" ? "cancelled" : "completed";
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** vLLM's VLLMValidationError: the message names its parameter, which is the error's param too. */
function toolChoiceError(message: string): HttpError {
  return new HttpError(400, `${message} (parameter=tool_choice)`, "tool_choice");
}

/**
 * The tool_choice vLLM resolves when it reads the request: without tools, "auto" (the default) and
 * "none" become "none", while "required" and a named function are refused. The sim does not model
 * Responses tools; with tools the choice is echoed as asked.
 */
export function responseToolChoice(body: EchoedRequest): unknown {
  const tools = body.tools;
  const choice = body.tool_choice ?? "auto";
  if (Array.isArray(tools) && tools.length > 0) return choice;
  if (choice === "auto" || choice === "none") return "none";
  if (choice === "required")
    throw toolChoiceError("Tool choice 'required' must be specified with 'tools' parameter.");
  if (isRecord(choice) && (choice.type === "function" || choice.type === "custom"))
    throw toolChoiceError("Tool choice 'function' not found in 'tools' parameter.");
  return choice;
}

/** The request's `text` as vLLM's ResponseTextConfig writes it back: format (each kind's fields), verbosity. */
export function textConfig(text: TextSetting | null | undefined): Record<string, unknown> | null {
  if (!text) return null;
  const f = text.format;
  let format: Record<string, unknown> | null = null;
  if (f) {
    format =
      f.type === "json_schema"
        ? {
            name: f.name,
            schema: f.schema,
            type: "json_schema",
            description: f.description ?? null,
            strict: f.strict ?? null,
          }
        : { type: f.type };
  }
  return { format, verbosity: text.verbosity ?? null };
}

/** vLLM's ResponseUsage: the per-turn lists stay empty for a single-turn (non-harmony) answer. */
function usageOf(p: ResponseHead, r: GenerationResult): Record<string, unknown> {
  const input = p.promptIds.length;
  const output = r.timings.outputTokens;
  return {
    input_tokens: input,
    input_tokens_details: {
      cached_tokens: r.timings.cachedTokens,
      cache_write_tokens: 0,
      input_tokens_per_turn: [],
      cached_tokens_per_turn: [],
    },
    output_tokens: output,
    output_tokens_details: {
      reasoning_tokens: 0,
      tool_output_tokens: 0,
      output_tokens_per_turn: [],
      tool_output_tokens_per_turn: [],
    },
    total_tokens: input + output,
  };
}

/** vLLM's ResponsesResponse, every field dumped in its order. */
export function responseObject(
  p: ResponseHead,
  status: string,
  r: GenerationResult | null,
  background: boolean,
): Record<string, unknown> {
  const b = p.body;
  // the sampling fields come back as SamplingParams resolved them (greedy resets top_p, ...)
  const s = resolveSampling({ temperature: b.temperature, top_p: b.top_p });
  return {
    id: p.id,
    created_at: p.created,
    incomplete_details: r?.reason === "length" ? { reason: "max_output_tokens" } : null,
    instructions: b.instructions ?? null,
    metadata: b.metadata ?? null,
    model: p.model.name,
    object: "response",
    output: r ? [outputMessage(p.itemId, r.text, "completed")] : [],
    parallel_tool_calls: b.parallel_tool_calls ?? true,
    temperature: s.temperature,
    tool_choice: responseToolChoice(b),
    // Responses tools are not modelled: none are echoed
    tools: [],
    top_p: s.top_p,
    background,
    max_output_tokens: p.maxTokens,
    max_tool_calls: b.max_tool_calls ?? null,
    previous_response_id: b.previous_response_id ?? null,
    prompt: null,
    reasoning: null,
    service_tier: b.service_tier ?? "auto",
    status,
    text: textConfig(b.text),
    top_logprobs: null,
    truncation: b.truncation ?? "disabled",
    usage: r ? usageOf(p, r) : null,
    user: b.user ?? null,
    presence_penalty: b.presence_penalty ?? 0.0,
    frequency_penalty: b.frequency_penalty ?? 0.0,
    kv_transfer_params: null,
    ec_transfer_params: null,
    input_messages: null,
    output_messages: null,
  };
}
