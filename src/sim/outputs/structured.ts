// Structured outputs: what a request constrains its answer to, read the way vLLM reads it, and one
// answer that obeys the constraint. Sources, as vLLM merges them: `structured_outputs` ({json, regex,
// choice, grammar, json_object, structural_tag}), overridden by `response_format` (json_schema,
// json_object; "text" is none), and the guided_* fields older releases took (guided_json,
// guided_regex, guided_choice, guided_grammar; recent vLLM ignores them, the sim still honours them).
// Grammars and structural tags have no generator here: the sim refuses them with a 400 naming itself.
import { HttpError } from "../../http/errors.js";
import { requestValidationError } from "../protocol/schemas.js";
import { dumpJson, generateInstance, SchemaUnsupported } from "./json-schema.js";
import { parseRegex, RegexUnsupported, type RegexPlan } from "./regex-gen.js";

export type Constraint =
  | { kind: "json"; schema: unknown }
  | { kind: "json_object" }
  | { kind: "choice"; choices: string[] }
  | { kind: "regex"; plan: RegexPlan };

/** The fields of a chat or completion body that carry constraints (validated loosely by zod). */
export interface ConstraintFields {
  response_format?: unknown;
  structured_outputs?: unknown;
  guided_json?: unknown;
  guided_regex?: unknown;
  guided_choice?: unknown;
  guided_grammar?: unknown;
}

const KINDS = ["json", "regex", "choice", "grammar", "json_object", "structural_tag"] as const;

/**
 * A refusal: where vLLM's request model refuses the field (a type or a missing key), its validation
 * 400 at the field's location, as the schema's are; vLLM's later checks keep BadRequestError.
 */
