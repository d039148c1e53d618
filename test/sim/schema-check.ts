// A small JSON-schema checker for the sim's output tests: enough of the keywords the tests' schemas
// use (type, properties, required, additionalProperties false, enum, const, items, min/maxItems,
// min/maxLength, pattern, minimum/maximum, anyOf, $ref into $defs) to say whether an answer obeys its
// schema, written apart from the sim's generator so the two cannot share a mistake.
import type { Json } from "../helpers/json.js";

type Schema = Record<string, Json>;

/** The problems found (empty: the value validates). */
export function schemaProblems(schema: Schema, value: unknown, root: Schema = schema, at = "$"): string[] {
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.replace(/^#\/(\$defs|definitions)\//, "");
    return schemaProblems(root.$defs?.[name] ?? root.definitions?.[name], value, root, at);
  }
  const out: string[] = [];
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value))
    out.push(`${at}: not the const`);
  if (
    Array.isArray(schema.enum) &&
    !schema.enum.some((e: unknown) => JSON.stringify(e) === JSON.stringify(value))
  )
    out.push(`${at}: ${JSON.stringify(value)} not in enum`);
  if (Array.isArray(schema.anyOf)) {
    if (!schema.anyOf.some((s: Schema) => schemaProblems(s, value, root, at).length === 0))
      out.push(`${at}: matches no anyOf branch`);
  }
  const type = schema.type;
  const is = (t: string): boolean => {
    switch (t) {
      case "object":
        return typeof value === "object" && value !== null && !Array.isArray(value);
      case "array":
        return Array.isArray(value);
      case "string":
        return typeof value === "string";
      case "integer":
        return Number.isInteger(value);
      case "number":
        return typeof value === "number";
      case "boolean":
        return typeof value === "boolean";
      case "null":
        return value === null;
      default:
        return true;
    }
  };
  if (type !== undefined && !(Array.isArray(type) ? type.some(is) : is(type))) {
    out.push(`${at}: ${JSON.stringify(value)} is not ${JSON.stringify(type)}`);
    return out;
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const k of schema.required ?? []) if (!(k in obj)) out.push(`${at}: missing ${k}`);
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k];
      if (sub) out.push(...schemaProblems(sub, v, root, `${at}.${k}`));
      else if (schema.additionalProperties === false) out.push(`${at}: unexpected ${k}`);
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push(`${at}: under minItems`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push(`${at}: over maxItems`);
    if (schema.items)
      value.forEach((v, i) => out.push(...schemaProblems(schema.items, v, root, `${at}[${i}]`)));
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && [...value].length < schema.minLength)
      out.push(`${at}: under minLength`);
    if (schema.maxLength !== undefined && [...value].length > schema.maxLength)
      out.push(`${at}: over maxLength`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value))
      out.push(`${at}: not ${schema.pattern}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) out.push(`${at}: under minimum`);
    if (schema.maximum !== undefined && value > schema.maximum) out.push(`${at}: over maximum`);
  }
  return out;
}
