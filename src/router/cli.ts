// Placeholder until this capability lands.
import { CliError } from "../cli/args.js";

export async function main(_argv: string[]): Promise<number> {
  throw new CliError("'router' is not built yet");
}
