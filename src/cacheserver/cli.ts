// `switchyard cache-server`: flags → startCacheServer, then wait for SIGINT/SIGTERM.
import { CliError, parseCommand, type FlagSpecs } from "../config/args.js";
import { onShutdown } from "../obs/lifecycle.js";
import { logger } from "../obs/log.js";
import { checkNamespace, parseCidrRule, parseListen } from "./namespace.js";
import { loadCurveKeys, type CurveKeys } from "../kvevents/curve.js";
import { DEFAULT_EVENT_CHUNK_TOKENS } from "./kv-events.js";
import {
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_PORT,
  DEFAULT_PUT_TIMEOUT_MS,
  DEFAULT_STALL_TIMEOUT_MS,
  startCacheServer,
} from "./server.js";

const specs: FlagSpecs = {
  host: { type: "string", default: "0.0.0.0", help: "address to listen on (and --listen's default host)" },
  port: { type: "int", default: DEFAULT_PORT, min: 0, max: 65535, help: "lm:// port (0 picks a free one)" },
  listen: {
    type: "list",
    help: "[HOST:]PORT[=NAMESPACE], repeatable: listeners whose clients' keys live in NAMESPACE (replaces --port)",
  },
  "namespace-cidr": {
    type: "list",
    help: "CIDR=NAMESPACE, repeatable: clients from these addresses use NAMESPACE (first match; before --listen's)",
  },
  "max-memory": { type: "size", default: "16GiB", help: "memory budget for stored objects (LRU beyond it)" },
  "max-object-size": {
    type: "size",
    default: "1GiB",
    help: "largest PUT accepted; a larger one closes the connection (capped at --max-memory)",
  },
  "disk-dir": { type: "string", help: "folder for the disk tier (objects evicted from memory go there)" },
  "max-disk": { type: "size", default: "200GiB", help: "disk tier budget (LRU beyond it)" },
  "max-connections": {
    type: "int",
    default: DEFAULT_MAX_CONNECTIONS,
    min: 1,
    help: "connections beyond this are closed at accept",
  },
  "namespace-memory-share": {
    type: "number",
    min: 0.001,
    max: 1,
    help: "share of --max-memory one namespace may hold (default 0.5 with more than one namespace, else 1)",
  },
  "namespace-max-connections": {
    type: "int",
    min: 1,
    help: "connections one namespace may hold open (default half of --max-connections with more than one namespace)",
  },
  "stall-timeout": {
    type: "number",
    default: DEFAULT_STALL_TIMEOUT_MS / 1000,
    min: 0.001,
    help: "seconds a peer may move no bytes mid-request or with unread replies before it is closed",
  },
  "put-timeout": {
    type: "number",
    default: DEFAULT_PUT_TIMEOUT_MS / 1000,
    min: 0.001,
    help: "seconds a PUT may take from its header to its last byte before its connection is closed",
  },
  "resp-port": {
    type: "int",
    min: 0,
    max: 65535,
    help: "also serve RESP (Redis protocol: GET/SET/EXISTS/DEL...) on this port, same store (LMCache's RESP L2 adapter)",
  },
  "kv-events-port": {
    type: "int",
    min: 0,
    max: 65535,
    help: "announce the LMCache chunks held and evicted as vLLM KV events (ZMQ PUB, medium LMCACHE_SHARED) on this port, for a router's shared-tier index (off when not given)",
  },
  "kv-events-replay-port": {
    type: "int",
    min: 0,
    max: 65535,
    help: "with --kv-events-port: serve replays of recent KV-event batches on this port (vLLM's replay ROUTER)",
  },
  "kv-events-chunk-tokens": {
    type: "int",
    default: DEFAULT_EVENT_CHUNK_TOKENS,
    min: 1,
    help: "tokens per LMCache chunk (its chunk_size), written as the events' block_size",
  },
  "kv-events-namespace": {
    type: "string",
    help: "the namespace whose chunks are announced (default: the unnamed one)",
  },
  "kv-events-curve-dir": {
    type: "string",
    help: "with --kv-events-port: ZMQ CURVE for the events (a directory with secret.key, and clients.keys: the routers' public keys admitted); the router names this server's public key (routing.cacheServers[].serverKey)",
  },
  "metrics-port": {
    type: "int",
    min: 0,
    max: 65535,
    help: "serve Prometheus metrics at http://HOST:PORT/metrics (off when not given)",
  },
};

