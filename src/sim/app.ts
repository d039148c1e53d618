// Assembles a running sim from options: profiles → engine config → engine in real time → tokenizer,
// metrics, KV-event publisher → HTTP server. Used by the CLI and by tests that start it in-process.
import type { AddressInfo, Socket } from "node:net";
import { resolve } from "node:path";
import { mulberry32 } from "../random/rng.js";
import { defaultEngineConfig, kvCapacity, type EngineConfig } from "../engine/index.js";
import {
  isModelFolder,
  loadModelFolder,
  loadProfilesFile,
  resolveGpu,
  resolveModel,
  withDtype,
  type ModelProfile,
} from "../models/index.js";
import { parseKvEventsConfig } from "../kvevents/config.js";
import { loadCurveKeys } from "../kvevents/curve.js";
import { ZmqEventPublisher } from "../kvevents/publisher.js";
import { layoutForVersion } from "../kvevents/versions.js";
import { extraKeyStyleFor } from "../protocol/vllm-releases.js";
import { logger } from "../obs/log.js";
import { tokenizerForModel } from "../tokenizer/index.js";
import { CliError } from "../config/args.js";
import type { SimOptions } from "./config/config.js";
import type { SimContext } from "./serving/context.js";
import { DisaggConnector, deriveEngineId } from "./connectors/disagg.js";
import { kvEventSources } from "./config/kv-sources.js";
import { keyProblem } from "./connectors/lmcache-keys.js";
import { LmcacheTier } from "./connectors/lmcache.js";
import { SHA256_CBOR_NAMES } from "./config/lmcache-config.js";
import { LoraRegistry, loadAdapter } from "./serving/lora.js";
import { SimMetrics } from "./metrics/metrics.js";
import { cacheConfigLabels, metricsRelease } from "./metrics/metrics-release.js";
import { SimRuntime } from "./runtime/runtime.js";
import { createSimServer } from "./server.js";

const log = logger("sim");
const GiB = 2 ** 30;

export interface RunningSim {
  ctx: SimContext;
  /** http://HOST:PORT reachable from this machine */
  url: string;
  port: number;
  /** where KV events are published, when enabled */
  kvEventsEndpoint: string | null;
  kvReplayEndpoint: string | null;
  /**
   * vLLM's drain: from now on every POST is refused with vLLM's shutdown 500 while /health and the
   * other reads answer 200, and the promise resolves once no request is being answered or
   * `timeoutS` passed.
   */
  drain(timeoutS: number): Promise<void>;
  close(): Promise<void>;
}

function asCliError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError((err as Error).message);
  }
}

/**
 * The model served: a Hugging Face folder (config.json) wins over the catalogue, as `vllm serve DIR`
 * reads its folder; --tokenizer swaps in another folder's tokenizer, --dtype the element size.
 */
function servedModel(o: SimOptions): ModelProfile {
  if (isModelFolder(o.model)) {
    const f = loadModelFolder(o.model, o.model, { dtype: o.dtype, tokenizerDir: o.tokenizer });
    for (const { field, note } of f.ignored)
      log.warn({ field }, `config.json ${field} is not modelled: ${note}`);
    if (f.unread.length > 0)
      log.debug({ fields: f.unread }, "config.json fields the engine model does not read");
    return f.profile;
  }
  const profile = withDtype(resolveModel(o.model), o.dtype);
  return o.tokenizer ? { ...profile, tokenizer: `hf:${resolve(o.tokenizer)}` } : profile;
}

