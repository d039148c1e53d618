// The `routing:` section of the router config (cache-aware policies) and the per-backend `kvEvents`
// field. Parsed by the router's schema (config.ts) with the same duration rules.
import { z } from "zod";
import { duration, size } from "../../config/values.js";
import { CurveKeyError, isZ85Key, loadCurveKeys } from "../../kvevents/curve.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../kvevents/zmq-guard.js";
import { CACHE_AWARE_DEFAULTS } from "../../routing/index.js";
import { LMCACHE_CHUNK_TOKENS } from "../../config/vllm-defaults.js";
import { flag } from "../../config/schema-flags.js";
import { InvalidConfigError } from "../../errors/index.js";

const zmqEndpoint = z
  .string()
  .regex(/^(tcp|ipc|inproc):\/\/.+/, "must be a ZMQ endpoint like tcp://host:5557");

/** A backend's KV-event endpoints: `tcp://host:5557` or { endpoint, replay, topic, serverKey, plain }. */
export const backendKvEventsSchema = z.union([
  zmqEndpoint.transform((endpoint) => ({
    endpoint,
    replay: undefined,
    topic: undefined,
    serverKey: undefined,
    plain: undefined,
  })),
  z.strictObject({
    endpoint: zmqEndpoint,
    /** the engine's replay ROUTER endpoint (vLLM's replay_endpoint) */
    replay: zmqEndpoint.optional(),
    topic: z.string().optional(),
    /** with `routing.kvEvents.curve`: this publisher's CURVE public key (Z85), instead of the shared server.key */
    serverKey: z.string().refine(isZ85Key, "must be a 40-character Z85 CURVE public key").optional(),
    /**
     * this engine publishes without CURVE (a vLLM engine cannot do it) although the router has keys: its
     * endpoint is subscribed to in plain, and no warning is logged for it
     */
    plain: z.boolean().optional(),
  }),
]);
export type BackendKvEvents = z.output<typeof backendKvEventsSchema>;

const curveFilesSchema = z
  .strictObject({
    dir: flag(z.string().min(1).optional(), {
      flag: "kv-curve-dir",
      help: "CURVE keys for the KV-event sockets (routing.kvEvents.curve.dir): a directory, e.g. a mounted Secret, with secret.key (the router's, not readable by other users), server.key (the publishers' public key), clients.keys (publishers the collector lets in) and engines.keys (each engine's own public key by URL); Switchyard's sims only, vLLM cannot do CURVE",
    }),
    secretKeyFile: z.string().min(1).optional(),
    publicKeyFile: z.string().min(1).optional(),
    serverKeyFile: z.string().min(1).optional(),
    clientKeysFile: z.string().min(1).optional(),
    /** `<engine URL> <public key>` a line: each engine's own key (default: engines.keys in dir) */
    engineKeysFile: z.string().min(1).optional(),
  })
  .refine((c) => c.dir !== undefined || c.secretKeyFile !== undefined, {
    message: "needs dir (a directory with secret.key) or secretKeyFile",
  });

/** names a cache server in logs and metric labels */
const cacheServerName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "must be 1-63 of A-Z a-z 0-9 . _ - (starting alphanumeric)");

/**
 * A shared LMCache cache server the engines load KV from (`switchyard cache-server --kv-events-port`):
 * where its KV events are published, which engines load from it and over what link. The router keeps
 * an index of the chunks it holds and prices a prompt's prefix there at its load time (docs/routing.md).
 */
export const cacheServerSchema = z.strictObject({
  name: cacheServerName,
  /** the server's KV-event PUB endpoint (its --kv-events-port) */
  events: flag(zmqEndpoint, {
    flag: "cache-server-events",
    help: "a shared LMCache cache server's KV events (its --kv-events-port, e.g. tcp://cache:5600) that every engine loads from: predictive prices the prefix it holds at its load time (routing.cacheServers)",
    implies: { name: "cache-server" },
  }),
  /** its replay endpoint (--kv-events-replay-port): the router asks it for what it missed */
  replay: flag(zmqEndpoint.optional(), {
    flag: "cache-server-replay",
    needs: "cache-server-events",
    help: "with --cache-server-events: the server's replay endpoint (its --kv-events-replay-port)",
  }),
  /** base URLs of the engines whose LMCache remote_url is this server; omitted = every engine */
  engines: z
    .array(z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, "")))
    .min(1)
    .optional(),
  /** the engines' link to the server, gigabits/s (LMCache's lm:// gets run at most at this rate) */
  bandwidthGbps: flag(z.number().positive().max(100_000).default(100), {
    flag: "cache-server-bandwidth-gbps",
    needs: "cache-server-events",
    help: "with --cache-server-events: the engines' link to it, gigabits/s",
  }),
  /** tokens per LMCache chunk (the engines' chunk_size) */
  chunkTokens: flag(z.number().int().min(1).max(1_048_576).default(LMCACHE_CHUNK_TOKENS), {
    flag: "cache-server-chunk-tokens",
    needs: "cache-server-events",
    help: "with --cache-server-events: the engines' LMCache chunk_size",
  }),
  /** chunk hashes indexed at most; least recently stored evicted first */
  maxChunks: z.number().int().min(1).default(1_000_000),
  /**
   * with `routing.kvEvents.curve`: the server's CURVE public key (Z85; its --kv-events-curve-dir),
   * instead of the router's shared server.key
   */
  serverKey: flag(z.string().refine(isZ85Key, "must be a 40-character Z85 CURVE public key").optional(), {
    flag: "cache-server-key",
    needs: "cache-server-events",
    help: "with --cache-server-events and --kv-curve-dir: the server's CURVE public key (Z85), whose events alone are believed (default: the router's server.key)",
  }),
  /** its events are taken in plain although the router has CURVE keys (a server started without keys) */
  plain: z.boolean().optional(),
});
export type CacheServerConfig = z.output<typeof cacheServerSchema>;

