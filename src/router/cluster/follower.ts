// A router worker's registry follows the primary's: one process probes, scrapes and judges health
// (control-plane.ts), so every worker has the same engines in the same state, and engines see one
// router's probes whatever the worker count. What the worker's own traffic says of an engine (a reset,
// a 5xx, a success after failures) goes to the primary, which decides and tells every worker.
import type { EngineRegistry, RegistryLeader } from "../engines/engine-registry.js";
import type { EngineStatus, ToPrimary } from "./protocol.js";
import type { ModelCard, EngineRecord } from "../engines/engine-record.js";

export class RegistryFollower implements RegistryLeader {
  constructor(
    private readonly registry: EngineRegistry,
    private readonly send: (m: ToPrimary) => void,
    /** the engine's prefix-cache hit counter at the primary's last scrape */
    private readonly onHits?: (e: EngineRecord, hits: number) => void,
  ) {
    registry.leader = this;
  }

  failure(e: EngineRecord, what: string): void {
    // counted here too until the primary's verdict arrives: cache credit stops at once
    // (../kv/cache-routing.ts)
    e.passiveFailures++;
    e.lastError = what;
    this.send({ t: "fail", url: e.url, what });
  }

  shutdown(e: EngineRecord): void {
    // out of this worker's rotation at once; the primary decides for everyone
    e.view.healthy = false;
    this.send({ t: "shutdown", url: e.url });
  }

  success(e: EngineRecord): void {
    // sent once: the primary's next status says the count it keeps
    e.passiveFailures = 0;
    this.send({ t: "ok", url: e.url });
  }

  /** The primary's view of one engine: created here if new, then its state, counters and load. */
  status(s: EngineStatus): void {
    const reg = this.registry;
    let e = reg.engines.get(s.spec.url);
    if (!e || e.draining || JSON.stringify(e.spec) !== JSON.stringify(s.spec)) {
      reg.upsert(s.spec);
      e = reg.engines.get(s.spec.url)!;
    }
    e.healthFailures = s.healthFailures;
    e.healthSuccesses = s.healthSuccesses;
    e.passiveFailures = s.passiveFailures;
    e.lastError = s.lastError;
    e.lastModelsMs = s.lastModelsMs;
    // a new scrape (a status also changes with health counters: the load is then as it was)
    if (s.lastScrapeMs !== e.lastScrapeMs) {
      reg.applyLoad(e, s.load, s.lastScrapeMs);
      if (s.prefixCacheHits !== undefined) this.onHits?.(e, s.prefixCacheHits);
    }
    if (s.state !== e.state) {
      const admitted = s.state === "healthy";
      e.state = s.state;
      e.view.healthy = admitted && !e.draining;
      if (admitted) reg.emit("capacity");
      // the engine's own health says it drains: this worker's streams on it move, as the primary's would
      else if (s.state === "draining") reg.emit("draining", e);
    }
  }

  models(url: string, cards: ModelCard[]): void {
    const e = this.registry.engines.get(url);
    if (!e) return;
    e.modelCards = cards;
    e.view.models.clear();
    for (const c of cards) e.view.models.add(c.id);
    this.registry.emit("models", e);
    this.registry.emit("capacity");
  }

  remove(url: string): void {
    this.registry.remove(url);
  }
}