function bad(message: string, param: string | null = null): HttpError {
  const field = /^([\w.]+): (Input should|Field required)/.exec(message);
  if (field) return requestValidationError(`body.${field[1]}`, [message]);
  return new HttpError(400, message, param);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** vLLM's response_format, as an override of structured_outputs' fields (null: none). */
function responseFormatOverride(rf: unknown): Record<string, unknown> | null {
  if (rf === undefined || rf === null) return null;
  if (!isObject(rf)) throw bad("response_format: Input should be a valid dictionary", "response_format");
  const type = rf.type;
  if (type === "text") return null;
  if (type === "json_object") return { json_object: true };
  if (type === "json_schema") {
    const js = rf.json_schema;
    if (js === undefined || js === null)
      throw bad(
        "When response_format type is 'json_schema', the 'json_schema' field must be provided.",
        "response_format",
      );
    if (!isObject(js))
      throw bad("response_format.json_schema: Input should be a valid dictionary", "response_format");
    if (typeof js.name !== "string")
      throw bad("response_format.json_schema.name: Field required", "response_format");
    // an absent schema is json: None, i.e. no JSON constraint at all (what vLLM makes of it)
    return { json: js.schema ?? null };
  }
  if (type === "structural_tag") return { structural_tag: rf };
  throw bad(
    "response_format.type: Input should be 'text', 'json_object', 'json_schema' or 'structural_tag'",
    "response_format",
  );
}

/** The request's constraint, or null; vLLM's 400s for malformed or conflicting ones. */
export function constraintOf(body: ConstraintFields, namedTool: boolean): Constraint | null {
  let so: Record<string, unknown> | null = null;
  if (body.structured_outputs !== undefined && body.structured_outputs !== null) {
    if (!isObject(body.structured_outputs))
      throw bad("structured_outputs: Input should be a valid dictionary", "structured_outputs");
    so = { ...body.structured_outputs };
    const count = ["json", "regex", "choice"].filter((k) => so![k] !== undefined && so![k] !== null).length;
    if (count > 1)
      throw bad(
        "You can only use one kind of constraints for structured outputs ('json', 'regex' or 'choice').",
      );
    if (count > 0 && namedTool)
      throw bad("You can only either use constraints for structured outputs or tools, not both.");
  }
  // the guided_* fields of earlier releases, read as structured_outputs when that is absent
  if (so === null) {
    const legacy: Record<string, unknown> = {};
    if (body.guided_json !== undefined && body.guided_json !== null) legacy.json = body.guided_json;
    if (body.guided_regex !== undefined && body.guided_regex !== null) legacy.regex = body.guided_regex;
    if (body.guided_choice !== undefined && body.guided_choice !== null) legacy.choice = body.guided_choice;
    if (body.guided_grammar !== undefined && body.guided_grammar !== null)
      legacy.grammar = body.guided_grammar;
    if (Object.keys(legacy).length > 0) so = legacy;
  }
  const override = responseFormatOverride(body.response_format);
  if (override) so = { ...(so ?? {}), ...override };
  if (so === null) return null;
  const kinds = KINDS.filter((k) => so![k] !== undefined && so![k] !== null && so![k] !== false);
  if (kinds.length > 1)
    throw bad(
      `You can only use one kind of structured outputs constraint but multiple are specified: ${kinds.join(", ")}`,
    );
  // response_format json_schema without a schema: vLLM passes json=None, which constrains nothing
  if (kinds.length === 0) {
    if (override && "json" in override) return null;
    throw bad("You must use one kind of structured outputs constraint but none are specified.");
  }
  const kind = kinds[0]!;
  const v = so[kind];
  switch (kind) {
    case "json_object":
      return { kind: "json_object" };
    case "json": {
      let schema = v;
      if (typeof schema === "string") {
        try {
          schema = JSON.parse(schema);
        } catch {
          throw bad("structured_outputs.json: the JSON schema is not valid JSON", "structured_outputs");
        }
      }
      if (typeof schema !== "boolean" && !isObject(schema))
        throw bad("structured_outputs.json: a JSON schema is an object", "structured_outputs");
      return { kind: "json", schema };
    }
    case "choice": {
      if (Array.isArray(v) && v.length === 0) throw bad("Choice '[]' cannot be an empty list");
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
        throw bad(
          "structured_outputs.choice: Input should be a non-empty list of strings",
          "structured_outputs",
        );
      return { kind: "choice", choices: v as string[] };
    }
    case "regex": {
      if (typeof v !== "string")
        throw bad("structured_outputs.regex: Input should be a valid string", "structured_outputs");
      if (v.includes("\u0000"))
        throw bad("structured_outputs.regex must not contain a NUL character ('\\x00')");
      try {
        return { kind: "regex", plan: parseRegex(v) };
      } catch (err) {
        if (err instanceof RegexUnsupported)
          throw bad(`Failed to transform regex into a grammar: ${err.message}`);
        throw err;
      }
    }
    default:
      throw bad(
        `switchyard sim does not generate from a ${kind === "grammar" ? "grammar" : "structural tag"}; ` +
          "use a JSON schema, json_object, a regex or a choice",
        kind === "structural_tag" && override ? "response_format" : "structured_outputs",
      );
  }
}

/** One answer that obeys the constraint. */
export function constrainedText(c: Constraint, rand: () => number, words: readonly string[]): string {
  switch (c.kind) {
    case "choice":
      return c.choices[Math.floor(rand() * c.choices.length)]!;
    case "regex":
      return c.plan.sample(rand);
    case "json_object":
      return dumpJson(
        generateInstance(
          {
            type: "object",
            properties: {
              answer: { type: "string" },
              confidence: { type: "number", minimum: 0, maximum: 1 },
            },
            required: ["answer"],
          },
          { rand, words },
        ),
      );
    case "json":
      return schemaText(c.schema, rand, words);
  }
}

/** A JSON instance of `schema` as text; a schema the generator cannot serve is vLLM's 400. */
export function schemaText(schema: unknown, rand: () => number, words: readonly string[]): string {
  try {
    return dumpJson(generateInstance(schema, { rand, words }));
  } catch (err) {
    if (err instanceof SchemaUnsupported)
      throw bad(`switchyard sim cannot generate an instance of this JSON schema: ${err.message}`);
    throw err;
  }
}