/** Each engine loads from one server (LMCache has one remote_url); names and endpoints are unique. */
const cacheServersSchema = z
  .array(cacheServerSchema)
  .max(64)
  .default([])
  .superRefine((servers, ctx) => {
    const names = new Set<string>();
    const endpoints = new Set<string>();
    const owner = new Map<string, string>();
    let everyEngine: string | undefined;
    servers.forEach((s, i) => {
      if (names.has(s.name))
        ctx.addIssue({ code: "custom", path: [i, "name"], message: `cache server '${s.name}' named twice` });
      names.add(s.name);
      if (endpoints.has(s.events))
        ctx.addIssue({
          code: "custom",
          path: [i, "events"],
          message: `${s.events} is already another cache server's events endpoint`,
        });
      endpoints.add(s.events);
      if (s.engines === undefined) {
        if (everyEngine !== undefined || servers.length > 1)
          ctx.addIssue({
            code: "custom",
            path: [i, "engines"],
            message: `cache server '${s.name}' lists no engines (every engine loads from it), so no other cache server may be configured; list each server's engines`,
          });
        everyEngine = s.name;
        return;
      }
      s.engines.forEach((url, j) => {
        const other = owner.get(url);
        if (other !== undefined)
          ctx.addIssue({
            code: "custom",
            path: [i, "engines", j],
            message: `engine ${url} already loads from cache server '${other}' (an engine has one LMCache remote_url)`,
          });
        else owner.set(url, s.name);
      });
    });
  });

