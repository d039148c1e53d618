// The router's configuration: one zod schema for the YAML file, flags layered on top, every
// duration and size readable by people ("5m", "32MiB"). Validation errors name the field.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { duration, size } from "../../config/values.js";
import { ROUTER_PORT } from "../../config/defaults.js";
import {
  DEFAULT_POLICY,
  POLICY_HELP,
  type PolicySettings,
  SESSION_DEFAULTS,
  SESSION_LOAD_FACTOR_DEFAULT,
  predictiveConfigSchema,
  ROUTER_POLICY_NAMES,
  scorersConfigSchema,
  sloConfigSchema,
  WAITING_ROOM_DEFAULTS,
} from "../../routing/index.js";
import { routingConfigSchema } from "./kv.js";
import { backend, backendsFromFlag } from "./backends.js";
import { tenancyConfigSchema, tenantName } from "../../tenancy/config.js";
import { discoveryConfigSchema } from "../../discovery/config.js";
import { peersConfigSchema } from "./cluster.js";
import { autoscalingConfigSchema } from "./autoscale.js";
import { endpointFromEnv } from "../../obs/tracing.js";
import { cliFlags, flag } from "../../config/schema-flags.js";
import { GPU_IDS_TEXT } from "../../models/index.js";
import { InvalidConfigError } from "../../errors/index.js";

export {
  BACKEND_PROTOCOLS,
  type BackendConfig,
  type BackendProtocol,
  backendTransport,
  DEFAULT_H2C_STREAMS,
  engineSpecs,
} from "./backends.js";

/** how the router places registry adapters' requests (src/routing/lora.ts; the others are baselines) */
export const LORA_PLACEMENTS = ["lora", "gie-lora-affinity", "lora-static", "round-robin"] as const;

const eppConfigSchema = z
  .strictObject({
    /** gRPC port of the endpoint picker (needs a restart to change); absent = off */
    port: flag(z.number().int().min(0).max(65535).optional(), {
      flag: "epp-port",
      help: "also serve the Gateway API Inference Extension endpoint picker (Envoy ext_proc v3, gRPC) on this port",
    }),
    /** address to listen on (default: the router's `host`) */
    host: z.string().optional(),
    /** fallback endpoints listed after the primary one (default: retry.maxAttempts − 1) */
    fallbacks: z.number().int().min(0).max(16).optional(),
    /** ext_proc streams open at once, one per request in flight through the gateway */
    maxStreams: z.number().int().min(1).default(10_000),
    /** serve TLS with this PEM certificate chain and key (both or neither); plaintext HTTP/2 otherwise */
    tlsCertFile: flag(z.string().optional(), {
      flag: "epp-tls-cert",
      help: "PEM certificate chain for the endpoint picker (with --epp-tls-key)",
    }),
    tlsKeyFile: flag(z.string().optional(), {
      flag: "epp-tls-key",
      help: "PEM private key for the endpoint picker (with --epp-tls-cert)",
    }),
    /** PEM CA bundle: callers must present a certificate it signed (mutual TLS); needs tlsCertFile */
    tlsClientCaFile: flag(z.string().optional(), {
      flag: "epp-tls-client-ca",
      help: "PEM CA bundle: the endpoint picker requires a client certificate it signed (with --epp-tls-cert)",
    }),
  })
  .refine((e) => (e.tlsCertFile === undefined) === (e.tlsKeyFile === undefined), {
    message: "tlsCertFile and tlsKeyFile go together",
    path: ["tlsKeyFile"],
  })
  .refine((e) => e.tlsClientCaFile === undefined || e.tlsCertFile !== undefined, {
    message: "tlsClientCaFile needs tlsCertFile and tlsKeyFile: client certificates are checked over TLS",
    path: ["tlsClientCaFile"],
  })
  .prefault({});

