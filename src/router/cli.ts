// `switchyard router`: flags and an optional YAML file (hot-reloaded) → a running router. This is the
// router's start-up wiring: which process this is (a lone router, a group's primary or one of its
// workers) decides what is started, so the worker's start is composed here, where startRouter and the
// worker's link to its primary meet (cluster/ stays below index.ts: it never starts a router itself).
import { CliError, helpText, parseFlags, wantsHelp, type FlagSpecs } from "../config/args.js";
import { onShutdown } from "../obs/lifecycle.js";
import cluster from "node:cluster";
import type { AddressInfo } from "node:net";
import { ConfigError, loadConfig, type RouterConfigInput } from "./config/config.js";
import { ROUTER_PORT } from "../config/defaults.js";
import { GPU_IDS_TEXT } from "../models/index.js";
import { DEFAULT_POLICY, POLICY_HELP } from "../routing/index.js";
import { startRouter } from "./index.js";
import { runPrimary } from "./cluster/primary.js";
import { awaitStart, WorkerLink } from "./cluster/worker.js";

const specs: FlagSpecs = {
  config: { type: "string", help: "YAML config file (watched: changes apply without dropping requests)" },
  host: { type: "string", default: "0.0.0.0", help: "address to listen on" },
  port: { type: "int", default: ROUTER_PORT, min: 0, max: 65535, help: "port to listen on" },
  workers: {
    type: "int",
    min: 1,
    max: 256,
    help: "worker processes serving the port, sharing engines, health, load and routing state (default 1, a single process; see docs/router.md for when more help)",
  },
  "peers-bind": {
    type: "string",
    help: "active-active replicas: publish this replica's load and routing picks here (e.g. tcp://*:5590)",
  },
  peer: { type: "list", help: "another replica's --peers-bind endpoint (tcp://host:5590), repeatable" },
  "peers-dns": {
    type: "string",
    help: "host:port of a DNS name whose addresses are the replicas (a headless Service), re-resolved every 10 s",
  },
  "peers-secret-file": {
    type: "string",
    help: "file holding the replicas' shared secret: reports are signed with it, unsigned ones dropped (with tenancy on, stored responses' owners cross replicas only so)",
  },
  backend: {
    type: "list",
    help: "engine base URL, repeatable; URL#weight (e.g. http://e2:8000#0.1) sets a canary weight; h2c://host:port reaches it over cleartext HTTP/2",
  },
  "lora-dir": {
    type: "string",
    help: "LoRA adapters the router loads on demand: each subfolder a PEFT adapter, named by its folder (engines need VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and the same path)",
  },
  "lora-max-cpu-loras": {
    type: "int",
    min: 1,
    help: "the engines' --max-cpu-loras: adapters the router keeps loaded on one engine at most (default: their max_lora)",
  },
  policy: {
    type: "string",
    default: DEFAULT_POLICY,
    help: `routing policy: ${POLICY_HELP}`,
  },
  "predictive-gpu": {
    type: "string",
    help: `predictive policy: the engines' GPU profile (${GPU_IDS_TEXT}); none = learn each engine's speed from its metrics`,
  },
  "predictive-tp": {
    type: "int",
    min: 1,
    max: 8,
    help: "predictive policy: the engines' tensor-parallel size (default 1)",
  },
  "predictive-time-scale": {
    type: "number",
    help: "predictive policy: the engines are switchyard sims at --time-scale S (their times are S× the GPU's)",
  },
  "predictive-queued-prompts": {
    type: "int",
    min: 0,
    max: 1024,
    help: "predictive policy, late binding: this router's streamed prompts awaiting a first token an engine may have before the next one picked for it waits in the router, cheapest first (default 2: one being prefilled, one ready to follow; 0 binds every request at once)",
  },
  "predictive-min-cached-share": {
    type: "number",
    help: "predictive policy, late binding: hold requests only while the router's picks find at least this share of their prompts cached, a moving mean (default 0.2; 0 holds whatever the share)",
  },
  "slo-ttft-ms": {
    type: "number",
    help: "default TTFT SLO in ms (requests may set their own with x-slo-ttft-ms); the predictive policy answers 429 with Retry-After when no engine can meet it",
  },
  "hash-seed": {
    type: "string",
    help: "the engines' PYTHONHASHSEED, for KV-event routing (default $PYTHONHASHSEED, else 0)",
  },
  "tokenizer-dir": {
    type: "list",
    help: "MODEL=DIR: the served model's tokenizer.json + tokenizer_config.json for exact KV routing (repeatable)",
  },
  "kv-events-port": {
    type: "int",
    min: 1,
    max: 65535,
    help: "engines publish KV events on tcp://<engine host>:PORT (+ i for backend i with --kv-events-by-index)",
  },
  "kv-events-replay-port": {
    type: "int",
    min: 1,
    max: 65535,
    help: "engines' KV-event replay port (same rule)",
  },
  "kv-events-bind": {
    type: "string",
    help: "collector mode: bind one SUB socket here (e.g. tcp://*:5557) for engines whose --kv-events-config endpoint points at the router; their topics must read kv@<engine host:port>@<model>",
  },
  "kv-events-by-index": {
    type: "boolean",
    default: false,
    help: "add the backend's position to both ports (switchyard up)",
  },
  "kv-curve-dir": {
    type: "string",
    help: "CURVE keys for the KV-event sockets (routing.kvEvents.curve.dir): a directory, e.g. a mounted Secret, with secret.key (the router's, not readable by other users), server.key (the publishers' public key), clients.keys (publishers the collector lets in) and engines.keys (each engine's own public key by URL); Switchyard's sims only, vLLM cannot do CURVE",
  },
  "kv-events-plain": {
    type: "boolean",
    default: false,
    help: "take KV events from endpoints beyond this host without authentication on purpose (routing.kvEvents.plain): silences the warning; keep them on a private network",
  },
  "cache-server-events": {
    type: "string",
    help: "a shared LMCache cache server's KV events (its --kv-events-port, e.g. tcp://cache:5600) that every engine loads from: predictive prices the prefix it holds at its load time (routing.cacheServers)",
  },
  "cache-server-replay": {
    type: "string",
    help: "with --cache-server-events: the server's replay endpoint (its --kv-events-replay-port)",
  },
  "cache-server-bandwidth-gbps": {
    type: "number",
    help: "with --cache-server-events: the engines' link to it, gigabits/s (default 100)",
  },
  "cache-server-chunk-tokens": {
    type: "int",
    min: 1,
    help: "with --cache-server-events: the engines' LMCache chunk_size (default 256)",
  },
  "cache-server-key": {
    type: "string",
    help: "with --cache-server-events and --kv-curve-dir: the server's CURVE public key (Z85), whose events alone are believed (default: the router's server.key)",
  },
  "session-header": { type: "string", default: "x-session-id", help: "header carrying the session key" },
  "session-key": { type: "string", help: "body field used as the session key when the header is absent" },
  "session-infer": {
    type: "boolean",
    default: true,
    negatable: true,
    help: "a request naming no session (no agentic_context, header, body field or previous_response_id) joins the session whose last prompt it extends (only under a policy that reads session keys: all but round-robin, least-load and vllm-router-cache-aware)",
  },
  "max-sessions": {
    type: "int",
    min: 1,
    default: 65_536,
    help: "sessions remembered for session identity (the least recently seen dropped beyond)",
  },
  "session-idle-timeout": {
    type: "string",
    default: "30m",
    help: "a session unseen this long is forgotten",
  },
  "engine-api-key": { type: "string", help: "API key the engines expect (default: $VLLM_API_KEY)" },
  "max-body-size": {
    type: "size",
    default: "16MiB",
    help: "largest request body accepted (413 above); keep it at or under the engines' limit (the sim's is 16MiB)",
  },
  "listen-sockets": {
    type: "int",
    min: 1,
    max: 64,
    help: "listening sockets sharing the port (SO_REUSEPORT, Node 22.12+ on Linux, an explicit --port): a burst of new connections is accepted this many per event-loop turn (per worker with --workers); only where no other process of this user may bind the port, as in a pod (default 1)",
  },
  "max-in-flight-per-engine": { type: "int", default: 0, min: 0, help: "per-engine in-flight cap; 0 = none" },
  "queue-size": { type: "int", default: 1024, min: 0, help: "requests that may wait for room (429 beyond)" },
  "queue-timeout": { type: "string", default: "30s", help: "longest wait in the queue before 429" },
  "connect-timeout": { type: "string", default: "5s", help: "upstream connect timeout" },
  "first-byte-timeout": { type: "string", default: "10m", help: "time to the first response byte" },
  "idle-timeout": { type: "string", default: "5m", help: "longest gap between streamed chunks" },
  "total-timeout": { type: "string", default: "1h", help: "longest request" },
  "max-attempts": { type: "int", default: 3, min: 1, max: 10, help: "engines tried per request" },
  "drain-timeout": {
    type: "string",
    default: "30s",
    help: "on SIGTERM: stop accepting, let in-flight requests finish for up to this long, then close",
  },
  "engine-drain-timeout": {
    type: "string",
    default: "30s",
    help: "an engine leaving discovery, draining, or drained by hand: its in-flight requests finish for up to this long, then streams move to other engines",
  },
  discovery: {
    type: "string",
    default: "static",
    help: "where engines come from besides --backend: static, kubernetes (pods), file (--discovery-file)",
  },
  "discovery-file": { type: "string", help: "YAML/JSON list of backends, re-read on change" },
  "k8s-namespace": { type: "string", help: "namespace of the engine pods (default: the router's own)" },
  "k8s-selector": {
    type: "string",
    default: "switchyard.dev/engine=true",
    help: "label selector of the engine pods",
  },
  "k8s-api-url": {
    type: "string",
    help: "API server URL (default: in-cluster KUBERNETES_SERVICE_HOST/PORT with the service account)",
  },
  "k8s-token-file": { type: "string", help: "bearer token file for --k8s-api-url" },
  "k8s-ca-file": { type: "string", help: "CA bundle for an https --k8s-api-url" },
  "k8s-resync": { type: "string", default: "5m", help: "full pod re-list interval besides the watch" },
  "epp-port": {
    type: "int",
    min: 0,
    max: 65535,
    help: "also serve the Gateway API Inference Extension endpoint picker (Envoy ext_proc v3, gRPC) on this port",
  },
  "epp-tls-cert": {
    type: "string",
    help: "PEM certificate chain for the endpoint picker (with --epp-tls-key)",
  },
  "epp-tls-key": { type: "string", help: "PEM private key for the endpoint picker (with --epp-tls-cert)" },
  "epp-tls-client-ca": {
    type: "string",
    help: "PEM CA bundle: the endpoint picker requires a client certificate it signed (with --epp-tls-cert)",
  },
  "otlp-endpoint": {
    type: "string",
    help: "OTLP/HTTP collector for request spans, e.g. http://otel-collector:4318 (default $OTEL_EXPORTER_OTLP_ENDPOINT; none = tracing off)",
  },
};