export const routingConfigSchema = z
  .strictObject({
    /**
     * the engines' PYTHONHASHSEED (block hashes start from it); default $PYTHONHASHSEED, else what each
     * engine's release uses unset: "vllm-none-hash" from vLLM 0.29, "0" (pinned) before
     */
    hashSeed: flag(z.string().optional(), {
      flag: "hash-seed",
      help: "the engines' PYTHONHASHSEED, for KV-event routing (default $PYTHONHASHSEED, else as each engine's release leaves it unset: vllm-none-hash from vLLM 0.29, 0 before)",
    }),
    /** served model (or its root) → folder with tokenizer.json and tokenizer_config.json */
    tokenizers: flag(z.record(z.string(), z.string()).default({}), {
      flag: "tokenizer-dir",
      help: "MODEL=DIR: the served model's tokenizer.json + tokenizer_config.json for exact KV routing (repeatable)",
      toConfig: (entries) => {
        const dirs: Record<string, string> = {};
        for (const kv of entries as string[]) {
          const eq = kv.indexOf("=");
          if (eq <= 0) throw new InvalidConfigError(`${kv}: expected MODEL=DIR`);
          dirs[kv.slice(0, eq)] = kv.slice(eq + 1);
        }
        return dirs;
      },
    }),
    /** oldest vLLM /version whose KV events and sha256_cbor hashes the router reproduces */
    minVllmVersion: z.string().default("0.11.0"),
    kvEvents: z
      .strictObject({
        /**
         * Endpoints for engines without an explicit `kvEvents`: tcp://<engine host>:port (+ i for the
         * i-th configured backend when byIndex; `switchyard up`: port 5557, replayPort 6557, byIndex).
         */
        derive: z
          .strictObject({
            port: flag(z.number().int().min(1).max(65535), {
              flag: "kv-events-port",
              help: "engines publish KV events on tcp://<engine host>:PORT (+ i for backend i with --kv-events-by-index)",
            }),
            replayPort: flag(z.number().int().min(1).max(65535).optional(), {
              flag: "kv-events-replay-port",
              needs: "kv-events-port",
              help: "engines' KV-event replay port (same rule)",
            }),
            byIndex: flag(z.boolean().default(false), {
              flag: "kv-events-by-index",
              needs: "kv-events-port",
              help: "add the backend's position to both ports (switchyard up)",
            }),
          })
          .optional(),
        topic: z.string().default(""),
        /**
         * Collector mode: bind one SUB socket here (e.g. tcp://*:5557) that engines connect their
         * publishers to (vLLM connects when its endpoint has no wildcard). An engine's messages are told
         * apart by their topic, kv@<engine host or host:port>@<model>; engines with their own
         * `kvEvents` endpoint are still subscribed to directly.
         */
        bind: flag(zmqEndpoint.optional(), {
          flag: "kv-events-bind",
          help: "collector mode: bind one SUB socket here (e.g. tcp://*:5557) for engines whose --kv-events-config endpoint points at the router; their topics must read kv@<engine host:port>@<model>",
        }),
        /**
         * the largest KV-event message (one scheduler step's batch) any of the router's KV-event
         * sockets takes; a larger frame costs its sender the connection (src/kvevents/zmq-guard.ts)
         */
        maxMessageBytes: size.default(DEFAULT_MAX_MESSAGE_BYTES),
        /**
         * CURVE keys for the router's KV-event sockets (src/kvevents/curve.ts): a directory (a mounted
         * Secret) holding secret.key (the router's own; public.key optional, checked), server.key (the
         * publishers' public key, for subscriptions and replay) and clients.keys (the publishers the
         * collector lets in, one a line), or each file named. Only publishers Switchyard runs can do
         * CURVE; vLLM's cannot (a backend's `kvEvents.plain`)
         */
        curve: curveFilesSchema.optional(),
        /**
         * say that KV events from endpoints beyond this host are taken without authentication on
         * purpose (a private network): without it, and without `curve`, each such endpoint is warned
         * about once
         */
        plain: flag(z.boolean().default(false), {
          flag: "kv-events-plain",
          help: "take KV events from endpoints beyond this host without authentication on purpose (routing.kvEvents.plain): silences the warning; keep them on a private network",
        }),
      })
      .superRefine((kv, ctx) => {
        if (!kv.curve) return;
        // the files are read here so that a broken key fails the start or the reload, naming the file
        try {
          loadCurveKeys(kv.curve);
        } catch (err) {
          if (!(err instanceof CurveKeyError)) throw err;
          ctx.addIssue({ code: "custom", path: ["curve"], message: err.message });
        }
      })
      .prefault({}),
    /**
     * long prompts (1k-128k tokens) tokenized and hashed on a worker thread once they keep coming,
     * the same values as on the event loop; false keeps that work on the loop (and the worker's
     * tokenizer tables, about 120 MiB for a big vocabulary, out of the process)
     */
    promptThread: flag(z.boolean().default(true), {
      flag: "prompt-thread",
      negatable: true,
      help: "tokenize and hash long prompts (1k-128k tokens) for KV routing on a worker thread once they keep coming (routing.promptThread); --no-prompt-thread keeps that work on the event loop",
    }),
    prefix: z
      .strictObject({
        blockChars: z.number().int().min(8).max(4096).default(64),
        maxBlocks: z.number().int().min(1).default(200_000),
      })
      .prefault({}),
    kvIndex: z
      .strictObject({
        maxBlocks: z.number().int().min(1).default(1_000_000),
        /** what a block held only in an engine's offload tier counts (every policy but predictive) */
        offloadCredit: z.number().min(0).max(1).default(0.8),
        /**
         * predictive: the engines' GPU-to-host link, gigabits/s per GPU, that an offloaded prefix loads
         * over; default the predictive GPU profile's host link, else 200 (PCIe Gen4 x16 in practice)
         */
        offloadBandwidthGbps: z.number().positive().max(100_000).optional(),
      })
      .prefault({}),
    /** shared LMCache cache servers the engines load KV from, with the router subscribed to their events */
    cacheServers: cacheServersSchema,
    cost: z
      .strictObject({
        prefillTokensPerUnit: z.number().positive().default(CACHE_AWARE_DEFAULTS.prefillTokensPerUnit),
        runWeight: z.number().min(0).default(CACHE_AWARE_DEFAULTS.runWeight),
        waitWeight: z.number().min(0).default(CACHE_AWARE_DEFAULTS.waitWeight),
        balanceAbs: z.number().min(0).default(CACHE_AWARE_DEFAULTS.balanceAbs),
        balanceRel: z.number().min(1).default(CACHE_AWARE_DEFAULTS.balanceRel),
      })
      .prefault({}),
    watchdog: z
      .strictObject({
        window: duration.default(300_000),
        interval: duration.default(15_000),
        tolerance: z.number().min(0).max(1).default(0.2),
        minTokens: z.number().min(0).default(1024),
        /** how long the difference must last before the alarm (a healthy router's first checks differ) */
        sustain: duration.default(45_000),
      })
      .prefault({}),
  })
  .prefault({});
export type RoutingConfig = z.output<typeof routingConfigSchema>;
