// `switchyard up --cache-server`: the shared KV tier on one machine. One `switchyard cache-server` child
// is every engine's LMCache remote (lm://), and announces what it stores and evicts as KV events; the
// router subscribes to them and prices a prefix the server holds at its load time over the engines'
// link instead of a prefill (docs/routing.md). The engines and the router must agree on that link, so
// one flag sets it for both: the sims load at --cache-server-bandwidth-gbps / 8 GB/s, and the router
// prices loads at the same rate. Everything here is the wiring (arguments, environment, ports);
// up.ts starts and stops the processes.
import { createConnection } from "node:net";
import type { ChildProcess } from "node:child_process";
import { z } from "zod";
import { CliError, type FlagValues } from "../config/args.js";
import { flag } from "../config/schema-flags.js";
import type { StackPort } from "./ports.js";
import { flagValue } from "./up-pd.js";
import { CACHE_SERVER_PORT, LMCACHE_CHUNK_TOKENS } from "../config/vllm-defaults.js";

/** The cache server flags of `switchyard up`: fields of its option schema (src/cli/up-options.ts). */
export const CACHE_SERVER_OPTIONS = {
  cacheServer: flag(z.boolean().default(false), {
    flag: "cache-server",
    help: "also run one `switchyard cache-server` as every engine's LMCache remote (the sims run with --kv-offloading-backend lmcache), and route by what it holds (its KV events)",
  }),
  cacheServerPort: flag(z.number().int().min(1).max(65535).default(CACHE_SERVER_PORT), {
    flag: "cache-server-port",
    help: "the cache server's lm:// port, with --cache-server",
  }),
  cacheServerEventsPort: flag(z.number().int().min(1).max(65535).default(65433), {
    flag: "cache-server-events-port",
    help: "the cache server's KV-event PUB port (the router subscribes to it), with --cache-server",
  }),
  cacheServerMetricsPort: flag(z.number().int().min(1).max(65535).default(65434), {
    flag: "cache-server-metrics-port",
    help: "the cache server's Prometheus /metrics port (scraped by --monitoring), with --cache-server",
  }),
  cacheServerMaxMemory: flag(z.number().default(2 ** 30), {
    flag: "cache-server-max-memory",
    kind: "size",
    help: "the cache server's memory budget, with --cache-server; the sims send 1/1024 of each chunk's modelled bytes (--lmcache-payload-scale), so 1 GiB holds 1 TiB of modelled KV",
  }),
  cacheServerBandwidthGbps: flag(z.number().min(0.001).default(80), {
    flag: "cache-server-bandwidth-gbps",
    help: "Gbit/s of each engine's link to the cache server, with --cache-server: the sims load at this rate and the router prices loads by it (80: 10 GB/s, a 100 GbE NIC at the rate one stream keeps)",
  }),
};

/** What a stack with a shared cache server adds to each process. */
export interface CacheServerWiring {
  /** `switchyard cache-server ...` */
  serverArgs: string[];
  /** where the engines find it */
  lmUrl: string;
  /** where the router subscribes to its KV events */
  eventsUrl: string;
  /** its Prometheus metrics (scraped by `up --monitoring`) */
  metricsUrl: string;
  /** added to every engine's flags */
  engineArgs: string[];
  /** added to every engine's environment (LMCache reads its settings from LMCACHE_*) */
  engineEnv: Record<string, string>;
  /** added to the router's flags */
  routerArgs: string[];
  /** a line of the stack's summary */
  summary: string;
}

/** An address to connect to for a socket bound on `host` (a wildcard bind is reached on loopback). */
export function connectHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "[::1]";
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/**
 * The arguments and environment of a stack whose engines share one cache server, or null without
 * --cache-server. Refuses engine flags that would make the engines not use it, or load from it at a
 * rate the router does not know.
 */
