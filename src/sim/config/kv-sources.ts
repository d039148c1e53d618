// What `GET /kv_event_sources` answers: the engine's KV-events config per data-parallel rank, with the
// endpoints as the publisher actually bound them. A router or indexer discovers where to subscribe
// from here instead of being told the port; with `"endpoint":"tcp://*:0"` that is the only way to learn
// it. vLLM 0.32 lists only enabled ZMQ publishers, so an engine without events answers `{}`.
import type { KvEventsConfig } from "../../kvevents/config.js";

export type KvEventSources = Record<string, Record<string, unknown>>;

/**
 * The configured endpoint with the port the socket got: `tcp://*:0` stays a wildcard, as vLLM keeps
 * the configured host and reports the resolved port. A connecting endpoint (a collector's address)
 * is reported as configured.
 */
export function reportedEndpoint(configured: string, bound: string | null): string {
  if (!bound) return configured;
  const want = /^(tcp:\/\/.*):(\*|\d+)$/.exec(configured);
  const got = /:(\d+)$/.exec(bound);
  if (!want || !got) return configured;
  return `${want[1]}:${got[1]}`;
}

export function kvEventSources(
  cfg: KvEventsConfig | null,
  bound: { endpoint: string; replayEndpoint: string | null } | null,
  dataParallelRank = 0,
): KvEventSources {
  if (!cfg || !cfg.enabled || cfg.publisher !== "zmq" || !bound) return {};
  return {
    [String(dataParallelRank)]: {
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: reportedEndpoint(cfg.endpoint, bound.endpoint),
      replay_endpoint: cfg.replayEndpoint ? reportedEndpoint(cfg.replayEndpoint, bound.replayEndpoint) : null,
      buffer_steps: cfg.bufferSteps,
      hwm: cfg.hwm,
      max_queue_size: cfg.maxQueueSize,
      topic: cfg.topic,
    },
  };
}
