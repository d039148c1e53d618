// `switchyard sim` options: the flags of `vllm serve` that matter to the stack plus sim-only ones,
// an optional YAML file with the same keys (flags win), and the checks vLLM would make at startup.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { CliError, parseFlags, type FlagSpecs, type FlagValues } from "../../config/args.js";
import { GPU_IDS_TEXT } from "../../models/index.js";
import { DEFAULT_PAYLOAD_SCALE, resolveLmcache, type LmcacheSettings } from "./lmcache-config.js";
import { resolveDisagg, type DisaggSettings } from "./disagg-config.js";
import { parseVersion } from "../../kvevents/versions.js";
import { engineHashSeed } from "../../protocol/vllm-releases.js";
import { VLLM_BLOCK_SIZE, VLLM_GPU_MEMORY_UTILIZATION, VLLM_PORT } from "../../config/vllm-defaults.js";

/**
 * The vLLM release the sim claims by default: the newest one its KV events were checked against byte
 * for byte (test/fixtures/vectors/vllm-kv-events-v028.json), which publishes events as tagged maps.
 */
export const DEFAULT_VLLM_VERSION = "0.28.0";

export const SIM_FLAGS: FlagSpecs = {
  port: { type: "int", default: VLLM_PORT, min: 0, max: 65535, help: "HTTP port (0 = any free port)" },
  host: { type: "string", default: "0.0.0.0", help: "address to bind" },
  "served-model-name": {
    type: "list",
    help: "name(s) the model answers to; the first is reported (default: MODEL as given)",
  },
  tokenizer: {
    type: "string",
    help: "Hugging Face folder whose tokenizer.json and chat template to use (default: MODEL when it is a folder)",
  },
  dtype: {
    type: "string",
    default: "auto",
    help: "weight and KV dtype: auto (the model's; float32 checkpoints run as bfloat16), bfloat16, float16, float32",
  },
  "gpu-memory-utilization": {
    type: "number",
    default: VLLM_GPU_MEMORY_UTILIZATION,
    min: 0.01,
    max: 1,
    help: "share of HBM vLLM may use",
  },
  "max-model-len": { type: "int", min: 1, help: "context length (default: the model's)" },
  "max-num-seqs": { type: "int", min: 1, help: "max running sequences per step" },
  "max-num-batched-tokens": { type: "int", min: 1, help: "token budget per step" },
  "block-size": { type: "int", default: VLLM_BLOCK_SIZE, min: 1, help: "tokens per KV block" },
  "tensor-parallel-size": { type: "int", default: 1, min: 1, help: "GPUs the model is split over" },
  "enable-prefix-caching": {
    type: "boolean",
    default: true,
    negatable: true,
    help: "automatic prefix caching",
  },
  "prefix-caching-hash-algo": {
    type: "string",
    default: "sha256_cbor",
    help: "block hash: sha256_cbor only (sha256 uses Python pickle and cannot be reproduced outside Python)",
  },
  "kv-events-config": { type: "string", help: "KV events config JSON (as vLLM's --kv-events-config)" },
  "kv-curve-dir": {
    type: "string",
    help: "[sim] CURVE keys for the KV-event sockets (vLLM has no such option): a directory with secret.key (not readable by other users), and server.key (the collector's public key) when the endpoint connects out, clients.keys (subscribers let in) when it binds",
  },
  "kv-offloading-size": { type: "number", min: 0, help: "CPU KV offload tier size in GiB" },
  "kv-offloading-backend": {
    type: "string",
    default: "native",
    help: "offload backend: native or lmcache (LMCache settings from LMCACHE_* env / LMCACHE_CONFIG_FILE)",
  },
  "kv-transfer-config": {
    type: "string",
    help:
      'KV connector JSON; {"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"} turns LMCache on, ' +
      '{"kv_connector":"NixlConnector","kv_role":"kv_producer|kv_consumer|kv_both"} disaggregated prefill/decode',
  },
  "api-key": { type: "string", help: "require 'Authorization: Bearer KEY' on /v1/* (env VLLM_API_KEY)" },
  "enable-prompt-tokens-details": { type: "boolean", default: false, help: "usage.prompt_tokens_details" },
  "enable-force-include-usage": { type: "boolean", default: false, help: "usage chunk on every stream" },
  "enable-request-id-headers": { type: "boolean", default: false, help: "echo X-Request-Id" },
  "enable-server-load-tracking": { type: "boolean", default: false, help: "track /load (always served)" },
  "scheduling-policy": { type: "string", default: "fcfs", help: "fcfs or priority" },
  "num-gpu-blocks-override": { type: "int", min: 1, help: "number of GPU KV blocks, bypassing profiling" },
  "enable-lora": {
    type: "boolean",
    default: false,
    help: "serve LoRA adapters: GPU slots, a host cache, vllm:lora_requests_info (on with --lora-modules too)",
  },
  "lora-modules": {
    type: "list",
    help: 'static LoRA adapters, PEFT folders: name=path or {"name":..,"path":..,"base_model_name":..}',
  },
  "max-loras": {
    type: "int",
    default: 1,
    min: 1,
    help: "adapters in GPU slots, and distinct ones per batch",
  },
  "max-cpu-loras": { type: "int", min: 1, help: "adapters cached in host memory (default: --max-loras)" },
  "max-lora-rank": { type: "int", default: 16, min: 1, help: "the largest adapter rank served" },
  "enable-auto-tool-choice": {
    type: "boolean",
    default: false,
    help: 'tool_choice "auto" (and tools without a tool_choice); needs --tool-call-parser, 400 without',
  },
  "tool-call-parser": {
    type: "string",
    help: "the tool-call parser's name (any; the sim writes auto tool calls in the Hermes form and parses them itself)",
  },
  "max-logprobs": {
    type: "int",
    default: 20,
    min: -1,
    help: "most logprobs and prompt_logprobs a request may ask for (-1: the vocabulary size)",
  },
  "enable-scale-out": {
    type: "boolean",
    default: false,
    help: "serve the scale-out endpoints: /render and /derender of chat, completions, messages and responses, /inference/v1/generate and /inference/v1/abort_requests (403 without it)",
  },
  // sim-only
  gpu: { type: "string", default: "h100", help: `[sim] GPU profile: ${GPU_IDS_TEXT}` },
  "time-scale": {
    type: "number",
    default: 1,
    min: 0,
    help: "[sim] every modelled duration is multiplied by this",
  },
  seed: { type: "int", default: 0, help: "[sim] seed for outputs, answer lengths and faults" },
  "hash-seed": {
    type: "string",
    help: "[sim] PYTHONHASHSEED for block hashes (default env PYTHONHASHSEED, else as the claimed --vllm-version: vllm-none-hash since 0.29, 0 before)",
  },
  "fail-rate": {
    type: "number",
    default: 0,
    min: 0,
    max: 1,
    help: "[sim] share of generation requests that fail",
  },
  "fail-status": {
    type: "int",
    default: 500,
    min: 400,
    max: 599,
    help: "[sim] HTTP status of injected failures",
  },
  "stall-ms": {
    type: "number",
    default: 0,
    min: 0,
    help: "[sim] delay added before answering generation requests",
  },
  "startup-delay": {
    type: "number",
    default: 0,
    min: 0,
    help: "[sim] seconds during which /health answers 503",
  },
  "crash-after": { type: "int", min: 0, help: "[sim] exit abruptly when generation request N+1 arrives" },
  "shutdown-timeout": {
    type: "number",
    default: 0,
    min: 0,
    help: "on SIGTERM, drain as vLLM does: new requests get its 500 'cannot schedule new futures after shutdown' while /health answers 200, and those in flight finish for up to this many seconds; 0 = stop at once",
  },
  "output-len-mean": {
    type: "number",
    default: 128,
    min: 1,
    help: "[sim] mean natural answer length (EOS point)",
  },
  "max-body-bytes": {
    type: "size",
    default: "16MiB",
    help: "[sim] largest request body accepted (413 above)",
  },
  "lmcache-payload-scale": {
    type: "number",
    default: DEFAULT_PAYLOAD_SCALE,
    min: 0,
    max: 1,
    help: "[sim] bytes sent per LMCache chunk = modelled bytes × this (timing uses the modelled size)",
  },
  "lmcache-remote-bandwidth": {
    type: "number",
    min: 0,
    help: "[sim] GB/s a remote LMCache load delivers to the engine (default 10: one 100 GbE NIC)",
  },
  "kv-transfer-bandwidth": {
    type: "number",
    min: 0,
    help: "[sim] GB/s per TP rank of a NixlConnector KV pull from a prefill engine (default 40: RDMA, one 400 Gb/s NIC per GPU)",
  },
  "vllm-version": {
    type: "string",
    default: DEFAULT_VLLM_VERSION,
    help: "[sim] the vLLM release the sim claims (GET /version); its KV events take that release's layout: tagged maps from 0.24.0, tagged arrays before",
  },
  profiles: { type: "string", help: "[sim] YAML file with extra gpus:/models: profiles" },
  config: { type: "string", help: "YAML file with the same keys as the flags (flags win)" },
};