// A registry adapter from elsewhere than --lora-dir: a folder the engines read (`path`), or a Hugging
// Face Hub repository (`hub`), which vLLM downloads itself when the load API names it (its
// get_adapter_absolute_path). `bytes` prices a load when the router cannot read the weights.
// `tenants` makes it private to those tenants; an entry with neither path nor hub names a folder of
// `dir` to give it tenants.
const loraAdapterEntry = z
  .strictObject({
    name: z.string().min(1).max(256),
    path: z.string().min(1).optional(),
    hub: z
      .string()
      .regex(/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/, { message: "expected a Hub repository id, ORG/REPO" })
      .refine((h) => h.split("/").every((seg) => seg !== "." && seg !== ".."), {
        message: "a Hub repository id has no . or .. segment",
      })
      .optional(),
    base: z.string().optional(),
    bytes: z.number().int().positive().optional(),
    /** the tenants that may use it (private to them); absent: every tenant */
    tenants: z.array(tenantName).max(10_000).optional(),
  })
  .refine((e) => e.path === undefined || e.hub === undefined, {
    message: "give the adapter's path or its hub repository, one of them, not both",
  })
  .refine((e) => e.path !== undefined || e.hub !== undefined || e.tenants !== undefined, {
    message:
      "give the adapter's path or its hub repository, one of them (or, for a folder of lora.dir, only its tenants)",
  });

/** The served name an alias stands for (own keys only: `constructor` is no alias). */
export function aliasTarget(aliases: Readonly<Record<string, string>>, name: string): string | undefined {
  return Object.hasOwn(aliases, name) ? aliases[name] : undefined;
}

function loraAdaptersFromFlag(entries: unknown): unknown[] {
  return (entries as string[]).map((raw) => {
    const eq = raw.indexOf("=");
    if (eq <= 0 || eq === raw.length - 1)
      throw new InvalidConfigError(`${raw}: expected NAME=/folder or NAME=hf:ORG/REPO`);
    const name = raw.slice(0, eq);
    const source = raw.slice(eq + 1);
    return source.startsWith("hf:") ? { name, hub: source.slice(3) } : { name, path: source };
  });
}

// the predictive policy's and the SLO's fields that flags set (their schemas are the routing library's)
const predictiveFields = predictiveConfigSchema.unwrap().shape;
cliFlags.add(predictiveFields.gpu, {
  flag: "predictive-gpu",
  help: `predictive policy: the engines' GPU profile (${GPU_IDS_TEXT}); none = learn each engine's speed from its metrics`,
});
cliFlags.add(predictiveFields.tensorParallelSize, {
  flag: "predictive-tp",
  help: "predictive policy: the engines' tensor-parallel size",
});
cliFlags.add(predictiveFields.timeScale, {
  flag: "predictive-time-scale",
  help: "predictive policy: the engines are switchyard sims at --time-scale S (their times are S× the GPU's)",
});
cliFlags.add(predictiveFields.queuedPrompts, {
  flag: "predictive-queued-prompts",
  help: "predictive policy, late binding: this router's streamed prompts awaiting a first token an engine may have before the next one picked for it waits in the router, cheapest first (one being prefilled, one ready to follow; 0 binds every request at once)",
});
cliFlags.add(predictiveFields.minCachedShare, {
  flag: "predictive-min-cached-share",
  help: "predictive policy, late binding: hold requests only while the router's picks find at least this share of their prompts cached, a moving mean (0 holds whatever the share)",
});
cliFlags.add(sloConfigSchema.unwrap().shape.ttftMs, {
  flag: "slo-ttft-ms",
  help: "default TTFT SLO in ms (requests may set their own with x-slo-ttft-ms); the predictive policy answers 429 with Retry-After when no engine can meet it",
});

