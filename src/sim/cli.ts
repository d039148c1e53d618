// `switchyard sim MODEL [flags]`: a simulated vLLM engine with `vllm serve`'s HTTP surface, metrics
// and KV events. Runs until SIGINT/SIGTERM, then aborts streams and closes the ZMQ sockets.
import { helpText, wantsHelp } from "../config/args.js";
import { onShutdown } from "../obs/lifecycle.js";
import { logger } from "../obs/log.js";
import { curlExample, startSim } from "./app.js";
import { parseSimArgs, SIM_FLAGS } from "./config/config.js";

export async function main(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(
      helpText(
        "usage: switchyard sim MODEL [flags]\n\nA simulated vLLM engine: the same HTTP surface, metrics and KV events as `vllm serve MODEL`.",
        SIM_FLAGS,
      ),
    );
    return 0;
  }
  const options = parseSimArgs(argv);
  const sim = await startSim(options);
  onShutdown(async () => {
    // vLLM's drain shutdown (--shutdown-timeout): in-flight requests finish, new ones are refused
    if (options.shutdownTimeout > 0) await sim.drain(options.shutdownTimeout);
    await sim.close();
  });
  console.log(`switchyard sim: ${options.servedModelNames[0]} (vLLM-compatible) on ${sim.url}`);
  if (sim.kvEventsEndpoint) console.log(`KV events: ${sim.kvEventsEndpoint}`);
  console.log(`try:\n  ${curlExample(sim)}`);
  logger("sim").debug("serving until SIGINT/SIGTERM");
  // Long-running: shutdown() exits the process.
  return new Promise<number>(() => {});
}