export interface SimOptions {
  /** a catalogue name (src/models/profiles.ts) or a Hugging Face model folder (config.json) */
  model: string;
  /** --tokenizer: a folder with tokenizer.json (vLLM's flag) */
  tokenizer?: string;
  /** --dtype as vLLM reads it ("auto": the model's own) */
  dtype: string;
  port: number;
  host: string;
  servedModelNames: string[];
  gpuMemoryUtilization: number;
  maxModelLen?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  blockSize: number;
  tensorParallelSize: number;
  enablePrefixCaching: boolean;
  prefixCachingHashAlgo: "sha256_cbor";
  kvEventsConfig?: string;
  /** --kv-curve-dir: CURVE keys for the KV-event PUB and replay sockets (src/kvevents/curve.ts) */
  kvCurveDir?: string;
  /** native offload tier size (absent with LMCache, whose local CPU size is in `lmcache`) */
  kvOffloadingGiB?: number;
  /** LMCache connector settings, when LMCache is on */
  lmcache: LmcacheSettings | null;
  /** NixlConnector (disaggregated prefill/decode) settings, when that connector is configured */
  disagg: DisaggSettings | null;
  apiKey?: string;
  enablePromptTokensDetails: boolean;
  enableForceIncludeUsage: boolean;
  enableRequestIdHeaders: boolean;
  enableServerLoadTracking: boolean;
  schedulingPolicy: "fcfs" | "priority";
  numGpuBlocksOverride?: number;
  loraModules: Array<{ name: string; path: string; baseModelName?: string }>;
  /** --enable-lora: adapters are served and vllm:lora_requests_info exposed (so they are with --lora-modules) */
  enableLora: boolean;
  maxLoras: number;
  /** --max-cpu-loras (vLLM's default: max_loras) */
  maxCpuLoras: number;
  maxLoraRank: number;
  /** env VLLM_ALLOW_RUNTIME_LORA_UPDATING: /v1/load_lora_adapter and /v1/unload_lora_adapter are served */
  allowRuntimeLoraUpdating: boolean;
  /** --enable-auto-tool-choice with --tool-call-parser: tool_choice "auto" answers instead of 400 */
  enableAutoToolChoice: boolean;
  toolCallParser?: string;
  /** --max-logprobs (vLLM's default 20; -1: the vocabulary) */
  maxLogprobs: number;
  /** vLLM's --enable-scale-out: render/derender and token-in/token-out generate answer instead of 403 */
  enableScaleOut: boolean;
  /** env VLLM_ENABLE_RESPONSES_API_STORE=1: Responses API answers are kept (bounded) for GET and previous_response_id */
  responsesStore: boolean;
  gpu: string;
  timeScale: number;
  seed: number;
  hashSeed: string;
  failRate: number;
  failStatus: number;
  stallMs: number;
  startupDelaySeconds: number;
  crashAfter?: number;
  /** seconds a SIGTERM drain waits for requests in flight (0: none) */
  shutdownTimeout: number;
  outputLenMean: number;
  maxBodyBytes: number;
  profilesFile?: string;
  /** the vLLM release the sim claims: GET /version, and the KV-event layout */
  vllmVersion: string;
}

