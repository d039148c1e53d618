// Instances of a JSON schema, for structured outputs (`response_format` json_schema, the `json`
// constraint) and tool-call arguments. A real vLLM lets the model write the JSON under a grammar; the
// sim writes one valid instance itself, with the request's seeded PRNG, so the same request gives
// the same JSON and `usage.completion_tokens` counts real tokens of it.
//
// Covered: type (one or a list), properties and required, additionalProperties as a map's values,
// enum, const, arrays (items, prefixItems, tuple-form items, minItems/maxItems, uniqueItems), strings
// (minLength/maxLength, pattern, common formats), integers and numbers (minimum, maximum, exclusive
// bounds in both drafts, multipleOf), booleans, null, anyOf/oneOf (the first branch), allOf (merged),
// and $ref into the schema itself (`#`, `#/$defs/...`, `#/definitions/...`). The output is bounded:
// nesting past MAX_DEPTH and anything past MAX_VALUES values takes the smallest valid form.
//
// dumpJson writes the value as Python's json.dumps does (", " and ": " separators, non-ASCII kept),
// which is how vLLM turns a parsed tool call's parameters back into its `arguments` string.
import { parseRegex, RegexUnsupported } from "./regex-gen.js";
import { UnsupportedError } from "../../errors/index.js";

export class SchemaUnsupported extends UnsupportedError {
  override name = "SchemaUnsupported";
}

type Schema = Record<string, unknown>;

const MAX_DEPTH = 12;
const MAX_VALUES = 1000;
/** items drawn past an array's minItems, at most */
const ARRAY_EXTRA = 2;
const DEFAULT_STRING_WORDS = 4;

/** Python json.dumps(value, ensure_ascii=False): the spacing vLLM's tool-call arguments carry. */
export function dumpJson(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (Array.isArray(v)) return "[" + v.map(dumpJson).join(", ") + "]";
  const parts: string[] = [];
  for (const [k, x] of Object.entries(v as Record<string, unknown>))
    parts.push(JSON.stringify(k) + ": " + dumpJson(x));
  return "{" + parts.join(", ") + "}";
}

export interface InstanceOptions {
  /** uniform [0, 1) */
  rand: () => number;
  /** words strings are made of (the sim's output vocabulary) */
  words: readonly string[];
}

/** One instance of `schema` (a parsed JSON schema object, or true). */
export function generateInstance(schema: unknown, o: InstanceOptions): unknown {
  return new Generator(schema, o).value(schema, 0);
}

class Generator {
  private values = 0;
  constructor(
    private readonly root: unknown,
    private readonly o: InstanceOptions,
  ) {}

  private get lean(): boolean {
    return this.values >= MAX_VALUES;
  }

  value(schema: unknown, depth: number): unknown {
    this.values++;
    if (schema === true || schema === undefined || schema === null) return this.words(1, 3);
    if (schema === false) throw new SchemaUnsupported("the schema `false` has no instance");
    if (typeof schema !== "object" || Array.isArray(schema))
      throw new SchemaUnsupported("a schema must be an object or a boolean");
    const s = schema as Schema;
    if (typeof s.$ref === "string") {
      if (depth > MAX_DEPTH * 2) throw new SchemaUnsupported(`$ref ${s.$ref} recurses without end`);
      const { $ref, ...rest } = s;
      const target = this.resolve($ref as string);
      // siblings of $ref (2019-09+) narrow it: merge them over the target
      const merged =
        Object.keys(rest).length > 0 && typeof target === "object" && target !== null
          ? { ...(target as Schema), ...rest }
          : target;
      return this.value(merged, depth + 1);
    }
    if ("const" in s) return s.const;
    if (Array.isArray(s.enum)) {
      if (s.enum.length === 0) throw new SchemaUnsupported("an empty enum has no instance");
      return s.enum[this.index(s.enum.length)];
    }
    for (const key of ["anyOf", "oneOf"] as const) {
      const branches = s[key];
      if (Array.isArray(branches) && branches.length > 0) {
        const { [key]: _drop, ...rest } = s;
        const first = branches[0];
        const merged =
          typeof first === "object" && first !== null && Object.keys(rest).length > 0
            ? mergeSchemas(rest, first as Schema)
            : first;
        return this.value(merged, depth + 1);
      }
    }
    if (Array.isArray(s.allOf) && s.allOf.length > 0) {
      const { allOf, ...rest } = s;
      let merged: Schema = rest;
      for (const part of allOf) {
        const p =
          typeof part === "object" && part !== null && typeof (part as Schema).$ref === "string"
            ? (this.resolve((part as Schema).$ref as string) as Schema)
            : (part as Schema);
        if (p && typeof p === "object") merged = mergeSchemas(merged, p);
      }
      return this.value(merged, depth + 1);
    }
    switch (typeOf(s)) {
      case "object":
        return this.object(s, depth);
      case "array":
        return this.array(s, depth);
      case "integer":
        return this.integer(s);
      case "number":
        return this.number(s);
      case "boolean":
        return this.o.rand() < 0.5;
      case "null":
        return null;
      default:
        return this.string(s);
    }
  }

