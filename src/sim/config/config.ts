// `switchyard sim` options: the flags of `vllm serve` that matter to the stack plus sim-only ones,
// an optional YAML file with the same keys (flags win), and the checks vLLM would make at startup.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { CliError, parseFlags, type FlagValues } from "../../config/args.js";
import { withEnv } from "../../config/command.js";
import { SIM_OPTIONS } from "./options.js";

export { DEFAULT_VLLM_VERSION } from "./options.js";
import { resolveLmcache, type LmcacheSettings } from "./lmcache-config.js";
import { resolveDisagg, type DisaggSettings } from "./disagg-config.js";
import { parseVersion } from "../../kvevents/versions.js";
import { engineHashSeed } from "../../protocol/vllm-releases.js";

/** the sim's flags, read from its option schema (src/sim/config/options.ts) */
export const SIM_FLAGS = SIM_OPTIONS.specs;

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
  // the environment variables its fields name (VLLM_API_KEY, PYTHONHASHSEED), where no flag was given
  const f = withEnv(SIM_OPTIONS, parsed, env).flags;
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
    apiKey: str(f["api-key"]),
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
    hashSeed: str(f["hash-seed"]) ?? engineHashSeed(vllmVersion, undefined),
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
