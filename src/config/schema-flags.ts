// Command-line flags declared on a zod config schema, so that an option is said once: its field names
// the flag and its help, and the schema gives the flag's type, bounds and default. A command reads its
// flags from the schema (`schemaFlags`), parses argv with them, and turns the flags given into the
// partial config they stand for (`configFromFlags`), which is layered over the config file.
import { z } from "zod";
import { CliError, type FlagSpec, type FlagSpecs, type FlagValues } from "./args.js";
import { InvariantError } from "../errors/index.js";

export interface FlagMeta {
  /** the flag, without its dashes */
  flag: string;
  help: string;
  /** how the value is written when the field's type does not say: a duration ("30s") or a size ("16MiB") */
  kind?: "duration" | "size";
  /** a boolean that also takes `--no-<flag>` */
  negatable?: boolean;
  /** the field's value from what the flag was given (a list flag's entries, say), where it is not the value itself */
  toConfig?: (value: string | number | boolean | string[]) => unknown;
  /** sibling fields the flag sets too, unless a flag given sets them (`--discovery-file` means mode file) */
  implies?: Record<string, unknown>;
  /** another flag this one is given with (a part of what that one turns on) */
  needs?: string;
  /** the environment variable read when the flag is not given (a key kept off the command line) */
  env?: string;
  /** an empty environment variable is a value (Python's os.getenv), not unset */
  envKeepsEmpty?: boolean;
}

/** The flags a schema declares: each field registered here with the flag it is set by. */
export const cliFlags = z.registry<FlagMeta>();

/**
 * `schema`, set by the flag `meta` names on the command line: a copy of it, so that a schema shared by
 * several fields (an endpoint's format, say) gives its flag to this field alone.
 */
export function flag<T extends z.ZodType>(schema: T, meta: FlagMeta): T {
  const copy = schema.clone() as T;
  cliFlags.add(copy, meta);
  return copy;
}

/** One flag found on a schema: where its value goes, and its spec for the parser and the help. */
export interface SchemaFlag {
  name: string;
  path: (string | number)[];
  spec: FlagSpec;
  meta: FlagMeta;
}

interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  defaultValue?: unknown;
  options?: readonly z.ZodType[];
}

const def = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;
const WRAPPERS = new Set(["default", "prefault", "optional", "nullable", "readonly", "catch", "nonoptional"]);

/** `ms` as people write it: 1800000 → 30m */
function durationText(ms: number): string {
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const)
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** `bytes` as people write them: 16777216 → 16MiB */
function sizeText(bytes: number): string {
  for (const [unit, size] of [
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10],
  ] as const)
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

/** The parser's spec for a field: its type, bounds and default read from the schema. */
function specOf(field: z.ZodType, meta: FlagMeta, path: (string | number)[]): FlagSpec {
  let node = field;
  let fallback: unknown;
  while (WRAPPERS.has(def(node).type)) {
    const d = def(node);
    if (d.type === "default" && fallback === undefined) fallback = d.defaultValue;
    node = d.innerType!;
  }
  const where = `--${meta.flag} (${path.join(".")})`;
  const spec: FlagSpec = { type: "string", help: meta.help };
  if (meta.negatable) spec.negatable = true;
  if (meta.kind === "size") spec.type = "size";
  else if (meta.kind === "duration") spec.type = "string";
  else if (meta.toConfig)
    spec.type = def(node).type === "array" || def(node).type === "record" ? "list" : "string";
  else {
    const type = def(node).type;
    if (type === "number") {
      const n = node as unknown as z.ZodNumber;
      spec.type = n.isInt ? "int" : "number";
      if (n.minValue !== null && Number.isFinite(n.minValue)) spec.min = n.minValue;
      if (n.maxValue !== null && Number.isFinite(n.maxValue)) spec.max = n.maxValue;
    } else if (type === "boolean") spec.type = "boolean";
    else if (type === "enum") spec.choices = (node as unknown as z.ZodEnum).options as string[];
    else if (type === "array") spec.type = "list";
    else if (type !== "string")
      throw new InvariantError(`${where}: a ${type} field needs a kind or toConfig`);
  }
  const shown = typeof fallback === "function" ? (fallback as () => unknown)() : fallback;
  if (shown !== undefined && !(Array.isArray(shown) && shown.length === 0)) {
    if (meta.kind === "duration" && typeof shown === "number") spec.default = durationText(shown);
    else if (meta.kind === "size" && typeof shown === "number") spec.default = sizeText(shown);
    else if (["string", "number", "boolean"].includes(typeof shown) || Array.isArray(shown))
      spec.default = shown as FlagSpec["default"];
  }
  return spec;
}

/** Every flag `schema` declares, in the schema's order. */
export function schemaFlags(schema: z.ZodType): SchemaFlag[] {
  const out: SchemaFlag[] = [];
  const seen = new Set<string>();
  const walk = (node: z.ZodType, path: (string | number)[]) => {
    const meta = cliFlags.get(node);
    if (meta) {
      if (seen.has(meta.flag)) throw new InvariantError(`--${meta.flag} is declared twice`);
      seen.add(meta.flag);
      out.push({ name: meta.flag, path, spec: specOf(node, meta, path), meta });
      return;
    }
    const d = def(node);
    if (WRAPPERS.has(d.type)) walk(d.innerType!, path);
    else if (d.type === "pipe") {
      walk(d.in!, path);
      walk(d.out!, path);
    } else if (d.type === "object") for (const [k, v] of Object.entries(d.shape!)) walk(v, [...path, k]);
    else if (d.type === "array") walk(d.element!, [...path, 0]);
  };
  walk(schema, []);
  return out;
}

export function flagSpecsOf(flags: readonly SchemaFlag[]): FlagSpecs {
  const specs: FlagSpecs = {};
  for (const f of flags) specs[f.name] = f.spec;
  return specs;
}

function setAt(
  into: Record<string | number, unknown>,
  path: (string | number)[],
  value: unknown,
  keep: boolean,
) {
  let at = into;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    at[key] ??= typeof path[i + 1] === "number" ? [] : {};
    at = at[key] as Record<string | number, unknown>;
  }
  const last = path.at(-1)!;
  if (!(keep && at[last] !== undefined)) at[last] = value;
}

/** The flags given on the command line as the partial config they stand for (the rest stays the file's). */
export function configFromFlags(
  flags: readonly SchemaFlag[],
  values: FlagValues,
  given: ReadonlySet<string>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const chosen = flags.filter((f) => given.has(f.name));
  for (const f of chosen)
    if (f.meta.needs !== undefined && !given.has(f.meta.needs))
      throw new CliError(`--${f.name} needs --${f.meta.needs}`);
  for (const f of chosen) {
    const v = values[f.name]!;
    let value: unknown = v;
    if (f.meta.toConfig) {
      try {
        value = f.meta.toConfig(v);
      } catch (err) {
        throw new CliError(`--${f.name}: ${(err as Error).message}`);
      }
    }
    setAt(out, f.path, value, false);
  }
  for (const f of chosen)
    for (const [key, value] of Object.entries(f.meta.implies ?? {}))
      setAt(out, [...f.path.slice(0, -1), key], value, true);
  return out;
}