export function buildEngineConfig(o: SimOptions): EngineConfig {
  if (o.profilesFile) {
    const file = o.profilesFile;
    asCliError(() => loadProfilesFile(file));
  }
  const model = asCliError(() => servedModel(o));
  const gpu = asCliError(() => resolveGpu(o.gpu));
  const lm = o.lmcache;
  const offload: EngineConfig["offload"] = lm
    ? lm.localCpu && lm.localCpuBytesPerRank > 0
      ? { backend: "lmcache", bytes: lm.localCpuBytesPerRank, chunkTokens: lm.chunkTokens }
      : null
    : o.kvOffloadingGiB
      ? { backend: "native", bytes: Math.round(o.kvOffloadingGiB * GiB) }
      : null;
  const overrides: Partial<EngineConfig> = {
    tensorParallelSize: o.tensorParallelSize,
    gpuMemoryUtilization: o.gpuMemoryUtilization,
    blockSize: o.blockSize,
    enablePrefixCaching: o.enablePrefixCaching,
    hashSeed: o.hashSeed,
    extraKeyStyle: extraKeyStyleFor(o.vllmVersion),
    schedulingPolicy: o.schedulingPolicy,
    offload,
    dataParallelRank: 0,
  };
  if (o.maxModelLen !== undefined) overrides.maxModelLen = o.maxModelLen;
  if (o.maxNumSeqs !== undefined) overrides.maxNumSeqs = o.maxNumSeqs;
  if (o.maxNumBatchedTokens !== undefined) overrides.maxNumBatchedTokens = o.maxNumBatchedTokens;
  if (o.numGpuBlocksOverride !== undefined) overrides.numGpuBlocksOverride = o.numGpuBlocksOverride;
  if (o.enableLora || o.loraModules.length > 0)
    overrides.lora = { maxLoras: o.maxLoras, maxCpuLoras: o.maxCpuLoras, maxLoraRank: o.maxLoraRank };
  if (lm) {
    overrides.externalChunkTokens = lm.chunkTokens;
    if (lm.chunkTokens % o.blockSize !== 0)
      throw new CliError(
        `LMCache chunk_size (${lm.chunkTokens}) must be a multiple of --block-size (${o.blockSize})`,
      );
  }
  const config = asCliError(() => defaultEngineConfig(model, gpu, overrides));
  asCliError(() => kvCapacity(config));
  return config;
}