export function cacheServerWiring(
  flags: FlagValues,
  host: string,
  engineArgs: readonly string[],
  disaggregated = false,
  env: NodeJS.ProcessEnv = process.env,
): CacheServerWiring | null {
  if (!flags["cache-server"]) return null;
  if (disaggregated)
    throw new CliError(
      "--cache-server with --prefill/--decode: a P/D engine runs NixlConnector, and an engine has one KV connector (LMCache is another)",
    );
  const port = flags["cache-server-port"] as number;
  const eventsPort = flags["cache-server-events-port"] as number;
  const metricsPort = flags["cache-server-metrics-port"] as number;
  const gbps = flags["cache-server-bandwidth-gbps"] as number;
  if (new Set([port, eventsPort, metricsPort]).size < 3)
    throw new CliError(
      "--cache-server-port, --cache-server-events-port and --cache-server-metrics-port must differ",
    );
  const backend = flagValue(engineArgs, "--kv-offloading-backend");
  if (backend !== undefined && backend !== "lmcache")
    throw new CliError(
      `--cache-server: the engines load from it through LMCache; --kv-offloading-backend ${backend} would not use it`,
    );
  const transfer = flagValue(engineArgs, "--kv-transfer-config");
  if (transfer !== undefined && !/"kv_connector"\s*:\s*"LMCacheConnectorV1"/.test(transfer))
    throw new CliError(
      "--cache-server: the engines load from it through LMCache; a --kv-transfer-config other than LMCacheConnectorV1 would not use it",
    );
  if (flagValue(engineArgs, "--lmcache-remote-bandwidth") !== undefined)
    throw new CliError(
      "--cache-server: give the engines' link as --cache-server-bandwidth-gbps, which the router prices loads by too, not --lmcache-remote-bandwidth",
    );
  // the sims chunk prompts as LMCache does, by LMCACHE_CHUNK_SIZE from the environment they inherit; the
  // server's events and the router's chunk hashes must use the same size
  // (a chunk_size in LMCACHE_CONFIG_FILE would reach the sims only: the size must be said where all read it)
  if (env.LMCACHE_CONFIG_FILE && !env.LMCACHE_CHUNK_SIZE)
    throw new CliError(
      "--cache-server with LMCACHE_CONFIG_FILE: set LMCACHE_CHUNK_SIZE too, so that the cache server's events and the router chunk prompts as the engines do",
    );
  const chunkText = env.LMCACHE_CHUNK_SIZE?.trim() || String(LMCACHE_CHUNK_TOKENS);
  if (!/^[1-9]\d*$/.test(chunkText))
    throw new CliError(`--cache-server: LMCACHE_CHUNK_SIZE must be a positive integer, got '${chunkText}'`);
  const at = connectHost(host);
  const lmUrl = `lm://${at}:${port}`;
  const eventsUrl = `tcp://${at}:${eventsPort}`;
  const gbpsText = String(gbps);
  return {
    serverArgs: [
      "cache-server",
      "--host",
      host,
      "--port",
      String(port),
      "--kv-events-port",
      String(eventsPort),
      "--kv-events-chunk-tokens",
      chunkText,
      "--max-memory",
      String(flags["cache-server-max-memory"] as number),
      "--metrics-port",
      String(metricsPort),
    ],
    lmUrl,
    eventsUrl,
    metricsUrl: `http://${at}:${metricsPort}/metrics`,
    engineArgs: [
      ...(backend === undefined && transfer === undefined ? ["--kv-offloading-backend", "lmcache"] : []),
      "--lmcache-remote-bandwidth",
      String(gbps / 8),
    ],
    engineEnv: {
      LMCACHE_REMOTE_URL: lmUrl,
      // the one chunk hash computable outside Python: the router computes the same chain
      LMCACHE_PRE_CACHING_HASH_ALGORITHM: "sha256_cbor",
    },
    routerArgs: [
      "--cache-server-events",
      eventsUrl,
      "--cache-server-bandwidth-gbps",
      gbpsText,
      "--cache-server-chunk-tokens",
      chunkText,
    ],
    summary: `  cache server ${lmUrl}   (every engine's LMCache remote at ${gbpsText} Gbit/s; KV events ${eventsUrl} to the router)`,
  };
}

/** The ports the cache server binds, for the up-front check (ports.ts). */
export function cacheServerPorts(flags: Record<string, unknown>): StackPort[] {
  if (!flags["cache-server"]) return [];
  return [
    {
      port: flags["cache-server-port"] as number,
      what: "the cache server's lm://",
      flag: "--cache-server-port",
    },
    {
      port: flags["cache-server-events-port"] as number,
      what: "the cache server's KV-event PUB",
      flag: "--cache-server-events-port",
    },
    {
      port: flags["cache-server-metrics-port"] as number,
      what: "the cache server's metrics",
      flag: "--cache-server-metrics-port",
    },
  ];
}

/** Resolves once host:port accepts a TCP connection (the lm:// protocol has no health request). */
export async function waitTcp(
  host: string,
  port: number,
  deadline: number,
  child: ChildProcess,
  what: string,
): Promise<void> {
  const at = connectHost(host).replace(/^\[|\]$/g, "");
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new CliError(`${what} exited with status ${child.exitCode} before it was ready`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: at, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new CliError(`${what} was not listening on ${at}:${port} in time`);
}
