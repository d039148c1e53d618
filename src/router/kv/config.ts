// The `routing:` section of the router config (cache-aware policies) and the per-backend `kvEvents`
// field. Parsed by the router's schema (src/router/config.ts) with the same duration rules.
import { z } from "zod";
import { duration, size } from "../../config/values.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../kvevents/zmq-guard.js";

const zmqEndpoint = z
  .string()
  .regex(/^(tcp|ipc|inproc):\/\/.+/, "must be a ZMQ endpoint like tcp://host:5557");

/** A backend's KV-event endpoints: `tcp://host:5557` or { endpoint, replay, topic }. */
export const backendKvEventsSchema = z.union([
  zmqEndpoint.transform((endpoint) => ({ endpoint, replay: undefined, topic: undefined })),
  z.strictObject({
    endpoint: zmqEndpoint,
    /** the engine's replay ROUTER endpoint (vLLM's replay_endpoint) */
    replay: zmqEndpoint.optional(),
    topic: z.string().optional(),
  }),
]);
export type BackendKvEvents = z.output<typeof backendKvEventsSchema>;

export const routingConfigSchema = z
  .strictObject({
    /** the engines' PYTHONHASHSEED (block hashes start from it); default $PYTHONHASHSEED, else "0" */
    hashSeed: z.string().optional(),
    /** served model (or its root) → folder with tokenizer.json and tokenizer_config.json */
    tokenizers: z.record(z.string(), z.string()).default({}),
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
            port: z.number().int().min(1).max(65535),
            replayPort: z.number().int().min(1).max(65535).optional(),
            byIndex: z.boolean().default(false),
          })
          .optional(),
        topic: z.string().default(""),
        /**
         * Collector mode: bind one SUB socket here (e.g. tcp://*:5557) that engines connect their
         * publishers to (vLLM connects when its endpoint has no wildcard). An engine's messages are told
         * apart by their topic, kv@<engine host or host:port>@<model>; engines with their own
         * `kvEvents` endpoint are still subscribed to directly.
         */
        bind: zmqEndpoint.optional(),
        /**
         * the largest KV-event message (one scheduler step's batch) any of the router's KV-event
         * sockets takes; a larger frame costs its sender the connection (src/kvevents/zmq-guard.ts)
         */
        maxMessageBytes: size.default(DEFAULT_MAX_MESSAGE_BYTES),
      })
      .prefault({}),
    prefix: z
      .strictObject({
        blockChars: z.number().int().min(8).max(4096).default(64),
        maxBlocks: z.number().int().min(1).default(200_000),
      })
      .prefault({}),
    kvIndex: z
      .strictObject({
        maxBlocks: z.number().int().min(1).default(1_000_000),
        offloadCredit: z.number().min(0).max(1).default(0.8),
      })
      .prefault({}),
    cost: z
      .strictObject({
        prefillTokensPerUnit: z.number().positive().default(2048),
        runWeight: z.number().min(0).default(0.1),
        waitWeight: z.number().min(0).default(0.5),
        balanceAbs: z.number().min(0).default(4),
        balanceRel: z.number().min(1).default(1.5),
      })
      .prefault({}),
    watchdog: z
      .strictObject({
        window: duration.default(300_000),
        interval: duration.default(15_000),
        tolerance: z.number().min(0).max(1).default(0.2),
        minTokens: z.number().min(0).default(1024),
      })
      .prefault({}),
  })
  .prefault({});
export type RoutingConfig = z.output<typeof routingConfigSchema>;
