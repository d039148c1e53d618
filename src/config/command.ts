// A command's options said once: a zod schema whose fields declare their flags (`flag(...)`), so the
// flag's type, bounds, default and help, and the environment variable it falls back to, live on one
// field. Every command but the router (which layers its flags over a config file) starts here: help
// for --help, else the flags parsed from the schema, with the environment read where a field names it.
import type { z } from "zod";
import { CliError, helpText, parseFlags, wantsHelp, type FlagSpecs, type Parsed } from "./args.js";
import { flagSpecsOf, schemaFlags, type SchemaFlag } from "./schema-flags.js";

/** The flags of a command's schema, ready for the parser and the help. */
export interface CommandFlags {
  flags: readonly SchemaFlag[];
  specs: FlagSpecs;
}

/** Reads `schema`'s flags once (at module load: a flag declared twice is found before any parse). */
export function commandFlags(schema: z.ZodType): CommandFlags {
  const flags = schemaFlags(schema);
  return { flags, specs: flagSpecsOf(flags) };
}

export interface CommandParse {
  /** positional arguments beyond these are refused (0 unless given) */
  maxPositionals?: number;
  /** the text of the error for the first positional too many (default: `unexpected argument '<arg>'`) */
  tooMany?: (positionals: string[]) => string;
  /** where fields' environment variables are read (process.env unless given) */
  env?: NodeJS.ProcessEnv;
}

/** The value a field's environment variable gives, checked as the flag's would be. */
function fromEnv(f: SchemaFlag, raw: string): Parsed["flags"][string] {
  const parsed = parseFlags([`--${f.name}=${raw}`], { [f.name]: f.spec });
  return parsed.flags[f.name];
}

/** `parsed`, with each field's environment variable standing in for its flag where it was not given. */
export function withEnv(command: CommandFlags, parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Parsed {
  for (const f of command.flags) {
    const name = f.meta.env;
    const raw = name === undefined ? undefined : env[name];
    const set = raw !== undefined && (raw !== "" || f.meta.envKeepsEmpty === true);
    if (set && !parsed.given.has(f.name)) parsed.flags[f.name] = fromEnv(f, raw);
  }
  return parsed;
}

/**
 * The start of a command: prints help and returns null for --help/-h, else parses argv with the
 * schema's flags; a field's environment variable stands in for a flag not given (never marked given).
 */
export function parseCommandFlags(
  argv: string[],
  usageLine: string,
  command: CommandFlags,
  opts: CommandParse = {},
): Parsed | null {
  if (wantsHelp(argv)) {
    console.log(helpText(usageLine, command.specs));
    return null;
  }
  const parsed = withEnv(command, parseFlags(argv, command.specs), opts.env);
  const max = opts.maxPositionals ?? 0;
  if (parsed.positionals.length > max)
    throw new CliError(
      opts.tooMany?.(parsed.positionals) ?? `unexpected argument '${parsed.positionals[max]}'`,
    );
  return parsed;
}
