// The KV-event wire format and transport, for the sim (publisher) and the router (subscriber).
export * from "./events.js";
export { decodeBatch, encodeBatch, DecodeError, type DecodeStats } from "./codec.js";
export { parseKvEventsConfig, KvEventsConfigError, type KvEventsConfig } from "./config.js";
export { endpointBinds, offsetEndpoint } from "./endpoint.js";
export {
  createEventPublisher,
  NullEventPublisher,
  ZmqEventPublisher,
  REPLAY_END_SEQ,
  type KvEventPublisher,
  type PublisherStats,
} from "./publisher.js";
export { ReplayClient, type ReplayOutcome } from "./replay.js";
export { KvEventSubscriber, type KvEventSubscriberOptions, type SubscriberStats } from "./subscriber.js";
export { PublisherStream, type StreamCallbacks, type StreamOptions, type StreamStats } from "./sequencer.js";
export {
  KvEventCollector,
  topicAddress,
  urlAddresses,
  type CollectedEngine,
  type CollectorDrop,
  type CollectorStats,
} from "./collector.js";
export { layoutForVersion, parseVersion, versionAtLeast } from "./versions.js";