/** Turns YAML config entries into argv so they go through the very same parser and checks as flags. */
function yamlToArgv(file: string, skip: Set<string>): string[] {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliError(`--config ${file}: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== "object" || Array.isArray(doc))
    throw new CliError(`--config ${file}: expected a mapping`);
  const argv: string[] = [];
  for (const [rawKey, value] of Object.entries(doc as Record<string, unknown>)) {
    const key = rawKey.replace(/_/g, "-");
    if (key === "config") throw new CliError(`--config ${file}: 'config' cannot be nested`);
    if (key === "model") continue;
    if (!SIM_FLAGS[key]) throw new CliError(`--config ${file}: unknown key '${rawKey}'`);
    if (skip.has(key)) continue;
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      const text = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
      argv.push(`--${key}=${text}`);
    }
  }
  return argv;
}

function yamlModel(file: string | undefined): string | undefined {
  if (!file) return undefined;
  const doc = parseYaml(readFileSync(file, "utf8")) as Record<string, unknown> | null;
  return doc && typeof doc.model === "string" ? doc.model : undefined;
}

/** one --lora-modules entry as vLLM's LoRAParserAction reads it: name=path, or a JSON object */
function parseLoraModule(spec: string): { name: string; path: string; baseModelName?: string } {
  const t = spec.trim();
  if (t.startsWith("{")) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(t) as Record<string, unknown>;
    } catch (err) {
      throw new CliError(`--lora-modules: invalid JSON '${spec}': ${(err as Error).message}`);
    }
    if (typeof o.name !== "string" || !o.name || typeof o.path !== "string" || !o.path)
      throw new CliError(`--lora-modules: a JSON entry needs "name" and "path", got '${spec}'`);
    const base = typeof o.base_model_name === "string" ? o.base_model_name : undefined;
    return { name: o.name, path: o.path, ...(base ? { baseModelName: base } : {}) };
  }
  const eq = t.indexOf("=");
  if (eq <= 0) throw new CliError(`--lora-modules: expected name=path, got '${spec}'`);
  return { name: t.slice(0, eq), path: t.slice(eq + 1) };
}

/** vLLM reads its boolean env vars as integers ("1"); "true" is taken too, anything else is off */
function envFlag(v: string | undefined): boolean {
  const t = (v ?? "").trim().toLowerCase();
  return t === "1" || t === "true";
}

function str(v: FlagValues[string]): string | undefined {
  return typeof v === "string" ? v : undefined;
}
function num(v: FlagValues[string]): number | undefined {
  return typeof v === "number" ? v : undefined;
}

export function parseSimArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): SimOptions {
  const first = parseFlags(argv, SIM_FLAGS);
  const configFile = str(first.flags.config);
  const parsed = configFile
    ? parseFlags([...yamlToArgv(configFile, first.given), ...argv], SIM_FLAGS)
    : first;
  const f = parsed.flags;
  const model = parsed.positionals[0] ?? yamlModel(configFile);
  if (!model)
    throw new CliError(
      "usage: switchyard sim MODEL [flags] (e.g. meta-llama/Llama-3.1-8B-Instruct, or a Hugging Face model folder)",
    );
  if (parsed.positionals.length > 1) throw new CliError(`unexpected argument '${parsed.positionals[1]}'`);

  const algo = String(f["prefix-caching-hash-algo"]);
  if (algo === "sha256") {
    throw new CliError(
      "--prefix-caching-hash-algo sha256 hashes blocks with Python pickle, which cannot be reproduced outside " +
        "Python; use sha256_cbor (what a KV-aware router needs, together with a fixed PYTHONHASHSEED)",
    );
  }
  if (algo !== "sha256_cbor") {
    throw new CliError(`--prefix-caching-hash-algo ${algo} is not supported by the sim; use sha256_cbor`);
  }
  const backend = String(f["kv-offloading-backend"]);
  if (backend !== "native" && backend !== "lmcache")
    throw new CliError(`--kv-offloading-backend must be native or lmcache, got '${backend}'`);
  const policy = String(f["scheduling-policy"]);
  if (policy !== "fcfs" && policy !== "priority") {
    throw new CliError(`--scheduling-policy must be fcfs or priority, got '${policy}'`);
  }
  const loraModules = (f["lora-modules"] as string[]).map(parseLoraModule);
  const maxLoras = f["max-loras"] as number;
  const maxCpuLoras = num(f["max-cpu-loras"]) ?? maxLoras;
  // vLLM's LoRAConfig refuses a host cache smaller than the slots
  if (maxCpuLoras < maxLoras)
    throw new CliError(`max_cpu_loras (${maxCpuLoras}) must be >= max_loras (${maxLoras})`);
  const names = f["served-model-name"] as string[];
  const enableAutoToolChoice = f["enable-auto-tool-choice"] as boolean;
  const toolCallParser = str(f["tool-call-parser"]);
  // vLLM refuses to start with auto tool choice and no parser to read the calls with
  if (enableAutoToolChoice && !toolCallParser)
    throw new CliError("--enable-auto-tool-choice requires --tool-call-parser (e.g. hermes, llama3_json)");
  const vllmVersion = String(f["vllm-version"]).trim();
  if (!parseVersion(vllmVersion))
    throw new CliError(`--vllm-version must look like 0.28.0 (a vLLM release), got '${vllmVersion}'`);
  const offload = num(f["kv-offloading-size"]);
  const lmcache = resolveLmcache({
    backend,
    offloadGiB: offload,
    kvTransferConfig: str(f["kv-transfer-config"]),
    tensorParallelSize: f["tensor-parallel-size"] as number,
    payloadScale: f["lmcache-payload-scale"] as number,
    remoteBandwidthGBps: num(f["lmcache-remote-bandwidth"]),
    env,
  });
  const disagg = resolveDisagg({
    kvTransferConfig: str(f["kv-transfer-config"]),
    bandwidthGBps: num(f["kv-transfer-bandwidth"]),
    env,
  });
  return {
    model,
    tokenizer: str(f.tokenizer),
    dtype: String(f.dtype),
    port: f.port as number,
    host: f.host as string,
    servedModelNames: names.length > 0 ? names : [model],
    gpuMemoryUtilization: f["gpu-memory-utilization"] as number,
    maxModelLen: num(f["max-model-len"]),
    maxNumSeqs: num(f["max-num-seqs"]),
    maxNumBatchedTokens: num(f["max-num-batched-tokens"]),
    blockSize: f["block-size"] as number,
    tensorParallelSize: f["tensor-parallel-size"] as number,
    enablePrefixCaching: f["enable-prefix-caching"] as boolean,
    prefixCachingHashAlgo: "sha256_cbor",
    kvEventsConfig: str(f["kv-events-config"]),
    kvCurveDir: str(f["kv-curve-dir"]),
    kvOffloadingGiB: !lmcache && offload !== undefined && offload > 0 ? offload : undefined,
    lmcache,
    disagg,
    apiKey: str(f["api-key"]) ?? (env.VLLM_API_KEY || undefined),
    enablePromptTokensDetails: f["enable-prompt-tokens-details"] as boolean,
    enableForceIncludeUsage: f["enable-force-include-usage"] as boolean,
    enableRequestIdHeaders: f["enable-request-id-headers"] as boolean,
    enableServerLoadTracking: f["enable-server-load-tracking"] as boolean,
    schedulingPolicy: policy,
    numGpuBlocksOverride: num(f["num-gpu-blocks-override"]),
    loraModules,
    enableLora: f["enable-lora"] as boolean,
    maxLoras,
    maxCpuLoras,
    maxLoraRank: f["max-lora-rank"] as number,
    allowRuntimeLoraUpdating: envFlag(env.VLLM_ALLOW_RUNTIME_LORA_UPDATING),
    enableAutoToolChoice,
    toolCallParser,
    maxLogprobs: f["max-logprobs"] as number,
    enableScaleOut: f["enable-scale-out"] as boolean,
    responsesStore: envFlag(env.VLLM_ENABLE_RESPONSES_API_STORE),
    gpu: String(f.gpu),
    timeScale: f["time-scale"] as number,
    seed: f.seed as number,
    // as the claimed release resolves it (vllm-releases.ts): PYTHONHASHSEED, else its default
    hashSeed: str(f["hash-seed"]) ?? engineHashSeed(vllmVersion, env.PYTHONHASHSEED),
    failRate: f["fail-rate"] as number,
    failStatus: f["fail-status"] as number,
    stallMs: f["stall-ms"] as number,
    startupDelaySeconds: f["startup-delay"] as number,
    crashAfter: num(f["crash-after"]),
    shutdownTimeout: f["shutdown-timeout"] as number,
    outputLenMean: f["output-len-mean"] as number,
    maxBodyBytes: f["max-body-bytes"] as number,
    profilesFile: str(f.profiles),
    vllmVersion,
  };
}
