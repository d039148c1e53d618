// vllm:lora_requests_info as vLLM writes it: a series per label combination ever reported, valued at
// the report's time; the router reads the latest as the engine's adapters.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseEngineMetrics } from "../../../src/router/engines/scrape.js";

test("the router reads the lora_requests_info series with the largest value as the engine's current adapters", () => {
  const page = [
    "# TYPE vllm:lora_requests_info gauge",
    'vllm:lora_requests_info{max_lora="2",running_lora_adapters="a1",waiting_lora_adapters=""} 1.79574753e9',
    'vllm:lora_requests_info{max_lora="2",running_lora_adapters="a3",waiting_lora_adapters="a3"} 1.7957475355e9',
    'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.7957475e9',
    'vllm:num_requests_running{model_name="m"} 1',
  ].join("\n");
  const load = parseEngineMetrics(page);
  assert.deepEqual(load.lora, { maxLora: 2, running: ["a3"], waiting: ["a3"] });
  assert.equal(load.running, 1);
  assert.equal(parseEngineMetrics('vllm:num_requests_running{model_name="m"} 0').lora, undefined);
});
