// The sim's /metrics lists every vllm: family a vLLM 0.32 engine exposes on an idle engine (39), with
// vLLM's types, labels and the buckets that are fixed, and the new families move with the engine's
// own events: prompt tokens by source add up to the prompts prefilled, cache hits by tier follow the
// prefix cache, per-request histograms count every request, the per-GPU work estimates grow with the
// steps, admission refusals are counted. A sim claiming an earlier release keeps that release's page.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { MAX_IN_FLIGHT } from "../../../src/sim/runtime/runtime.js";
import { metric, postJson, startTestSim } from "../helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
let sim: RunningSim;

before(async () => {
  sim = await startTestSim(MODEL, [
    "--time-scale",
    "0.02",
    "--output-len-mean",
    "100000",
    "--vllm-version",
    "0.32.0",
  ]);
});
after(async () => sim.close());

/** vLLM 0.32's families on an idle engine without LoRA (counters as exposed, with _total) */
const VLLM_FAMILIES: Record<string, string> = {
  "vllm:num_requests_running": "gauge",
  "vllm:num_requests_waiting": "gauge",
  "vllm:num_requests_waiting_by_reason": "gauge",
  "vllm:kv_cache_usage_perc": "gauge",
  "vllm:engine_sleep_state": "gauge",
  "vllm:cache_config_info": "gauge",
  "vllm:prefix_cache_queries_total": "counter",
  "vllm:prefix_cache_hits_total": "counter",
  "vllm:external_prefix_cache_queries_total": "counter",
  "vllm:external_prefix_cache_hits_total": "counter",
  "vllm:mm_cache_queries_total": "counter",
  "vllm:mm_cache_hits_total": "counter",
  "vllm:num_preemptions_total": "counter",
  "vllm:prompt_tokens_total": "counter",
  "vllm:prompt_tokens_by_source_total": "counter",
  "vllm:prompt_tokens_cached_total": "counter",
  "vllm:prompt_tokens_cached_by_source_total": "counter",
  "vllm:generation_tokens_total": "counter",
  "vllm:request_success_total": "counter",
  "vllm:admission_rejections_total": "counter",
  "vllm:estimated_flops_per_gpu_total": "counter",
  "vllm:estimated_read_bytes_per_gpu_total": "counter",
  "vllm:estimated_write_bytes_per_gpu_total": "counter",
  "vllm:request_prompt_tokens": "histogram",
  "vllm:request_generation_tokens": "histogram",
  "vllm:iteration_tokens_total": "histogram",
  "vllm:request_max_num_generation_tokens": "histogram",
  "vllm:request_params_n": "histogram",
  "vllm:request_params_max_tokens": "histogram",
  "vllm:time_to_first_token_seconds": "histogram",
  "vllm:inter_token_latency_seconds": "histogram",
  "vllm:request_time_per_output_token_seconds": "histogram",
  "vllm:e2e_request_latency_seconds": "histogram",
  "vllm:request_queue_time_seconds": "histogram",
  "vllm:request_inference_time_seconds": "histogram",
  "vllm:request_prefill_time_seconds": "histogram",
  "vllm:request_decode_time_seconds": "histogram",
  "vllm:request_prefill_kv_computed_tokens": "histogram",
  "vllm:request_num_preemptions": "histogram",
};

async function scrape(url = sim.url): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

function types(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

function sample(text: string, name: string, labels: string): number {
  for (const line of text.split("\n"))
    if (line.startsWith(`${name}{`) && line.includes(labels))
      return Number(line.slice(line.lastIndexOf(" ") + 1));
  return NaN;
}

function buckets(text: string, name: string): number[] {
  const out: number[] = [];
  for (const line of text.split("\n")) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"`).exec(line);
    if (m && m[1] !== "+Inf") out.push(Number(m[1]));
  }
  return out;
}

