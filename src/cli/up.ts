// Placeholder until the router lands.
import { CliError } from "./args.js";

export async function main(_argv: string[]): Promise<number> {
  throw new CliError("'up' is not built yet");
}
