// Tool calls on /v1/chat/completions, shaped as vLLM answers them: `"required"` (vLLM's JSON-list
// form), a named function (its arguments, finish_reason "stop"), `"auto"` (needs
// --enable-auto-tool-choice and --tool-call-parser; the sim then decides from the seeded context
// between text and one Hermes-form call, and answers in text after a tool result) and `"none"`.
// Arguments are an instance of the tool's `parameters` schema (json-schema.ts); the request checks,
// their messages and the streaming deltas are vLLM's (ChatCompletionRequest.check_tool_usage). See
// docs/sim.md#tool-calls-structured-outputs-and-logprobs.
import { randomUUID } from "node:crypto";
import { HttpError } from "../../http/errors.js";
import { assistantMessage } from "../../http/vllm-answers.js";
import { requestValidationError } from "../protocol/schemas.js";
import type { FinishReason } from "../../engine/types.js";
import { schemaText } from "./structured.js";

export interface ToolDef {
  name: string;
  parameters: unknown;
}

export type ToolMode =
  { kind: "none" } | { kind: "auto" } | { kind: "required" } | { kind: "named"; name: string };

export interface ToolFields {
  tools?: unknown;
  tool_choice?: unknown;
}

const CORRECT_USAGE = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`';
export const AUTO_NEEDS_FLAGS =
  '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set';

/** A refusal; where vLLM's request model refuses a field, its validation 400 at the field's location. */
function bad(message: string, param: string | null): HttpError {
  const field = /^([\w.]+): (Input should|Field required)/.exec(message);
  if (field) return requestValidationError(`body.${field[1]}`, [message]);
  return new HttpError(400, message, param);
}

/**
 * vLLM's refusal of a tool_choice it cannot honour without a tool parser (its renderer's check, after
 * the model): "auto" without --enable-auto-tool-choice and a parser, "required" or a named function
 * without a parser. null: served.
 */
export function toolParserRefusal(
  mode: ToolMode,
  opts: { enableAutoToolChoice?: boolean; toolCallParser?: string },
): string | null {
  if (opts.toolCallParser !== undefined || mode.kind === "none") return null;
  if (mode.kind === "auto") return opts.enableAutoToolChoice ? null : AUTO_NEEDS_FLAGS;
  const desc = mode.kind === "named" ? `function "${mode.name}"` : '"required"';
  return `tool_choice=${desc} requires --tool-call-parser to be set`;
}

/** Python's str() of a JSON value, as vLLM's f-strings print request values. */
function py(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  return JSON.stringify(v).replaceAll('"', "'");
}

/**
 * The tools and how the answer must use them; vLLM's 400s for what it refuses (the one for "auto"
 * without the flags comes later, after the model is checked, as in vLLM). `autoServed`: the sim runs
 * with --enable-auto-tool-choice and a parser, where an explicit null tool_choice acts as "auto".
 */
export function toolModeOf(
  body: ToolFields & { [k: string]: unknown },
  autoServed: boolean,
): { mode: ToolMode; tools: ToolDef[] } {
  const has = (k: string) => Object.prototype.hasOwnProperty.call(body, k);
  const raw = body.tools;
  if (Array.isArray(raw) && raw.length === 0)
    throw bad(
      "`tools` must not be an empty array. Either provide at least one tool or omit the field entirely.",
      "tools",
    );
  if (raw !== undefined && raw !== null && !Array.isArray(raw))
    throw bad("tools: Input should be a valid list", "tools");
  const tools: ToolDef[] = [];
  (raw as unknown[] | null | undefined)?.forEach((t, i) => {
    const fn = typeof t === "object" && t !== null ? (t as Record<string, unknown>).function : undefined;
    const type = typeof t === "object" && t !== null ? (t as Record<string, unknown>).type : undefined;
    if (type !== undefined && type !== "function")
      throw bad(`tools.${i}.type: Input should be 'function'`, "tools");
    if (typeof fn !== "object" || fn === null) throw bad(`tools.${i}.function: Field required`, "tools");
    const f = fn as Record<string, unknown>;
    if (typeof f.name !== "string") throw bad(`tools.${i}.function.name: Field required`, "tools");
    if (
      f.parameters !== undefined &&
      f.parameters !== null &&
      (typeof f.parameters !== "object" || Array.isArray(f.parameters))
    )
      throw bad(`tools.${i}.function.parameters: Input should be a valid dictionary`, "tools");
    tools.push({ name: f.name, parameters: f.parameters ?? null });
  });
  // no tool_choice with tools means "auto"; without tools, vLLM's default is "none"
  const choice = has("tool_choice") ? body.tool_choice : tools.length > 0 ? "auto" : "none";
  // vLLM skips its checks for a null tool_choice, and its serving code reads it as auto where auto is on
  if (choice === null) return { mode: { kind: tools.length > 0 && autoServed ? "auto" : "none" }, tools };
  if (choice === "none") return { mode: { kind: "none" }, tools };
  if (raw === undefined || raw === null)
    throw bad("When using `tool_choice`, `tools` must be set.", "tool_choice");
  if (choice === "auto") return { mode: { kind: "auto" }, tools };
  if (choice === "required") return { mode: { kind: "required" }, tools };
  if (typeof choice !== "object" || Array.isArray(choice))
    throw bad(
      `Invalid value for \`tool_choice\`: ${py(choice)}! Only named tools, "none", "auto" or "required" are supported.`,
      "tool_choice",
    );
  const fn = (choice as Record<string, unknown>).function;
  if (typeof fn !== "object" || fn === null || Array.isArray(fn))
    throw bad(
      `Invalid value for \`function\`: \`${py(fn)}\` in \`tool_choice\`! ${CORRECT_USAGE}`,
      "tool_choice.function",
    );
  if (!("name" in fn))
    throw bad(
      `Expected field \`name\` in \`function\` in \`tool_choice\`! ${CORRECT_USAGE}`,
      "tool_choice.function.name",
    );
  const name = (fn as Record<string, unknown>).name;
  if (typeof name !== "string" || name.length === 0)
    throw bad(
      `Invalid \`name\` in \`function\`: \`${py(name)}\` in \`tool_choice\`! ${CORRECT_USAGE}`,
      "tool_choice.function.name",
    );
  if (!tools.some((t) => t.name === name))
    throw bad(
      "The tool specified in `tool_choice` does not match any of the specified `tools`",
      "tool_choice",
    );
  return { mode: { kind: "named", name }, tools };
}