/** Flags given on the command line, as a partial config (file values stay where flags are silent). */
function flagsToConfig(flags: Record<string, unknown>, given: Set<string>): RouterConfigInput {
  const c: Record<string, Record<string, unknown> | unknown> = {};
  const sub = (k: string): Record<string, unknown> => (c[k] ??= {}) as Record<string, unknown>;
  const has = (n: string) => given.has(n);
  if (has("host")) c.host = flags.host;
  if (has("port")) c.port = flags.port;
  if (has("workers")) c.workers = flags.workers;
  if (has("peers-bind")) sub("peers").bind = flags["peers-bind"];
  if (has("peer")) sub("peers").endpoints = flags.peer;
  if (has("peers-dns")) sub("peers").dns = flags["peers-dns"];
  if (has("peers-secret-file")) sub("peers").secretFile = flags["peers-secret-file"];
  if (has("policy")) c.policy = flags.policy;
  if (has("lora-dir")) sub("lora").dir = flags["lora-dir"];
  if (has("lora-max-cpu-loras")) sub("lora").maxCpuLoras = flags["lora-max-cpu-loras"];
  if (has("backend")) {
    c.backends = (flags.backend as string[]).map((b) => {
      const hash = b.lastIndexOf("#");
      if (hash < 0) return b;
      const weight = Number(b.slice(hash + 1));
      if (!Number.isFinite(weight) || weight < 0)
        throw new CliError(`--backend ${b}: weight must be a number ≥ 0`);
      return { url: b.slice(0, hash), weight };
    });
  }
  if (has("session-header")) sub("session").header = flags["session-header"];
  if (has("session-key")) sub("session").bodyKey = flags["session-key"];
  if (has("session-infer")) sub("session").infer = flags["session-infer"];
  if (has("max-sessions")) sub("session").maxSessions = flags["max-sessions"];
  if (has("session-idle-timeout")) sub("session").idleTimeout = flags["session-idle-timeout"];
  if (has("engine-api-key")) c.engineApiKey = flags["engine-api-key"];
  if (has("max-body-size")) sub("limits").maxBodyBytes = flags["max-body-size"];
  if (has("listen-sockets")) sub("limits").listenSockets = flags["listen-sockets"];
  if (has("max-in-flight-per-engine"))
    sub("admission").maxInFlightPerEngine = flags["max-in-flight-per-engine"];
  if (has("queue-size")) sub("admission").queueSize = flags["queue-size"];
  if (has("queue-timeout")) sub("admission").queueTimeout = flags["queue-timeout"];
  if (has("connect-timeout")) sub("timeouts").connect = flags["connect-timeout"];
  if (has("first-byte-timeout")) sub("timeouts").firstByte = flags["first-byte-timeout"];
  if (has("idle-timeout")) sub("timeouts").idle = flags["idle-timeout"];
  if (has("total-timeout")) sub("timeouts").total = flags["total-timeout"];
  if (has("max-attempts")) sub("retry").maxAttempts = flags["max-attempts"];
  if (has("drain-timeout")) c.drainTimeout = flags["drain-timeout"];
  if (has("engine-drain-timeout")) c.engineDrainTimeout = flags["engine-drain-timeout"];
  if (has("hash-seed")) sub("routing").hashSeed = flags["hash-seed"];
  if (has("tokenizer-dir")) {
    const dirs: Record<string, string> = {};
    for (const kv of flags["tokenizer-dir"] as string[]) {
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new CliError(`--tokenizer-dir ${kv}: expected MODEL=DIR`);
      dirs[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    sub("routing").tokenizers = dirs;
  }
  if (
    has("kv-events-port") ||
    has("kv-events-bind") ||
    has("kv-curve-dir") ||
    flags["kv-events-plain"] === true
  ) {
    const kvEvents: Record<string, unknown> = {};
    if (has("kv-events-port"))
      kvEvents.derive = {
        port: flags["kv-events-port"],
        replayPort: flags["kv-events-replay-port"],
        byIndex: flags["kv-events-by-index"] === true,
      };
    if (has("kv-events-bind")) kvEvents.bind = flags["kv-events-bind"];
    if (has("kv-curve-dir")) kvEvents.curve = { dir: flags["kv-curve-dir"] };
    if (flags["kv-events-plain"] === true) kvEvents.plain = true;
    sub("routing").kvEvents = kvEvents;
  }
  if (has("cache-server-events")) {
    const server: Record<string, unknown> = { name: "cache-server", events: flags["cache-server-events"] };
    if (has("cache-server-replay")) server.replay = flags["cache-server-replay"];
    if (has("cache-server-bandwidth-gbps")) server.bandwidthGbps = flags["cache-server-bandwidth-gbps"];
    if (has("cache-server-chunk-tokens")) server.chunkTokens = flags["cache-server-chunk-tokens"];
    if (has("cache-server-key")) server.serverKey = flags["cache-server-key"];
    sub("routing").cacheServers = [server];
  } else {
    const only = [
      "cache-server-replay",
      "cache-server-bandwidth-gbps",
      "cache-server-chunk-tokens",
      "cache-server-key",
    ];
    for (const f of only) if (has(f)) throw new CliError(`--${f} needs --cache-server-events`);
  }
  if (has("discovery")) {
    const mode = flags.discovery as string;
    if (!["static", "kubernetes", "file"].includes(mode))
      throw new CliError(`--discovery ${mode}: expected static, kubernetes or file`);
    sub("discovery").mode = mode;
  }
  if (has("discovery-file")) {
    sub("discovery").file = flags["discovery-file"];
    if (!has("discovery")) sub("discovery").mode = "file";
  }
  const k8s: Record<string, unknown> = {};
  if (has("k8s-namespace")) k8s.namespace = flags["k8s-namespace"];
  if (has("k8s-selector")) k8s.selector = flags["k8s-selector"];
  if (has("k8s-api-url")) k8s.apiUrl = flags["k8s-api-url"];
  if (has("k8s-token-file")) k8s.tokenFile = flags["k8s-token-file"];
  if (has("k8s-ca-file")) k8s.caFile = flags["k8s-ca-file"];
  if (has("k8s-resync")) k8s.resyncInterval = flags["k8s-resync"];
  if (Object.keys(k8s).length > 0) sub("discovery").kubernetes = k8s;
  if (has("otlp-endpoint")) sub("tracing").otlpEndpoint = flags["otlp-endpoint"];
  if (has("epp-port")) sub("epp").port = flags["epp-port"];
  if (has("epp-tls-cert")) sub("epp").tlsCertFile = flags["epp-tls-cert"];
  if (has("epp-tls-key")) sub("epp").tlsKeyFile = flags["epp-tls-key"];
  if (has("epp-tls-client-ca")) sub("epp").tlsClientCaFile = flags["epp-tls-client-ca"];
  if (has("predictive-gpu")) sub("predictive").gpu = flags["predictive-gpu"];
  if (has("predictive-tp")) sub("predictive").tensorParallelSize = flags["predictive-tp"];
  if (has("predictive-time-scale")) sub("predictive").timeScale = flags["predictive-time-scale"];
  if (has("predictive-queued-prompts")) sub("predictive").queuedPrompts = flags["predictive-queued-prompts"];
  if (has("predictive-min-cached-share"))
    sub("predictive").minCachedShare = flags["predictive-min-cached-share"];
  if (has("slo-ttft-ms")) sub("slo").ttftMs = flags["slo-ttft-ms"];
  return c as RouterConfigInput;
}

export async function main(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(helpText("usage: switchyard router [--config FILE] [--backend URL ...] [options]", specs));
    return 0;
  }
  const { flags, given, positionals } = parseFlags(argv, specs);
  if (positionals.length > 0) throw new CliError(`unexpected argument '${positionals[0]}'`);
  // a worker of a router process group: its config comes from the primary
  if (cluster.isWorker && process.env.SWITCHYARD_ROUTER_WORKER !== undefined) {
    await runWorker();
    return await new Promise<never>(() => undefined);
  }
  const overrides = flagsToConfig(flags, given);
  const configFile = flags.config as string | undefined;
  let cfg;
  try {
    cfg = loadConfig(overrides, configFile);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
  // the process-wide shutdown deadline must outlast the drain, else it would cut streams first
  const drainMs = cfg.drainTimeout;
  const shutdownMs = Number(process.env.SWITCHYARD_SHUTDOWN_MS ?? 0);
  if (!(shutdownMs > drainMs + 5_000)) process.env.SWITCHYARD_SHUTDOWN_MS = String(drainMs + 10_000);
  // one process unless asked: with a load-aware policy every pick is confirmed by the primary, and on a
  // 2-core machine that costs more than the second core gives (half the tiny requests, docs/router.md)
  const workers = cfg.workers ?? 1;
  if (workers > 1) {
    await runPrimary({ flags: overrides, configFile, workers });
    return await new Promise<never>(() => undefined);
  }
  let running;
  try {
    running = await startRouter(overrides, { configFile });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
  onShutdown(() => running.close());
  await new Promise<never>(() => undefined);
  return 0;
}

/** A worker process's life: wait for the primary's start, serve, drain on its word or a signal. */
async function runWorker(): Promise<void> {
  const start = await awaitStart();
  let link: WorkerLink | undefined;
  const running = await startRouter(start.config, {
    quiet: true,
    ownSockets: start.ownSockets === true,
    prepare: (router) => {
      link = new WorkerLink(router, start);
      router.group = link;
      // the worker's load-aware picks are claims its primary confirms (a lone router's just stand)
      router.proxy.useClaims(link.slotClaims);
      if (start.configFile) router.onReload = () => link!.reload();
    },
  });
  const l = link!;
  l.applyConfig = (c) => void running.apply(c);
  const addr = running.router.server.address() as AddressInfo;
  l.listening(addr.address, addr.port, addr.family);
  onShutdown(async () => {
    await running.close();
    l.close();
    running.router.proxy.useClaims(undefined);
  });
}
