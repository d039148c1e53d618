// The LoRA sim the router's adapter tests start: LoRA on, one GPU slot and two in the host cache (so
// a handful of adapters already needs unloads), runtime loads allowed, steps 50 times faster than
// modelled so that loads and answers take milliseconds.
import { startSim, type RunningSim } from "../../src/sim/app.js";
import { parseSimArgs } from "../../src/sim/config/config.js";

export const LORA_SIM_MODEL = "meta-llama/Llama-3.1-8B-Instruct";

export function loraSim(): Promise<RunningSim> {
  return startSim(
    parseSimArgs(
      [
        LORA_SIM_MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--enable-lora",
        "--max-loras",
        "1",
        "--max-cpu-loras",
        "2",
        "--max-lora-rank",
        "8",
        "--time-scale",
        "0.02",
      ],
      { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" },
    ),
  );
}
