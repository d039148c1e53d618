// A fixed list of engines (the router's flags and config file) that a reload replaces as a whole:
// it emits the difference, so engines that stay keep their state.
import type { DiscoverySink, DiscoverySource, EngineSpec } from "./types.js";

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
