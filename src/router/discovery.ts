// Where engines come from. A discovery source yields add/remove events; the registry does the rest
// (health, models, load). Static lists (flags, config file, hot reload) here; the file and
// Kubernetes sources (src/discovery) implement the same interface.

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

/** A fixed list that can be replaced as a whole (config reload): emits the difference. */
export class StaticDiscovery implements DiscoverySource {
  readonly name = "static";
  private sink: DiscoverySink | undefined;
  private current = new Map<string, EngineSpec>();

  constructor(private specs: readonly EngineSpec[]) {}

  start(sink: DiscoverySink): void {
    this.sink = sink;
    this.apply(this.specs);
  }

  update(specs: readonly EngineSpec[]): void {
    this.specs = specs;
    if (this.sink) this.apply(specs);
  }

  private apply(specs: readonly EngineSpec[]): void {
    const next = new Map(specs.map((s) => [s.url, s]));
    for (const url of this.current.keys()) if (!next.has(url)) this.sink!.remove(url);
    for (const s of next.values()) this.sink!.upsert(s);
    this.current = next;
  }

  stop(): void {
    this.sink = undefined;
  }
}