export async function startSim(o: SimOptions): Promise<RunningSim> {
  const engineConfig = buildEngineConfig(o);
  const capacity = kvCapacity(engineConfig);
  const tokenizer = asCliError(() => tokenizerForModel(engineConfig.model));
  if (o.timeScale <= 0) throw new CliError("--time-scale must be > 0");
  const runtime = new SimRuntime(engineConfig, o.timeScale);
  let lmcache: LmcacheTier | null = null;
  if (o.lmcache) {
    const lmLog = logger("sim.lmcache");
    lmcache = new LmcacheTier(o.lmcache, o.model, engineConfig, lmLog);
    const problem = o.lmcache.remoteUrl ? keyProblem(lmcache.scheme) : null;
    if (problem) throw new CliError(problem);
    if (o.lmcache.remoteUrl && !SHA256_CBOR_NAMES.includes(o.lmcache.hashAlgorithm))
      lmLog.warn(
        { preCachingHashAlgorithm: o.lmcache.hashAlgorithm, hashSeed: o.hashSeed },
        "LMCache chunk keys: the sim computes them with sha256_cbor (LMCache's pre_caching_hash_algorithm " +
          `is ${o.lmcache.hashAlgorithm}, which only Python can compute). Sims share chunks with each other; ` +
          "real vLLM + LMCache engines share with them only when started with " +
          "LMCACHE_PRE_CACHING_HASH_ALGORITHM=sha256_cbor and the same PYTHONHASHSEED",
      );
    runtime.lmcache = lmcache;
  }
  const loras = new LoraRegistry();
  // vLLM loads the static adapters at start-up and refuses to start when one fails
  for (const m of o.loraModules) {
    try {
      await loadAdapter(loras, engineConfig.lora!.maxLoraRank, runtime, m.name, m.path);
    } catch (err) {
      throw new CliError(`--lora-modules ${m.name}=${m.path}: ${(err as Error).message}`);
    }
  }

  const kvCfg = o.kvEventsConfig ? asCliError(() => parseKvEventsConfig(o.kvEventsConfig)) : null;
  let publisher: ZmqEventPublisher | null = null;
  if (kvCfg && kvCfg.enabled && kvCfg.publisher !== "null") {
    // the layout of the release the sim claims; from 0.24 on, engine events name their KV-cache group
    const layout = layoutForVersion(o.vllmVersion);
    // a sim told to listen on one address (`--host 127.0.0.1`) binds its wildcard KV sockets there
    // too, where vLLM would bind them on every interface (docs/security.md)
    const curve = o.kvCurveDir ? asCliError(() => loadCurveKeys({ dir: o.kvCurveDir })) : null;
    publisher = await ZmqEventPublisher.create(kvCfg, {
      dataParallelRank: 0,
      layout,
      bindHost: o.host,
      curve,
    });
    runtime.kvSink = publisher;
    runtime.groupIdxOnEvents = layout === "map";
  }

  const state: SimContext["state"] = {
    ready: o.startupDelaySeconds <= 0,
    sleepState: "awake",
    generationRequests: 0,
    serverLoad: 0,
    draining: false,
    nextRequestNumber: 1,
    faultRandom: mulberry32(o.seed ^ 0x5eed),
  };
  const release = metricsRelease(o.vllmVersion);
  const metrics = new SimMetrics({
    modelName: o.servedModelNames[0]!,
    maxModelLen: engineConfig.maxModelLen,
    cacheConfig: cacheConfigLabels(release, {
      blockSize: engineConfig.blockSize,
      enablePrefixCaching: engineConfig.enablePrefixCaching,
      gpuMemoryUtilization: engineConfig.gpuMemoryUtilization,
      numGpuBlocks: capacity.numGpuBlocks,
      numCpuBlocks: capacity.numCpuBlocks,
      numGpuBlocksOverride: engineConfig.numGpuBlocksOverride ?? null,
      prefixCachingHashAlgo: o.prefixCachingHashAlgo,
      maxModelLen: engineConfig.maxModelLen,
      offloadingBackend: o.lmcache ? "lmcache" : o.kvOffloadingGiB ? "native" : null,
      offloadingGiB: o.lmcache
        ? (o.lmcache.localCpuBytesPerRank * engineConfig.tensorParallelSize) / GiB
        : (o.kvOffloadingGiB ?? null),
    }),
    release,
    loraEnabled: o.enableLora || o.loraModules.length > 0,
    offloadEnabled: engineConfig.offload !== null,
    lmcache: lmcache ? () => lmcache.stats() : undefined,
    maxLoras: o.maxLoras,
    snapshot: () => runtime.snapshot(),
    sleepState: () => state.sleepState,
    loraActivity: () => runtime.loraActivity(),
    engineConfig,
    inFlight: () => runtime.inFlight,
    kvConnector: o.lmcache !== null || o.disagg !== null,
  });
  runtime.metrics = metrics;

  const tokenLiteral = new Map<number, string>();
  const tokenText = new Map<number, string>();
  const pool = tokenizer.outputPool;
  for (let i = 0; i < pool.ids.length; i++) {
    tokenText.set(pool.ids[i]!, pool.texts[i]!);
    tokenLiteral.set(pool.ids[i]!, JSON.stringify(pool.texts[i]!));
  }
  // The modelled EOS token ends an answer with an empty delta, as vLLM skips special tokens in text.
  tokenText.set(tokenizer.eosTokenId, "");
  tokenLiteral.set(tokenizer.eosTokenId, '""');

  const ctx: SimContext = {
    options: o,
    model: engineConfig.model,
    engineConfig,
    runtime,
    tokenizer,
    metrics,
    loras,
    state,
    servedName: o.servedModelNames[0]!,
    startedAt: Math.floor(Date.now() / 1000),
    tokenLiteral,
    tokenText,
    kvEventSources: kvEventSources(kvCfg, publisher),
  };

  const server = createSimServer(ctx);
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // A deep accept queue: thousands of clients connecting at once must not wait on SYN retries
    // (Node's default backlog is 511; uvicorn, in front of vLLM, uses 2048).
    server.listen({ port: o.port, host: o.host, backlog: 4096 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.host === "0.0.0.0" || o.host === "::" ? "127.0.0.1" : o.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  let disagg: DisaggConnector | null = null;
  if (o.disagg) {
    // the side channel is this HTTP server: decode engines need its address, known only once listening
    const sideHost = o.disagg.sideChannelHost ?? host;
    const engineId = o.disagg.engineId ?? deriveEngineId(o.model, sideHost, port, o.seed);
    disagg = new DisaggConnector(
      o.disagg,
      engineConfig,
      o.timeScale,
      engineId,
      sideHost,
      port,
      logger("sim.nixl"),
    );
    disagg.registerMetrics(
      metrics.registry,
      { model_name: ctx.servedName, engine: "0" },
      () => runtime.snapshot().counters.externalHitTokens,
    );
    ctx.disagg = disagg;
    runtime.disagg = disagg;
  }

  let readyTimer: NodeJS.Timeout | null = null;
  if (!state.ready) {
    readyTimer = setTimeout(() => {
      state.ready = true;
      log.info("startup delay over: ready");
    }, o.startupDelaySeconds * 1000);
  }
  log.info(
    {
      model: engineConfig.model.id,
      gpu: engineConfig.gpu.id,
      tp: engineConfig.tensorParallelSize,
      numGpuBlocks: capacity.numGpuBlocks,
      numCpuBlocks: capacity.numCpuBlocks,
      maxModelLen: engineConfig.maxModelLen,
      maxNumSeqs: engineConfig.maxNumSeqs,
      maxNumBatchedTokens: engineConfig.maxNumBatchedTokens,
      timeScale: o.timeScale,
      lmcache: o.lmcache
        ? { remote: o.lmcache.remoteUrl, localCpuBytesPerRank: o.lmcache.localCpuBytesPerRank }
        : undefined,
      nixl: disagg ? { role: disagg.role, engineId: disagg.engineId } : undefined,
      url,
    },
    "sim listening",
  );

  let closed = false;
  return {
    ctx,
    url,
    port,
    kvEventsEndpoint: publisher?.endpoint ?? null,
    kvReplayEndpoint: publisher?.replayEndpoint ?? null,
    drain: async (timeoutS: number) => {
      if (!state.draining) log.info({ inFlight: state.serverLoad, timeoutS }, "draining");
      state.draining = true;
      const end = performance.now() + timeoutS * 1000;
      while (state.serverLoad > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 50));
    },
    close: async () => {
      if (closed) return;
      closed = true;
      if (readyTimer) clearTimeout(readyTimer);
      runtime.stop();
      if (lmcache) await lmcache.close();
      if (disagg) await disagg.close();
      // Streams in flight are cut: clients see the connection end, as when vLLM stops.
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (publisher) await publisher.close();
    },
  };
}

/** The ready-to-paste request printed at startup. */
export function curlExample(sim: RunningSim): string {
  const o = sim.ctx.options;
  const auth = o.apiKey ? ` -H 'Authorization: Bearer ${o.apiKey}'` : "";
  const body = JSON.stringify({
    model: sim.ctx.servedName,
    messages: [{ role: "user", content: "Hello!" }],
    max_tokens: 32,
    stream: true,
  });
  const path = sim.ctx.tokenizer.hasChatTemplate ? "/v1/chat/completions" : "/v1/completions";
  const payload = sim.ctx.tokenizer.hasChatTemplate
    ? body
    : JSON.stringify({ model: sim.ctx.servedName, prompt: "Hello!", max_tokens: 32, stream: true });
  return `curl -N ${sim.url}${path} -H 'Content-Type: application/json'${auth} -d '${payload}'`;
}
