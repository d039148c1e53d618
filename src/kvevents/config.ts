// `--kv-events-config`: vLLM's KVEventsConfig JSON, validated once at the boundary.
import { z } from "zod";
import { InvalidConfigError } from "../errors/index.js";

export interface KvEventsConfig {
  enabled: boolean;
  publisher: "zmq" | "null";
  /** PUB endpoint; binds when it has `*`/`::`, is ipc/inproc, or port 0, else connects (vLLM's rule) */
  endpoint: string;
  /** ROUTER endpoint serving replays of the last bufferSteps batches; null = no replay */
  replayEndpoint: string | null;
  topic: string;
  /** batches kept for replay */
  bufferSteps: number;
  /** ZMQ send high-water mark of the PUB socket */
  hwm: number;
  /** batches waiting to be sent before the oldest are dropped */
  maxQueueSize: number;
}

const endpointRe = /^(tcp:\/\/.+:(\*|\d+)|ipc:\/\/.+|inproc:\/\/.+)$/;
const endpoint = z
  .string()
  .regex(endpointRe, "must look like tcp://HOST:PORT, tcp://*:PORT, ipc://PATH or inproc://NAME");
const count = z.number().int("must be an integer").min(1, "must be at least 1");

const schema = z
  .object({
    enable_kv_cache_events: z.boolean().default(false),
    publisher: z.enum(["zmq", "null"]).nullable().optional(),
    endpoint: endpoint.default("tcp://*:5557"),
    replay_endpoint: endpoint.nullable().default(null),
    topic: z.string().default(""),
    buffer_steps: count.default(10000),
    hwm: count.default(100000),
    max_queue_size: count.default(100000),
  })
  .strict();

export class KvEventsConfigError extends InvalidConfigError {
  override name = "KvEventsConfigError";
}

/**
 * Parses the JSON text (or an already parsed object) given to --kv-events-config. Errors name the field.
 * As in vLLM, an absent publisher means "zmq" when events are enabled and "null" otherwise.
 */
export function parseKvEventsConfig(json: string | unknown): KvEventsConfig {
  let raw: unknown = json;
  if (typeof json === "string") {
    try {
      raw = JSON.parse(json);
    } catch (err) {
      throw new KvEventsConfigError(`--kv-events-config: not valid JSON (${(err as Error).message})`);
    }
  }
  const res = schema.safeParse(raw);
  if (!res.success) {
    const msgs = res.error.issues.map((i) => {
      if (i.code === "unrecognized_keys") return `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(", ")}`;
      const field = i.path.length ? i.path.join(".") : "(config)";
      return `${field}: ${i.message}`;
    });
    throw new KvEventsConfigError(`--kv-events-config: ${msgs.join("; ")}`);
  }
  const c = res.data;
  return {
    enabled: c.enable_kv_cache_events,
    publisher: c.publisher ?? (c.enable_kv_cache_events ? "zmq" : "null"),
    endpoint: c.endpoint,
    replayEndpoint: c.replay_endpoint,
    topic: c.topic,
    bufferSteps: c.buffer_steps,
    hwm: c.hwm,
    maxQueueSize: c.max_queue_size,
  };
}
