// `switchyard sim`'s options: one zod schema whose fields declare their flags (vLLM's names, type,
// bounds, default, help), the flags of `vllm serve` that matter to the stack and the sim's own;
// config.ts parses argv (and the YAML file of the same keys) with them and checks them as vLLM does.
import { z } from "zod";
import { commandFlags } from "../../config/command.js";
import { flag } from "../../config/schema-flags.js";
import { VLLM_BLOCK_SIZE, VLLM_GPU_MEMORY_UTILIZATION, VLLM_PORT } from "../../config/vllm-defaults.js";
import { GPU_IDS_TEXT } from "../../models/index.js";
import { DEFAULT_PAYLOAD_SCALE } from "./lmcache-config.js";

/**
 * The vLLM release the sim claims by default: the newest one its KV events were checked against byte
 * for byte (test/fixtures/vectors/vllm-kv-events-v028.json), which publishes events as tagged maps.
 */
export const DEFAULT_VLLM_VERSION = "0.28.0";

export const simOptions = z.object({
  port: flag(z.number().int().min(0).max(65535).default(VLLM_PORT), {
    flag: "port",
    help: "HTTP port (0 = any free port)",
  }),
  host: flag(z.string().default("0.0.0.0"), { flag: "host", help: "address to bind" }),
  servedModelName: flag(z.array(z.string()).default([]), {
    flag: "served-model-name",
    help: "name(s) the model answers to; the first is reported (default: MODEL as given)",
  }),
  tokenizer: flag(z.string().optional(), {
    flag: "tokenizer",
    help: "Hugging Face folder whose tokenizer.json and chat template to use (default: MODEL when it is a folder)",
  }),
  dtype: flag(z.string().default("auto"), {
    flag: "dtype",
    help: "weight and KV dtype: auto (the model's; float32 checkpoints run as bfloat16), bfloat16, float16, float32",
  }),
  gpuMemoryUtilization: flag(z.number().min(0.01).max(1).default(VLLM_GPU_MEMORY_UTILIZATION), {
    flag: "gpu-memory-utilization",
    help: "share of HBM vLLM may use",
  }),
  maxModelLen: flag(z.number().int().min(1).optional(), {
    flag: "max-model-len",
    help: "context length (default: the model's)",
  }),
  maxNumSeqs: flag(z.number().int().min(1).optional(), {
    flag: "max-num-seqs",
    help: "max running sequences per step",
  }),
  maxNumBatchedTokens: flag(z.number().int().min(1).optional(), {
    flag: "max-num-batched-tokens",
    help: "token budget per step",
  }),
  blockSize: flag(z.number().int().min(1).default(VLLM_BLOCK_SIZE), {
    flag: "block-size",
    help: "tokens per KV block",
  }),
  tensorParallelSize: flag(z.number().int().min(1).default(1), {
    flag: "tensor-parallel-size",
    help: "GPUs the model is split over",
  }),
  enablePrefixCaching: flag(z.boolean().default(true), {
    flag: "enable-prefix-caching",
    negatable: true,
    help: "automatic prefix caching",
  }),
  prefixCachingHashAlgo: flag(z.string().default("sha256_cbor"), {
    flag: "prefix-caching-hash-algo",
    help: "block hash: sha256_cbor only (sha256 uses Python pickle and cannot be reproduced outside Python)",
  }),
  kvEventsConfig: flag(z.string().optional(), {
    flag: "kv-events-config",
    help: "KV events config JSON (as vLLM's --kv-events-config)",
  }),
  kvCurveDir: flag(z.string().optional(), {
    flag: "kv-curve-dir",
    help: "[sim] CURVE keys for the KV-event sockets (vLLM has no such option): a directory with secret.key (not readable by other users), and server.key (the collector's public key) when the endpoint connects out, clients.keys (subscribers let in) when it binds",
  }),
  kvOffloadingSize: flag(z.number().min(0).optional(), {
    flag: "kv-offloading-size",
    help: "CPU KV offload tier size in GiB",
  }),
  kvOffloadingBackend: flag(z.string().default("native"), {
    flag: "kv-offloading-backend",
    help: "offload backend: native or lmcache (LMCache settings from LMCACHE_* env / LMCACHE_CONFIG_FILE)",
  }),
  kvTransferConfig: flag(z.string().optional(), {
    flag: "kv-transfer-config",
    help:
      'KV connector JSON; {"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"} turns LMCache on, ' +
      '{"kv_connector":"NixlConnector","kv_role":"kv_producer|kv_consumer|kv_both"} disaggregated prefill/decode',
  }),
  apiKey: flag(z.string().optional(), {
    flag: "api-key",
    env: "VLLM_API_KEY",
    help: "require 'Authorization: Bearer KEY' on /v1/* (env VLLM_API_KEY)",
  }),
  enablePromptTokensDetails: flag(z.boolean().default(false), {
    flag: "enable-prompt-tokens-details",
    help: "usage.prompt_tokens_details",
  }),
  enableForceIncludeUsage: flag(z.boolean().default(false), {
    flag: "enable-force-include-usage",
    help: "usage chunk on every stream",
  }),
  enableRequestIdHeaders: flag(z.boolean().default(false), {
    flag: "enable-request-id-headers",
    help: "echo X-Request-Id",
  }),
  enableServerLoadTracking: flag(z.boolean().default(false), {
    flag: "enable-server-load-tracking",
    help: "track /load (always served)",
  }),
  schedulingPolicy: flag(z.string().default("fcfs"), { flag: "scheduling-policy", help: "fcfs or priority" }),
  numGpuBlocksOverride: flag(z.number().int().min(1).optional(), {
    flag: "num-gpu-blocks-override",
    help: "number of GPU KV blocks, bypassing profiling",
  }),
  enableLora: flag(z.boolean().default(false), {
    flag: "enable-lora",
    help: "serve LoRA adapters: GPU slots, a host cache, vllm:lora_requests_info (on with --lora-modules too)",
  }),
  loraModules: flag(z.array(z.string()).default([]), {
    flag: "lora-modules",
    help: 'static LoRA adapters, PEFT folders: name=path or {"name":..,"path":..,"base_model_name":..}',
  }),
  maxLoras: flag(z.number().int().min(1).default(1), {
    flag: "max-loras",
    help: "adapters in GPU slots, and distinct ones per batch",
  }),
  maxCpuLoras: flag(z.number().int().min(1).optional(), {
    flag: "max-cpu-loras",
    help: "adapters cached in host memory (default: --max-loras)",
  }),
  maxLoraRank: flag(z.number().int().min(1).default(16), {
    flag: "max-lora-rank",
    help: "the largest adapter rank served",
  }),
  enableAutoToolChoice: flag(z.boolean().default(false), {
    flag: "enable-auto-tool-choice",
    help: 'tool_choice "auto" (and tools without a tool_choice); needs --tool-call-parser, 400 without',
  }),
  toolCallParser: flag(z.string().optional(), {
    flag: "tool-call-parser",
    help: "the tool-call parser's name (any; the sim writes auto tool calls in the Hermes form and parses them itself)",
  }),
  maxLogprobs: flag(z.number().int().min(-1).default(20), {
    flag: "max-logprobs",
    help: "most logprobs and prompt_logprobs a request may ask for (-1: the vocabulary size)",
  }),
  enableScaleOut: flag(z.boolean().default(false), {
    flag: "enable-scale-out",
    help: "serve the scale-out endpoints: /render and /derender of chat, completions, messages and responses, /inference/v1/generate and /inference/v1/abort_requests (403 without it)",
  }),
  // sim-only
  gpu: flag(z.string().default("h100"), { flag: "gpu", help: `[sim] GPU profile: ${GPU_IDS_TEXT}` }),
  timeScale: flag(z.number().min(0).default(1), {
    flag: "time-scale",
    help: "[sim] every modelled duration is multiplied by this",
  }),
  seed: flag(z.number().int().default(0), {
    flag: "seed",
    help: "[sim] seed for outputs, answer lengths and faults",
  }),
  hashSeed: flag(z.string().optional(), {
    flag: "hash-seed",
    env: "PYTHONHASHSEED",
    envKeepsEmpty: true,
    help: "[sim] PYTHONHASHSEED for block hashes (default env PYTHONHASHSEED, else as the claimed --vllm-version: vllm-none-hash since 0.29, 0 before)",
  }),
  failRate: flag(z.number().min(0).max(1).default(0), {
    flag: "fail-rate",
    help: "[sim] share of generation requests that fail",
  }),
  failStatus: flag(z.number().int().min(400).max(599).default(500), {
    flag: "fail-status",
    help: "[sim] HTTP status of injected failures",
  }),
  stallMs: flag(z.number().min(0).default(0), {
    flag: "stall-ms",
    help: "[sim] delay added before answering generation requests",
  }),
  startupDelay: flag(z.number().min(0).default(0), {
    flag: "startup-delay",
    help: "[sim] seconds during which /health answers 503",
  }),
  crashAfter: flag(z.number().int().min(0).optional(), {
    flag: "crash-after",
    help: "[sim] exit abruptly when generation request N+1 arrives",
  }),
  shutdownTimeout: flag(z.number().min(0).default(0), {
    flag: "shutdown-timeout",
    help: "on SIGTERM, drain as vLLM does: new requests get its 500 'cannot schedule new futures after shutdown' while /health answers 200, and those in flight finish for up to this many seconds; 0 = stop at once",
  }),
  outputLenMean: flag(z.number().min(1).default(128), {
    flag: "output-len-mean",
    help: "[sim] mean natural answer length (EOS point)",
  }),
  maxBodyBytes: flag(z.number().default(16 * 2 ** 20), {
    flag: "max-body-bytes",
    kind: "size",
    help: "[sim] largest request body accepted (413 above)",
  }),
  lmcachePayloadScale: flag(z.number().min(0).max(1).default(DEFAULT_PAYLOAD_SCALE), {
    flag: "lmcache-payload-scale",
    help: "[sim] bytes sent per LMCache chunk = modelled bytes × this (timing uses the modelled size)",
  }),
  lmcacheRemoteBandwidth: flag(z.number().min(0).optional(), {
    flag: "lmcache-remote-bandwidth",
    help: "[sim] GB/s a remote LMCache load delivers to the engine (default 10: one 100 GbE NIC)",
  }),
  kvTransferBandwidth: flag(z.number().min(0).optional(), {
    flag: "kv-transfer-bandwidth",
    help: "[sim] GB/s per TP rank of a NixlConnector KV pull from a prefill engine (default 40: RDMA, one 400 Gb/s NIC per GPU)",
  }),
  vllmVersion: flag(z.string().default(DEFAULT_VLLM_VERSION), {
    flag: "vllm-version",
    help: "[sim] the vLLM release the sim claims (GET /version); its KV events take that release's layout: tagged maps from 0.24.0, tagged arrays before",
  }),
  profiles: flag(z.string().optional(), {
    flag: "profiles",
    help: "[sim] YAML file with extra gpus:/models: profiles",
  }),
  config: flag(z.string().optional(), {
    flag: "config",
    help: "YAML file with the same keys as the flags (flags win)",
  }),
});

/** the sim's flags, read once from its schema */
export const SIM_OPTIONS = commandFlags(simOptions);