export interface PlannedCall {
  id: string;
  name: string;
  /** the arguments as vLLM returns them (JSON text) */
  arguments: string;
  /** where the arguments lie in the raw output text */
  argStart: number;
  argEnd: number;
}

/** A tool-call answer: the raw text the "model" writes and the calls vLLM parses out of it. */
export interface ToolCallPlan {
  mode: "required" | "named" | "auto";
  text: string;
  calls: PlannedCall[];
}

export function toolCallId(): string {
  return `chatcmpl-tool-${randomUUID().replaceAll("-", "")}`;
}

/** An object with no properties when a tool has no parameters schema (vLLM's default). */
const NO_PARAMETERS = { type: "object", properties: {} };

/** Whether an "auto" answer calls a tool: after a tool result it answers; otherwise 3 in 4 call. */
export function autoCallsTool(lastRole: string | undefined, rand: () => number): boolean {
  if (lastRole === "tool") return false;
  return rand() < 0.75;
}

/** The tool-call answer of a required, named or auto (calling) choice. */
export function planToolCall(
  mode: ToolMode,
  tools: ToolDef[],
  rand: () => number,
  words: readonly string[],
): ToolCallPlan {
  const tool =
    mode.kind === "named"
      ? tools.find((t) => t.name === mode.name)!
      : tools[Math.floor(rand() * tools.length)]!;
  const args = schemaText(tool.parameters ?? NO_PARAMETERS, rand, words);
  const id = toolCallId();
  if (mode.kind === "named") {
    return {
      mode: "named",
      text: args,
      calls: [{ id, name: tool.name, arguments: args, argStart: 0, argEnd: args.length }],
    };
  }
  const key = mode.kind === "required" ? "parameters" : "arguments";
  const head = `{"name": ${JSON.stringify(tool.name)}, "${key}": `;
  const [open, close] = mode.kind === "required" ? ["[", "}]"] : ["<tool_call>\n", "}\n</tool_call>"];
  const text = open + head + args + close;
  const argStart = open.length + head.length;
  return {
    mode: mode.kind === "required" ? "required" : "auto",
    text,
    calls: [{ id, name: tool.name, arguments: args, argStart, argEnd: argStart + args.length }],
  };
}

