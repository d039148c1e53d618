// `switchyard cache-server`: flags → startCacheServer, then wait for SIGINT/SIGTERM.
import { z } from "zod";
import { CliError } from "../config/args.js";
import { commandFlags, parseCommandFlags } from "../config/command.js";
import { flag } from "../config/schema-flags.js";
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

const GIB = 2 ** 30;
const port = z.number().int().min(0).max(65535);

/** The command's options: each field declares its flag, type, bounds, default and help. */
const cacheServerOptions = z.object({
  host: flag(z.string().default("0.0.0.0"), {
    flag: "host",
    help: "address to listen on (and --listen's default host)",
  }),
  port: flag(z.number().int().min(0).max(65535).default(DEFAULT_PORT), {
    flag: "port",
    help: "lm:// port (0 picks a free one)",
  }),
  listen: flag(z.array(z.string()).default([]), {
    flag: "listen",
    help: "[HOST:]PORT[=NAMESPACE], repeatable: listeners whose clients' keys live in NAMESPACE (replaces --port)",
  }),
  namespaceCidr: flag(z.array(z.string()).default([]), {
    flag: "namespace-cidr",
    help: "CIDR=NAMESPACE, repeatable: clients from these addresses use NAMESPACE (first match; before --listen's)",
  }),
  maxMemory: flag(z.number().default(16 * GIB), {
    flag: "max-memory",
    kind: "size",
    help: "memory budget for stored objects (LRU beyond it)",
  }),
  maxObjectSize: flag(z.number().default(GIB), {
    flag: "max-object-size",
    kind: "size",
    help: "largest PUT accepted; a larger one closes the connection (capped at --max-memory)",
  }),
  diskDir: flag(z.string().optional(), {
    flag: "disk-dir",
    help: "folder for the disk tier (objects evicted from memory go there)",
  }),
  maxDisk: flag(z.number().default(200 * GIB), {
    flag: "max-disk",
    kind: "size",
    help: "disk tier budget (LRU beyond it)",
  }),
  maxConnections: flag(z.number().int().min(1).default(DEFAULT_MAX_CONNECTIONS), {
    flag: "max-connections",
    help: "connections beyond this are closed at accept",
  }),
  namespaceMemoryShare: flag(z.number().min(0.001).max(1).optional(), {
    flag: "namespace-memory-share",
    help: "share of --max-memory one namespace may hold (default 0.5 with more than one namespace, else 1)",
  }),
  namespaceMaxConnections: flag(z.number().int().min(1).optional(), {
    flag: "namespace-max-connections",
    help: "connections one namespace may hold open (default half of --max-connections with more than one namespace)",
  }),
  stallTimeout: flag(
    z
      .number()
      .min(0.001)
      .default(DEFAULT_STALL_TIMEOUT_MS / 1000),
    {
      flag: "stall-timeout",
      help: "seconds a peer may move no bytes mid-request or with unread replies before it is closed",
    },
  ),
  putTimeout: flag(
    z
      .number()
      .min(0.001)
      .default(DEFAULT_PUT_TIMEOUT_MS / 1000),
    {
      flag: "put-timeout",
      help: "seconds a PUT may take from its header to its last byte before its connection is closed",
    },
  ),
  respPort: flag(port.optional(), {
    flag: "resp-port",
    help: "also serve RESP (Redis protocol: GET/SET/EXISTS/DEL...) on this port, same store (LMCache's RESP L2 adapter)",
  }),
  kvEventsPort: flag(port.optional(), {
    flag: "kv-events-port",
    help: "announce the LMCache chunks held and evicted as vLLM KV events (ZMQ PUB, medium LMCACHE_SHARED) on this port, for a router's shared-tier index (off when not given)",
  }),
  kvEventsReplayPort: flag(port.optional(), {
    flag: "kv-events-replay-port",
    help: "with --kv-events-port: serve replays of recent KV-event batches on this port (vLLM's replay ROUTER)",
  }),
  kvEventsChunkTokens: flag(z.number().int().min(1).default(DEFAULT_EVENT_CHUNK_TOKENS), {
    flag: "kv-events-chunk-tokens",
    help: "tokens per LMCache chunk (its chunk_size), written as the events' block_size",
  }),
  kvEventsNamespace: flag(z.string().optional(), {
    flag: "kv-events-namespace",
    help: "the namespace whose chunks are announced (default: the unnamed one)",
  }),
  kvEventsCurveDir: flag(z.string().optional(), {
    flag: "kv-events-curve-dir",
    help: "with --kv-events-port: ZMQ CURVE for the events (a directory with secret.key, and clients.keys: the routers' public keys admitted); the router names this server's public key (routing.cacheServers[].serverKey)",
  }),
  metricsPort: flag(port.optional(), {
    flag: "metrics-port",
    help: "serve Prometheus metrics at http://HOST:PORT/metrics (off when not given)",
  }),
});
const FLAGS = commandFlags(cacheServerOptions);

const USAGE = `usage: switchyard cache-server [--host H] [--port P | --listen [HOST:]PORT=NAMESPACE ...] [--namespace-cidr CIDR=NAMESPACE ...] [--max-memory 16GiB] [--disk-dir DIR --max-disk 200GiB] [--max-connections N] [--namespace-memory-share F] [--namespace-max-connections N] [--stall-timeout S] [--put-timeout S] [--resp-port P] [--kv-events-port P [--kv-events-replay-port P] [--kv-events-chunk-tokens ${DEFAULT_EVENT_CHUNK_TOKENS}] [--kv-events-curve-dir DIR]] [--metrics-port P]`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandFlags(argv, USAGE, FLAGS);
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