test("an idle sim lists vLLM 0.32's 39 families with vLLM's types, and no others", async () => {
  const t = types(await scrape());
  assert.equal(Object.keys(VLLM_FAMILIES).length, 39);
  for (const [name, type] of Object.entries(VLLM_FAMILIES)) assert.equal(t.get(name), type, name);
  const extra = [...t.keys()].filter((n) => n.startsWith("vllm:") && !(n in VLLM_FAMILIES));
  assert.deepEqual(extra, []);
});

/** The label names of a family's first series. */
function labelNames(text: string, name: string): string[] {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`));
  assert.ok(line, name);
  return [...line.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((m) => m[1]!);
}

test("/metrics is text format 1.0.0 as vLLM 0.32 answers it, with its admission and cache-config labels", async () => {
  const r = await fetch(`${sim.url}/metrics`);
  assert.equal(r.headers.get("content-type"), "text/plain; version=1.0.0; charset=utf-8");
  const text = await r.text();
  // counted in the API server, for the model only
  assert.deepEqual(labelNames(text, "vllm:admission_rejections_total"), ["model_name", "reason"]);
  const cache = labelNames(text, "vllm:cache_config_info");
  for (const l of ["_block_size_resolved", "kv_cache_size_tokens", "kv_cache_max_concurrency", "engine"])
    assert.ok(cache.includes(l), l);
  for (const l of ["swap_space", "cpu_offload_gb", "calculate_kv_scales"]) assert.ok(!cache.includes(l), l);
  assert.equal(cache.length, 37);
  assert.deepEqual(cache, [...cache].sort(), "vLLM lists them sorted");
  const blocks = Number(/num_gpu_blocks="(\d+)"/.exec(text)![1]);
  // as many requests at max_model_len as the blocks hold, each taking ceil(max_model_len / block size)
  const { maxModelLen, blockSize } = sim.ctx.engineConfig;
  const concurrency = blocks / Math.ceil(maxModelLen / blockSize);
  assert.match(text, new RegExp(`kv_cache_size_tokens="${Math.floor(concurrency * maxModelLen)}"`));
});

test("a sim claiming an earlier release keeps its page: format 0.0.4 before 0.9.1, the earlier families and labels", async () => {
  const old = await startTestSim(MODEL, ["--vllm-version", "0.9.0"]);
  const mid = await startTestSim(MODEL, ["--vllm-version", "0.28.0"]);
  try {
    const r = await fetch(`${old.url}/metrics`);
    assert.equal(r.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const m = await fetch(`${mid.url}/metrics`);
    assert.equal(m.headers.get("content-type"), "text/plain; version=1.0.0; charset=utf-8");
    const text = await m.text();
    const t = types(text);
    assert.equal(t.get("vllm:prompt_tokens_recomputed_total"), "counter");
    assert.equal(t.get("vllm:prompt_tokens_cached_by_source_total"), undefined);
    assert.deepEqual(labelNames(text, "vllm:admission_rejections_total"), ["model_name", "engine", "reason"]);
    assert.ok(labelNames(text, "vllm:cache_config_info").includes("swap_space"));
  } finally {
    await old.close();
    await mid.close();
  }
});

test("vllm:lora_requests_info is there only with LoRA on (--enable-lora or --lora-modules), as vLLM registers it", async () => {
  const lora = await startTestSim(MODEL, ["--enable-lora", "--max-loras", "2"]);
  try {
    const text = await scrape(lora.url);
    assert.equal(types(text).get("vllm:lora_requests_info"), "gauge");
    assert.match(text, /vllm:lora_requests_info\{max_lora="2"/);
  } finally {
    await lora.close();
  }
  assert.equal(types(await scrape()).get("vllm:lora_requests_info"), undefined);
});

test("labelled series are there at zero before any request, with vLLM's label values", async () => {
  const text = await scrape();
  for (const source of ["local_compute", "local_cache_hit", "external_kv_transfer"])
    assert.equal(sample(text, "vllm:prompt_tokens_by_source_total", `source="${source}"`), 0, source);
  for (const reason of ["capacity", "deferred"])
    assert.equal(sample(text, "vllm:num_requests_waiting_by_reason", `reason="${reason}"`), 0, reason);
  for (const reason of ["max_num_queued_reqs", "max_num_queued_tokens"])
    assert.equal(sample(text, "vllm:admission_rejections_total", `reason="${reason}"`), 0, reason);
  for (const source of ["device", "host", "p2p", "disk", "external_unspecified"])
    assert.equal(sample(text, "vllm:prompt_tokens_cached_by_source_total", `source="${source}"`), 0, source);
});

test("the new families follow the engine: prompt sources, per-request histograms (vLLM's buckets), work estimates", async () => {
  const before = await scrape();
  const conversation = [{ role: "user", content: "Tell me about rivers, please, at some length." }];
  for (let i = 0; i < 3; i++) {
    const r = await postJson(`${sim.url}/v1/chat/completions`, { messages: conversation, max_tokens: 5 });
    assert.equal(r.status, 200);
  }
  const text = await scrape();
  const delta = (name: string, labels = "") =>
    (labels ? sample(text, name, labels) : metric(text, name)) -
    (labels ? sample(before, name, labels) : metric(before, name));
  const computed = delta("vllm:prompt_tokens_by_source_total", 'source="local_compute"');
  const hit = delta("vllm:prompt_tokens_by_source_total", 'source="local_cache_hit"');
  const prompts = delta("vllm:request_prompt_tokens_sum");
  assert.equal(computed + hit, prompts, "every prompt token has one source");
  assert.ok(hit > 0, "the repeated conversation hits the prefix cache");
  assert.equal(delta("vllm:prompt_tokens_cached_total"), hit);
  // the GPU prefix cache's hits are the device tier's, as vLLM counts them
  const device = delta("vllm:prompt_tokens_cached_by_source_total", 'source="device"');
  assert.equal(device, delta("vllm:prefix_cache_hits_total"));
  assert.ok(device > 0);
  assert.equal(delta("vllm:request_prefill_kv_computed_tokens_sum"), computed);
  assert.equal(delta("vllm:request_num_preemptions_count"), 3);
  assert.equal(delta("vllm:request_num_preemptions_sum"), 0);
  assert.equal(delta("vllm:request_params_n_sum"), 3);
  assert.equal(delta("vllm:request_max_num_generation_tokens_sum"), 15);
  assert.ok(delta("vllm:estimated_flops_per_gpu_total") > 0);
  assert.ok(delta("vllm:estimated_read_bytes_per_gpu_total") > 0);
  assert.ok(delta("vllm:estimated_write_bytes_per_gpu_total") > 0);
  // 2 FLOPs per parameter per computed token at least (8B parameters): the prompts' computed tokens,
  // then 4 decode steps per request (the prefill step samples the first output token)
  assert.ok(delta("vllm:estimated_flops_per_gpu_total") >= 2 * 8e9 * (computed + 3 * 4));
  assert.deepEqual(buckets(text, "vllm:request_num_preemptions"), [1, 2, 3, 4, 5, 10, 20]);
  assert.deepEqual(buckets(text, "vllm:request_params_n"), [1, 2, 5, 10, 20]);
});

test("a request refused at the in-flight cap counts as an admission rejection, from every API", async () => {
  const runtime = sim.ctx.runtime;
  const full = Object.defineProperty(runtime, "inFlight", { configurable: true, get: () => MAX_IN_FLIGHT });
  try {
    const chat = await postJson(`${sim.url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "hi" }],
    });
    assert.equal(chat.status, 503);
    const msg = await postJson(`${sim.url}/v1/messages`, {
      model: MODEL,
      max_tokens: 3,
      messages: [{ role: "user", content: "hi" }],
    });
    assert.equal(msg.status, 503);
  } finally {
    delete (full as { inFlight?: number }).inFlight;
  }
  const text = await scrape();
  assert.equal(sample(text, "vllm:admission_rejections_total", 'reason="max_num_queued_reqs"'), 2);
  const ok = await postJson(`${sim.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 2,
  });
  assert.equal(ok.status, 200, "the server serves again once requests drain");
});