export const routerConfigSchema = z.strictObject({
  host: flag(z.string().default("0.0.0.0"), { flag: "host", help: "address to listen on" }),
  port: flag(z.number().int().min(0).max(65535).default(ROUTER_PORT), {
    flag: "port",
    help: "port to listen on",
  }),
  /** worker processes serving the port, or `auto` (../cluster/worker-count.ts); needs a restart */
  workers: flag(z.union([z.literal("auto"), z.number().int().min(1).max(256)]).default("auto"), {
    flag: "workers",
    help: 'worker processes serving the port, sharing engines, health, load and routing state; auto: one per core (at most 8) where the policy reads no load (round-robin), else one process, which measures faster for load-aware policies (docs/router.md, "Workers and replicas"); 1: one process',
    toConfig: (v) => (v === "auto" ? "auto" : Number(v)),
  }),
  /** active-active replicas exchanging load and routing picks (src/router/cluster/peers.ts) */
  peers: peersConfigSchema,
  backends: flag(z.array(backend).default([]), {
    flag: "backend",
    help: "engine base URL, repeatable; URL#weight (e.g. http://e2:8000#0.1) sets a canary weight; h2c://host:port reaches it over cleartext HTTP/2",
    toConfig: backendsFromFlag,
  }),
  policy: flag(z.enum(ROUTER_POLICY_NAMES as [string, ...string[]]).default(DEFAULT_POLICY), {
    flag: "policy",
    help: `routing policy: ${POLICY_HELP}`,
  }),
  /** cache-aware routing (prefix, kv, hybrid): see docs/routing.md */
  routing: routingConfigSchema,
  /** the predictive policy's engine timing (docs/routing.md) */
  predictive: predictiveConfigSchema,
  /** scorers added to the policy's own, weighed in its pick (docs/routing.md, "Adding a scorer") */
  scorers: scorersConfigSchema,
  /** TTFT SLOs the predictive policy admits requests by (docs/routing.md) */
  slo: sloConfigSchema,
  /** the SLO autoscaling decision the router runs and exports (./autoscale.ts, docs/autoscaling.md) */
  autoscaling: autoscalingConfigSchema,
  session: z
    .strictObject({
      header: flag(z.string().default("x-session-id"), {
        flag: "session-header",
        help: "header carrying the session key",
      }),
      /** top-level body field used when the header is absent (e.g. "user") */
      bodyKey: flag(z.string().optional(), {
        flag: "session-key",
        help: "body field used as the session key when the header is absent",
      }),
      loadFactor: z.number().min(1).default(SESSION_LOAD_FACTOR_DEFAULT),
      /** session identity (src/routing/sessions/session-identity.ts): vllm_xargs.agentic_context names the session */
      agenticContext: z.boolean().default(SESSION_DEFAULTS.agenticContext),
      /** a Responses follow-up is in its previous_response_id's session */
      responseChain: z.boolean().default(SESSION_DEFAULTS.responseChain),
      /** a request naming no session joins the one whose last prompt it extends */
      infer: flag(z.boolean().default(SESSION_DEFAULTS.infer), {
        flag: "session-infer",
        negatable: true,
        help: "a request naming no session (no agentic_context, header, body field or previous_response_id) joins the session whose last prompt it extends (only under a policy that reads session keys: all but round-robin, least-load and vllm-router-cache-aware)",
      }),
      /** sessions remembered (LRU beyond) */
      maxSessions: flag(z.number().int().min(1).default(SESSION_DEFAULTS.maxSessions), {
        flag: "max-sessions",
        help: "sessions remembered for session identity (the least recently seen dropped beyond)",
      }),
      /** a session unseen this long is forgotten (vllm-router's paused_retention_ttl_seconds) */
      idleTimeout: flag(duration.default(SESSION_DEFAULTS.idleMs), {
        flag: "session-idle-timeout",
        help: "a session unseen this long is forgotten",
        kind: "duration",
      }),
    })
    .prefault({}),
  /** alias → served model name */
  aliases: z.record(z.string(), z.string()).default({}),
  /**
   * LoRA adapters the router loads on demand through the engines' load API: `dir` scanned (each
   * subfolder a PEFT adapter named by its folder, at the same path on the engines), `adapters` for
   * folders elsewhere; `maxCpuLoras` the engines' --max-cpu-loras (default: their scraped max_lora,
   * vLLM's default)
   */
  lora: z
    .strictObject({
      dir: flag(z.string().optional(), {
        flag: "lora-dir",
        help: "LoRA adapters the router loads on demand: each subfolder a PEFT adapter, named by its folder (engines need VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and the same path)",
      }),
      adapters: flag(z.array(loraAdapterEntry).max(100_000).default([]), {
        flag: "lora-adapter",
        help: "a LoRA adapter the router may load, repeatable: NAME=/folder (a PEFT folder at the same path on the engines) or NAME=hf:ORG/REPO (the engines download it from the Hugging Face Hub)",
        toConfig: loraAdaptersFromFlag,
      }),
      maxCpuLoras: flag(z.number().int().min(1).optional(), {
        flag: "lora-max-cpu-loras",
        help: "the engines' --max-cpu-loras: adapters the router keeps loaded on one engine at most (default: their max_lora)",
      }),
      policy: flag(z.enum(LORA_PLACEMENTS).default("lora"), {
        flag: "lora-policy",
        help: "placement of registry adapters' requests: lora (priced), or a baseline: gie-lora-affinity, lora-static, round-robin",
      }),
    })
    .optional(),
  /** API key the engines expect (else VLLM_API_KEY); clients' Authorization is then never forwarded */
  engineApiKey: flag(z.string().optional(), {
    flag: "engine-api-key",
    help: "API key the engines expect (default: $VLLM_API_KEY)",
  }),
  timeouts: z
    .strictObject({
      connect: flag(duration.default(5_000), {
        flag: "connect-timeout",
        help: "upstream connect timeout",
        kind: "duration",
      }),
      firstByte: flag(duration.default(600_000), {
        flag: "first-byte-timeout",
        help: "time to the first response byte",
        kind: "duration",
      }),
      idle: flag(duration.default(300_000), {
        flag: "idle-timeout",
        help: "longest gap between streamed chunks",
        kind: "duration",
      }),
      total: flag(duration.default(3_600_000), {
        flag: "total-timeout",
        help: "longest request",
        kind: "duration",
      }),
      keepAlive: duration.default(15_000),
    })
    .prefault({}),
  health: z
    .strictObject({
      interval: duration.default(1_000),
      timeout: duration.default(1_000),
      failuresToEject: z.number().int().min(1).default(2),
      successesToReadmit: z.number().int().min(1).default(2),
      /** consecutive connect errors, resets or 5xx answers on live traffic that eject an engine */
      passiveFailures: z.number().int().min(1).default(3),
      /**
       * most engines of a model that may be out of rotation at once, in percent (floor): 50 keeps one
       * of two, two of four; a model's last engine is never ejected below 100
       */
      maxEjectionPercent: z.number().min(0).max(100).default(50),
      /**
       * how long an engine that refused a request as vLLM does while it drains on SIGTERM (a 500
       * "cannot schedule new futures after shutdown", /health still 200) stays out of rotation unless
       * a probe fails first (it stopped); then it is tried again, and a new refusal holds it again
       */
      shutdownHold: duration.default(60_000),
    })
    .prefault({}),
  discovery: discoveryConfigSchema,
  retry: z
    .strictObject({
      maxAttempts: flag(z.number().int().min(1).max(10).default(3), {
        flag: "max-attempts",
        help: "engines tried per request",
      }),
      /** retries allowed as a fraction of requests over the window */
      budgetRatio: z.number().min(0).max(10).default(0.2),
      budgetWindow: duration.default(10_000),
      /** retries always allowed per window, so a quiet router still fails over */
      minRetries: z.number().int().min(0).default(10),
      /**
       * engines that may fail while holding one request (died, reset, no first byte in time) before
       * it is answered 502 instead of retried again: it may be what kills them; 0 = never
       */
      poisonAfter: z.number().int().min(0).max(10).default(2),
    })
    .prefault({}),
  admission: z
    .strictObject({
      /** 0 = no cap */
      maxInFlightPerEngine: flag(z.number().int().min(0).default(0), {
        flag: "max-in-flight-per-engine",
        help: "per-engine in-flight cap; 0 = none",
      }),
      /**
       * slots per engine above maxInFlightPerEngine that only requests of tenants with a priority
       * above 0 may take: the top band starts at once while the others wait for the cap (0 = none)
       */
      topBandHeadroom: z.number().int().min(0).default(0),
      queueSize: flag(z.number().int().min(0).default(WAITING_ROOM_DEFAULTS.size), {
        flag: "queue-size",
        help: "requests that may wait for room (429 beyond)",
      }),
      queueTimeout: flag(duration.default(WAITING_ROOM_DEFAULTS.timeoutMs), {
        flag: "queue-timeout",
        help: "longest wait in the queue before 429",
        kind: "duration",
      }),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** larger bodies get 413 before they are read (Content-Length) or as soon as they pass it;
       * the sim's (and this default's) 16 MiB, so the router never accepts what engines refuse */
      maxBodyBytes: flag(size.default(16 * 2 ** 20), {
        flag: "max-body-size",
        help: "largest request body accepted (413 above); keep it at or under the engines' limit (the sim's is 16MiB)",
        kind: "size",
      }),
      /** request line + headers; larger → 431 (node's maxHeaderSize; needs a restart) */
      maxHeaderBytes: size.default(16 * 1024),
      /** slowloris: the whole header block must arrive within this (restart) */
      headersTimeout: duration.default(20_000),
      /** the whole request (headers + body) must arrive within this; 0 = none (restart) */
      requestTimeout: duration.default(300_000),
      /** longest gap between body chunks while reading a JSON body */
      bodyIdleTimeout: duration.default(30_000),
      /**
       * open client connections; at the cap a new one takes the slot of the connection idle longest
       * (closed, counted), and is refused (logged) only when every one has a request in progress;
       * 0 = none (restart)
       */
      maxConnections: z.number().int().min(0).default(32_768),
      /**
       * how long a client connection may stay open between requests; longer than a load balancer's
       * own idle timeout (60 s on the common ones), so the router never closes a connection the
       * balancer is about to reuse (restart)
       */
      keepAliveTimeout: duration.default(65_000),
      /** listening sockets sharing the port (SO_REUSEPORT; Node 22.12+ on Linux, an explicit port,
       * else 1): a burst of new connections is accepted this many per event-loop turn instead of one.
       * auto is AUTO_LISTEN_SOCKETS; the hazard of a shared port: src/router/edge/accept.ts (restart) */
      listenSockets: flag(z.union([z.literal("auto"), z.number().int().min(1).max(64)]).default("auto"), {
        flag: "listen-sockets",
        help: "listening sockets sharing the port (SO_REUSEPORT, Node 22.12+ on Linux, an explicit --port): a burst of new connections is accepted this many per event-loop turn (per worker with --workers); auto: 64 where that works (shared out between workers), else 1. Set 1 where another process of this user could bind the same port",
        toConfig: (v) => (v === "auto" ? "auto" : Number(v)),
      }),
    })
    .prefault({}),
  /** SIGTERM: stop accepting, let in-flight requests finish for up to this long, then close */
  drainTimeout: flag(duration.default(30_000), {
    flag: "drain-timeout",
    help: "on SIGTERM: stop accepting, let in-flight requests finish for up to this long, then close",
    kind: "duration",
  }),
  /**
   * an engine that leaves discovery, answers its health probe as draining or is drained by hand
   * (POST /admin/engines/drain) gets no new requests; its in-flight ones may finish for this long,
   * then the streams among them that can migrate continue on other engines
   */
  engineDrainTimeout: flag(duration.default(30_000), {
    flag: "engine-drain-timeout",
    help: "an engine leaving discovery, draining, or drained by hand: its in-flight requests finish for up to this long, then streams move to other engines",
    kind: "duration",
  }),
  /** mid-stream migration: a stream whose engine fails continues on another (docs/reliability.md) */
  migration: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** migrations one request may make; past it a failure ends the stream with an error event */
      maxPerRequest: z.number().int().min(0).max(10).default(3),
      /**
       * non-streamed completions and chats too: the router asks the engine for a stream and answers
       * the client with the assembled JSON, so a failed engine's partial answer continues elsewhere
       * (off by default: it costs every such request a stream to parse; without it they are retried
       * from the start)
       */
      nonStreaming: z.boolean().default(false),
    })
    .prefault({}),
  /**
   * response affinity (docs/router.md): stored Responses API answers live in the memory of the engine
   * that made them, so the router remembers which engine that was for up to maxIds ids (least
   * recently used forgotten first; a router group shares them)
   */
  responses: z
    .strictObject({
      maxIds: z.number().int().min(1).default(100_000),
    })
    .prefault({}),
  /** the Gateway API Inference Extension endpoint picker (Envoy ext_proc over gRPC, src/epp); off without a port */
  epp: eppConfigSchema,
  /** API keys, tenants, limits, fair queuing, cache isolation (src/tenancy, docs/security.md); off without keys */
  tenancy: tenancyConfigSchema.optional(),
  /**
   * one info line per request (logger router.access); errors always log. sampleRatio samples successes;
   * maxPerSecond caps successes' lines per second per router process (0: no cap), the rest are counted
   */
  accessLog: z
    .strictObject({
      enabled: z.boolean().default(true),
      sampleRatio: z.number().min(0).max(1).default(1),
      maxPerSecond: z.number().int().min(0).default(1000),
    })
    .prefault({}),
  /**
   * who gets the routing explanation `x-switchyard-debug: 1` asks for (x-switchyard-route names the
   * engine and the predicted cached tokens, which tell whether another client sent the same prompt):
   * admin (a request with the admin key in x-switchyard-debug-key; every client while the router has
   * no keys at all), open (every client), off (nobody). docs/security.md
   */
  debug: z
    .strictObject({
      allowHeader: z.enum(["admin", "open", "off"]).default("admin"),
    })
    .prefault({}),
  /**
   * who may read GET /metrics (per-tenant series, engine URLs): auto (the admin key once the router
   * has keys, as /engines; everyone while it has none), admin (always the admin key), open (everyone:
   * only where the port is reachable by Prometheus alone). docs/security.md
   */
  metrics: z
    .strictObject({
      access: z.enum(["auto", "admin", "open"]).default("auto"),
    })
    .prefault({}),
  /** OpenTelemetry spans over OTLP/HTTP (src/obs/tracing.ts); off without an endpoint */
  tracing: z
    .strictObject({
      /** collector base URL (http://otel-collector:4318) or full /v1/traces URL; else $OTEL_EXPORTER_OTLP_ENDPOINT */
      otlpEndpoint: flag(z.string().optional(), {
        flag: "otlp-endpoint",
        help: "OTLP/HTTP collector for request spans, e.g. http://otel-collector:4318 (default $OTEL_EXPORTER_OTLP_ENDPOINT; none = tracing off)",
      }),
      serviceName: z.string().default("switchyard-router"),
      /** share of requests traced; a client's traceparent is a parent, its sampled flag ignored unless trustClientSampling */
      sampleRatio: z.number().min(0).max(1).default(1),
      /** a client's traceparent sampled flag decides (every caller trusted: a gateway, the operator's own services) */
      trustClientSampling: z.boolean().default(false),
    })
    .prefault({}),
});