/**
 * The streamed deltas of a tool-call answer: fed the text of each event in order, it answers the
 * `delta` object's JSON, or null where vLLM's parser has nothing to send yet.
 */
export class ToolStream {
  private pos = 0;
  private readonly announced: boolean[];

  constructor(private readonly plan: ToolCallPlan) {
    this.announced = plan.calls.map(() => false);
  }

  delta(piece: string): string | null {
    const a = this.pos;
    const b = a + piece.length;
    this.pos = b;
    const parts: string[] = [];
    this.plan.calls.forEach((call, j) => {
      if (b <= call.argStart) return;
      const args = this.plan.text.slice(Math.max(a, call.argStart), Math.min(b, call.argEnd));
      // the named form's index is always 0; the list forms count their calls
      const index = this.plan.mode === "named" ? 0 : j;
      if (!this.announced[j]) {
        this.announced[j] = true;
        parts.push(
          `{"id":"${call.id}","type":"function","index":${index},"function":{"name":${JSON.stringify(call.name)},"arguments":${JSON.stringify(args)}}}`,
        );
      } else if (args !== "") {
        // vLLM's required-choice deltas say name: null; the others leave it out
        const name = this.plan.mode === "required" ? `"name":null,` : "";
        parts.push(`{"index":${index},"function":{${name}"arguments":${JSON.stringify(args)}}}`);
      }
    });
    return parts.length === 0 ? null : `{"tool_calls":[${parts.join(",")}]}`;
  }
}

/**
 * The non-streamed message and finish_reason of a tool-call answer, given the text the engine let it
 * write: whole (finish "stop") or cut at max_tokens ("length").
 */
export function toolAnswer(
  plan: ToolCallPlan,
  text: string,
  finish: FinishReason | null,
): { message: Record<string, unknown>; finishReason: string | null } {
  const whole = text === plan.text;
  const calls = plan.calls.map((c) => ({
    id: c.id,
    type: "function",
    function: { name: c.name, arguments: c.arguments },
  }));
  if (plan.mode === "named") {
    // vLLM hands the named function whatever the model wrote, cut short or not
    const message = assistantMessage("");
    message.tool_calls = [{ ...calls[0]!, function: { name: plan.calls[0]!.name, arguments: text } }];
    return { message, finishReason: finish };
  }
  if (!whole) return { message: assistantMessage(text), finishReason: finish };
  // vLLM: content "" beside a required call; a parser's auto call leaves no content (null)
  const message = assistantMessage("");
  if (plan.mode === "auto") message.content = null;
  message.tool_calls = calls;
  return { message, finishReason: finish === "stop" ? "tool_calls" : finish };
}

/** The finish_reason literal a streamed tool-call answer ends with, where it is not the engine's. */
export function toolFinishLiteral(plan: ToolCallPlan, finish: FinishReason): string | null {
  return finish === "stop" && plan.mode !== "named" ? '"tool_calls"' : null;
}
