// A small flag parser shared by every subcommand, so flags behave the same everywhere:
// `--flag value`, `--flag=value`, `--no-flag` for booleans, repeatable list flags, and
// numbers validated at the boundary with the flag named in the error.
import { InvalidConfigError } from "../errors/index.js";

export class CliError extends InvalidConfigError {}

export type FlagType = "string" | "number" | "int" | "boolean" | "list" | "size";

export interface FlagSpec {
  type: FlagType;
  default?: string | number | boolean | string[];
  help: string;
  /** for booleans: also accept `--no-<name>` (vLLM style: --enable-prefix-caching / --no-enable-prefix-caching) */
  negatable?: boolean;
  min?: number;
  max?: number;
  /** for strings: the accepted values */
  choices?: readonly string[];
}

export type FlagSpecs = Record<string, FlagSpec>;
export type FlagValues = Record<string, string | number | boolean | string[] | undefined>;

export interface Parsed {
  flags: FlagValues;
  positionals: string[];
  /** flags given explicitly on the command line (to tell defaults from choices) */
  given: Set<string>;
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Parses `16GiB`, `512MiB`, `1.5GB`, `1024` (bytes). */
export function parseSize(text: string, what = "size"): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new CliError(`${what}: cannot read '${text}' as a size (examples: 512MiB, 16GiB, 2GB, 1048576)`);
  }
  return Math.round(Number(m[1]) * unit);
}

function coerce(name: string, spec: FlagSpec, raw: string): string | number | boolean {
  switch (spec.type) {
    case "number":
    case "int": {
      const v = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(v) || (spec.type === "int" && !Number.isInteger(v))) {
        throw new CliError(
          `--${name}: expected ${spec.type === "int" ? "an integer" : "a number"}, got '${raw}'`,
        );
      }
      if (spec.min !== undefined && v < spec.min)
        throw new CliError(`--${name}: must be >= ${spec.min}, got ${raw}`);
      if (spec.max !== undefined && v > spec.max)
        throw new CliError(`--${name}: must be <= ${spec.max}, got ${raw}`);
      return v;
    }
    case "size":
      return parseSize(raw, `--${name}`);
    case "boolean": {
      const l = raw.toLowerCase();
      if (["true", "1", "yes", "on"].includes(l)) return true;
      if (["false", "0", "no", "off"].includes(l)) return false;
      throw new CliError(`--${name}: expected true or false, got '${raw}'`);
    }
    default:
      if (spec.choices && !spec.choices.includes(raw)) {
        throw new CliError(`--${name}: expected ${spec.choices.join(" or ")}, got '${raw}'`);
      }
      return raw;
  }
}

export function parseFlags(argv: string[], specs: FlagSpecs): Parsed {
  const flags: FlagValues = {};
  const given = new Set<string>();
  const positionals: string[] = [];
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.default === undefined) {
      if (spec.type === "list") flags[name] = [];
    } else if (Array.isArray(spec.default)) flags[name] = [...spec.default];
    // size defaults are written as text ("16GiB") but reach the command as bytes, like typed values
    else if (spec.type === "size" && typeof spec.default === "string")
      flags[name] = parseSize(spec.default, `--${name}`);
    else flags[name] = spec.default;
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("--") || arg === "--") {
      positionals.push(arg);
      continue;
    }
    let name = arg.slice(2);
    let inline: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    // vLLM accepts both dashes and underscores in flag names.
    name = name.replace(/_/g, "-");
    const spec = specs[name];
    if (!spec && name.startsWith("no-")) {
      const base = name.slice(3);
      const s = specs[base];
      if (s && s.type === "boolean" && s.negatable !== false) {
        if (inline !== undefined) throw new CliError(`--${name} takes no value`);
        flags[base] = false;
        given.add(base);
        continue;
      }
    }
    if (!spec) {
      throw new CliError(`unknown flag --${name} (see --help)`);
    }
    if (spec.type === "boolean" && inline === undefined) {
      // `--flag` alone means true; `--flag false` is accepted when the next token is a boolean word.
      const next = argv[i + 1];
      if (next !== undefined && /^(true|false)$/i.test(next)) {
        flags[name] = coerce(name, spec, next);
        i++;
      } else flags[name] = true;
      given.add(name);
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      raw = argv[++i];
      if (raw === undefined) throw new CliError(`--${name} needs a value`);
    }
    if (spec.type === "list") {
      (flags[name] as string[]).push(raw);
    } else {
      flags[name] = coerce(name, spec, raw);
    }
    given.add(name);
  }
  return { flags, positionals, given };
}

export function helpText(usageLine: string, specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const neg = s.type === "boolean" && s.negatable ? `, --no-${name}` : "";
    const def =
      s.default !== undefined && !(Array.isArray(s.default) && s.default.length === 0)
        ? ` (default: ${String(s.default)})`
        : "";
    return `  --${name}${neg}${s.type === "boolean" ? "" : ` <${s.type}>`}\n      ${s.help}${def}`;
  });
  return `${usageLine}\n\noptions:\n${rows.join("\n")}`;
}

export function wantsHelp(argv: string[]): boolean {
  return argv.includes("--help") || argv.includes("-h");
}

/**
 * The start of every subcommand: prints help and returns null for --help/-h, else parses the flags and
 * refuses positional arguments beyond `maxPositionals`.
 */
export function parseCommand(
  argv: string[],
  usageLine: string,
  specs: FlagSpecs,
  opts: { maxPositionals?: number } = {},
): Parsed | null {
  if (wantsHelp(argv)) {
    console.log(helpText(usageLine, specs));
    return null;
  }
  const parsed = parseFlags(argv, specs);
  const max = opts.maxPositionals ?? 0;
  if (parsed.positionals.length > max) throw new CliError(`unexpected argument '${parsed.positionals[max]}'`);
  return parsed;
}