  private resolve(ref: string): unknown {
    if (!ref.startsWith("#"))
      throw new SchemaUnsupported(`$ref ${ref}: only references into the schema itself`);
    let node: unknown = this.root;
    const path = ref.slice(1);
    if (path === "" || path === "/") return node;
    for (const raw of path.split("/").slice(1)) {
      const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
      if (node === null || typeof node !== "object" || !(key in (node as Schema)))
        throw new SchemaUnsupported(`$ref ${ref} points nowhere`);
      node = (node as Schema)[key];
    }
    return node;
  }

  private index(n: number): number {
    return Math.floor(this.o.rand() * n);
  }

  private object(s: Schema, depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const props = (s.properties && typeof s.properties === "object" ? s.properties : {}) as Schema;
    const required = new Set(Array.isArray(s.required) ? (s.required as unknown[]).map(String) : []);
    const deep = depth >= MAX_DEPTH;
    for (const [key, sub] of Object.entries(props)) {
      // past the depth or value budget only what is required, so the output stays bounded
      if ((deep || this.lean) && !required.has(key)) continue;
      out[key] = this.value(sub, depth + 1);
    }
    const additional = s.additionalProperties;
    for (const key of required) {
      if (key in out) continue;
      out[key] = this.value(typeof additional === "object" ? additional : true, depth + 1);
    }
    const minProps = typeof s.minProperties === "number" ? s.minProperties : 0;
    const wantsMap = Object.keys(props).length === 0 && typeof additional === "object" && additional !== null;
    let k = 1;
    while (
      (Object.keys(out).length < minProps || (wantsMap && Object.keys(out).length === 0 && !deep)) &&
      k < 1000
    ) {
      const key = `key${k++}`;
      if (key in out) continue;
      out[key] = this.value(additional === false ? true : (additional ?? true), depth + 1);
    }
    return out;
  }

  private array(s: Schema, depth: number): unknown[] {
    const prefix = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : [];
    const rest = Array.isArray(s.items) ? (s.additionalItems ?? true) : (s.items ?? true);
    const min = Math.max(0, num(s.minItems) ?? 0);
    const max = num(s.maxItems) ?? Infinity;
    let count: number;
    if (depth >= MAX_DEPTH || this.lean) count = min;
    else {
      const lo = Math.min(max, Math.max(min, 1));
      count = lo + this.index(Math.min(max - lo, ARRAY_EXTRA) + 1);
    }
    if (rest === false) count = Math.min(count, prefix.length);
    const out: unknown[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < count; i++) {
      const sub = i < prefix.length ? prefix[i] : rest;
      let v = this.value(sub, depth + 1);
      if (s.uniqueItems === true) {
        // a few redraws for a distinct item; an enum smaller than minItems cannot give one
        for (let tries = 0; seen.has(dumpJson(v)) && tries < 8; tries++) v = this.value(sub, depth + 1);
        seen.add(dumpJson(v));
      }
      out.push(v);
    }
    return out;
  }

  private bounds(s: Schema, integer: boolean): [number, number] {
    let lo = num(s.minimum) ?? -Infinity;
    let hi = num(s.maximum) ?? Infinity;
    const step = integer ? 1 : 0.01;
    // draft 6+: numeric exclusive bounds; draft 4: boolean flags on minimum/maximum
    if (typeof s.exclusiveMinimum === "number") lo = Math.max(lo, s.exclusiveMinimum + step);
    else if (s.exclusiveMinimum === true) lo += step;
    if (typeof s.exclusiveMaximum === "number") hi = Math.min(hi, s.exclusiveMaximum - step);
    else if (s.exclusiveMaximum === true) hi -= step;
    if (lo === -Infinity && hi === Infinity) [lo, hi] = [0, 100];
    else if (lo === -Infinity) lo = hi - 100;
    else if (hi === Infinity) hi = lo + 100;
    if (hi < lo) throw new SchemaUnsupported("a number range with no values in it");
    return [lo, hi];
  }