export type RouterConfigInput = z.input<typeof routerConfigSchema>;
export type RouterConfig = z.output<typeof routerConfigSchema>;

export class ConfigError extends InvalidConfigError {}

function describe(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`).join("; ");
}

/** The settings the routing policy is built from (src/routing/config.ts policyOptions). */
export function policySettingsOf(cfg: RouterConfig): PolicySettings {
  return {
    sessionLoadFactor: cfg.session.loadFactor,
    cost: cfg.routing.cost,
    predictive: cfg.predictive,
    slo: cfg.slo,
    scorers: cfg.scorers,
  };
}

/**
 * Options an environment variable sets where neither the file nor a flag does, as vLLM reads them: the
 * engines' API key and their PYTHONHASHSEED. Read here, with the schema, and nowhere else.
 */
export function applyConfigEnv(cfg: RouterConfig, env: NodeJS.ProcessEnv): RouterConfig {
  cfg.engineApiKey ??= env.VLLM_API_KEY || undefined;
  cfg.routing.hashSeed ??= env.PYTHONHASHSEED || undefined;
  return cfg;
}

/**
 * `engines:` is the list's name in the glossary (docs/glossary.md); `backends:` stays its name in the
 * schema and is kept as an alias, so either may be written (not both). Applied to a file as it is read
 * and to a config as it is parsed, so a `--backend` flag still replaces the file's list.
 */
export function engineListAlias(doc: Record<string, unknown>, where: string): Record<string, unknown> {
  if (!("engines" in doc)) return doc;
  if ("backends" in doc)
    throw new ConfigError(`${where}: engines and backends name one list (backends is its alias): give one`);
  const { engines, ...rest } = doc;
  return { ...rest, backends: engines };
}

export function parseConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): RouterConfig {
  const raw =
    input && typeof input === "object" && !Array.isArray(input)
      ? engineListAlias(input as Record<string, unknown>, "invalid router config")
      : input;
  const r = routerConfigSchema.safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(`invalid router config: ${describe(r.error)}`);
  if (r.data.scorers.length > 0 && r.data.policy === "round-robin")
    throw new ConfigError("invalid router config: scorers: round-robin does not pick by score");
  return applyConfigEnv(r.data, env);
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc))
    throw new ConfigError(`config file ${path}: expected a mapping`);
  return engineListAlias(doc as Record<string, unknown>, `config file ${path}`);
}

/** Deep-merges `over` into `base` (objects only; arrays and scalars replace). */
export function mergeConfig(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && b && typeof b === "object" && !Array.isArray(b)
        ? mergeConfig(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** The config a router runs: the file (if any) with `overrides` on top, validated. */
export function loadConfig(overrides: RouterConfigInput, file: string | undefined): RouterConfig {
  const base = file ? readConfigFile(file) : {};
  const cfg = parseConfig(mergeConfig(base, overrides as Record<string, unknown>));
  // the standard OTel variable applies when neither the file nor a flag names an endpoint
  cfg.tracing.otlpEndpoint ??= endpointFromEnv();
  return cfg;
}
