// Where engines come from. A discovery source yields add/remove events; the router's registry does
// the rest (health, models, load). Every source here (static, file, Kubernetes) implements this.

export interface EngineSpec {
  /** base URL without a trailing slash; the engine's identity */
  url: string;
  /** share of traffic among healthy engines (canary); 0 takes none */
  weight: number;
  /** API key for this engine, overriding the fleet-wide one */
  apiKey?: string | undefined;
  /** the engine's KV-event PUB endpoint (Kubernetes: pod IP + `switchyard.dev/kv-events-port`) */
  kvEvents?: { endpoint: string; replay?: string | undefined; topic?: string | undefined } | undefined;
  /** model entry name (`switchyard.dev/model`); the served names still come from /v1/models */
  model?: string | undefined;
  /** `switchyard.dev/served-model-name` */
  servedModelName?: string | undefined;
  /** `switchyard.dev/role`: mixed, prefill or decode */
  role?: string | undefined;
  /** where it was found, for logs and /engines (e.g. `pod ns/name`) */
  source?: string | undefined;
}

export interface DiscoverySink {
  /** adds an engine, or updates the weight/key of one already known */
  upsert(spec: EngineSpec): void;
  remove(url: string): void;
}

export interface DiscoverySource {
  readonly name: string;
  start(sink: DiscoverySink): void | Promise<void>;
  stop(): void | Promise<void>;
}