const USAGE = `usage: switchyard cache-server [--host H] [--port P | --listen [HOST:]PORT=NAMESPACE ...] [--namespace-cidr CIDR=NAMESPACE ...] [--max-memory 16GiB] [--disk-dir DIR --max-disk 200GiB] [--max-connections N] [--namespace-memory-share F] [--namespace-max-connections N] [--stall-timeout S] [--put-timeout S] [--resp-port P] [--kv-events-port P [--kv-events-replay-port P] [--kv-events-chunk-tokens ${DEFAULT_EVENT_CHUNK_TOKENS}] [--kv-events-curve-dir DIR]] [--metrics-port P]`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, USAGE, specs);
  if (!parsed) return 0;
  const { flags, given } = parsed;
  const sizeFlag = (name: string) => flags[name] as number;
  const maxMemoryBytes = sizeFlag("max-memory");
  if (maxMemoryBytes <= 0) throw new CliError("--max-memory must be positive");
  const listenFlags = flags.listen as string[];
  if (listenFlags.length > 0 && given.has("port"))
    throw new CliError("--port and --listen: give the default namespace's listener as --listen PORT");
  let listen, namespaceByAddress;
  try {
    listen =
      listenFlags.length > 0 ? listenFlags.map((l) => parseListen(l, flags.host as string)) : undefined;
    namespaceByAddress = (flags["namespace-cidr"] as string[]).map(parseCidrRule);
    const eventsNs = flags["kv-events-namespace"] as string | undefined;
    if (eventsNs !== undefined) checkNamespace(eventsNs, "--kv-events-namespace");
  } catch (err) {
    if (err instanceof RangeError) throw new CliError(err.message);
    throw err;
  }
  if (!given.has("kv-events-port")) {
    for (const f of [
      "kv-events-replay-port",
      "kv-events-chunk-tokens",
      "kv-events-namespace",
      "kv-events-curve-dir",
    ])
      if (given.has(f)) throw new CliError(`--${f} needs --kv-events-port`);
  }
  const kvEvents = given.has("kv-events-port")
    ? {
        port: flags["kv-events-port"] as number,
        replayPort: flags["kv-events-replay-port"] as number | undefined,
        chunkTokens: flags["kv-events-chunk-tokens"] as number,
        namespace: flags["kv-events-namespace"] as string | undefined,
        curve: given.has("kv-events-curve-dir") ? curveKeysOf(flags["kv-events-curve-dir"] as string) : null,
      }
    : undefined;
  const server = await startCacheServer({
    host: flags.host as string,
    port: flags.port as number,
    listen,
    namespaceByAddress,
    maxMemoryBytes,
    maxObjectBytes: sizeFlag("max-object-size"),
    diskDir: flags["disk-dir"] as string | undefined,
    maxDiskBytes: sizeFlag("max-disk"),
    metricsPort: flags["metrics-port"] as number | undefined,
    respPort: flags["resp-port"] as number | undefined,
    maxConnections: flags["max-connections"] as number,
    namespaceMemoryShare: flags["namespace-memory-share"] as number | undefined,
    namespaceMaxConnections: flags["namespace-max-connections"] as number | undefined,
    stallTimeoutMs: (flags["stall-timeout"] as number) * 1000,
    putTimeoutMs: (flags["put-timeout"] as number) * 1000,
    kvEvents,
    log: logger("cache-server"),
  });
  onShutdown(() => server.close());
  await new Promise(() => {}); // runs until a signal; shutdown() exits the process
  return 0;
}

/** The events' CURVE keys from a directory, a bad one refused as a usage error. */
function curveKeysOf(dir: string): CurveKeys {
  try {
    return loadCurveKeys({ dir });
  } catch (err) {
    throw new CliError(`--kv-events-curve-dir ${dir}: ${(err as Error).message}`);
  }
}