  private integer(s: Schema): number {
    let [lo, hi] = this.bounds(s, true);
    lo = Math.ceil(lo);
    hi = Math.floor(hi);
    const mult = num(s.multipleOf);
    if (mult !== undefined && mult > 0) {
      const first = Math.ceil(lo / mult);
      const last = Math.floor(hi / mult);
      if (last < first) throw new SchemaUnsupported("no multiple of multipleOf within the bounds");
      return (first + this.index(last - first + 1)) * mult;
    }
    if (hi < lo) throw new SchemaUnsupported("an integer range with no values in it");
    return lo + this.index(hi - lo + 1);
  }

  private number(s: Schema): number {
    const [lo, hi] = this.bounds(s, false);
    const mult = num(s.multipleOf);
    if (mult !== undefined && mult > 0) {
      const first = Math.ceil(lo / mult);
      const last = Math.floor(hi / mult);
      if (last < first) throw new SchemaUnsupported("no multiple of multipleOf within the bounds");
      return Number(((first + this.index(last - first + 1)) * mult).toPrecision(12));
    }
    const v = Math.round((lo + this.o.rand() * (hi - lo)) * 100) / 100;
    return Math.min(hi, Math.max(lo, v));
  }

  private string(s: Schema): string {
    const min = Math.max(0, num(s.minLength) ?? 0);
    const max = num(s.maxLength) ?? Infinity;
    let v: string;
    const fmt = typeof s.format === "string" ? FORMATS[s.format] : undefined;
    if (typeof s.pattern === "string") {
      try {
        v = parseRegex(s.pattern).sample(this.o.rand);
      } catch (err) {
        if (err instanceof RegexUnsupported)
          throw new SchemaUnsupported(`pattern ${s.pattern}: ${err.message}`);
        throw err;
      }
      // a pattern decides the string: lengths are the pattern's business
      return v;
    }
    if (fmt) v = fmt(this.o.rand);
    else v = this.words(1, max < 12 ? 1 : DEFAULT_STRING_WORDS);
    if ([...v].length > max) v = [...v].slice(0, max).join("");
    while ([...v].length < min) v += min - [...v].length >= 6 ? " " + this.words(1, 1) : "x";
    if ([...v].length > max) v = [...v].slice(0, max).join("");
    return v;
  }

  private words(lo: number, hi: number): string {
    const w = this.o.words;
    const n = lo + this.index(hi - lo + 1);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(w.length > 0 ? w[this.index(w.length)]! : "word");
    return parts.join(" ");
  }
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function typeOf(s: Schema): string {
  const t = s.type;
  if (typeof t === "string") return t;
  if (Array.isArray(t) && t.length > 0) {
    const firstNonNull = t.find((x) => x !== "null");
    return String(firstNonNull ?? t[0]);
  }
  if ("properties" in s || "required" in s || "additionalProperties" in s) return "object";
  if ("items" in s || "prefixItems" in s || "minItems" in s) return "array";
  if ("minimum" in s || "maximum" in s || "multipleOf" in s) return "number";
  return "string";
}

/** allOf and sibling keys: properties and required united, other keys from the later part. */
function mergeSchemas(a: Schema, b: Schema): Schema {
  const out: Schema = { ...a, ...b };
  if (a.properties || b.properties)
    out.properties = { ...((a.properties as Schema) ?? {}), ...((b.properties as Schema) ?? {}) };
  if (Array.isArray(a.required) || Array.isArray(b.required))
    out.required = [...new Set([...((a.required as string[]) ?? []), ...((b.required as string[]) ?? [])])];
  return out;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** Common `format`s, drawn plausibly. */
const FORMATS: Record<string, (rand: () => number) => string> = {
  "date-time": (r) => `${date(r)}T${time(r)}Z`,
  date: (r) => date(r),
  time: (r) => `${time(r)}Z`,
  email: (r) => `user${Math.floor(r() * 1000)}@example.com`,
  uri: (r) => `https://example.com/item/${Math.floor(r() * 10000)}`,
  url: (r) => `https://example.com/item/${Math.floor(r() * 10000)}`,
  hostname: (r) => `host${Math.floor(r() * 100)}.example.com`,
  ipv4: (r) => [0, 0, 0, 0].map(() => Math.floor(r() * 256)).join("."),
  ipv6: (r) => Array.from({ length: 8 }, () => Math.floor(r() * 65536).toString(16)).join(":"),
  uuid: (r) => {
    const hex = Array.from({ length: 32 }, () => Math.floor(r() * 16).toString(16)).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
  },
};

function date(r: () => number): string {
  return `${2020 + Math.floor(r() * 6)}-${pad(1 + Math.floor(r() * 12))}-${pad(1 + Math.floor(r() * 28))}`;
}

function time(r: () => number): string {
  return `${pad(Math.floor(r() * 24))}:${pad(Math.floor(r() * 60))}:${pad(Math.floor(r() * 60))}`;
}
