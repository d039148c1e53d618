// A benchmark's flags: parsed as every command's are (src/config/args.ts), with `--help` answered from
// the same specs, so that `npm run bench -- GROUP/NAME --help` lists what a benchmark takes.
import { basename, dirname } from "node:path";
import { helpText, parseFlags, wantsHelp, type FlagSpecs } from "../../src/config/args.js";

/** the benchmark's GROUP/NAME, from the script being run (dist/bench/GROUP/NAME.js) */
function benchName(): string {
  const file = process.argv[1] ?? "";
  return `${basename(dirname(file))}/${basename(file).replace(/\.[jt]s$/, "")}`;
}

/** parses the benchmark's arguments; `--help` or `-h` prints its options and exits 0 */
export function benchFlags(
  specs: FlagSpecs,
  argv: string[] = process.argv.slice(2),
): ReturnType<typeof parseFlags> {
  if (wantsHelp(argv)) {
    console.log(helpText(`npm run bench -- ${benchName()} [options]`, specs));
    process.exit(0);
  }
  return parseFlags(argv, specs);
}
