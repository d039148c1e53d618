// Graceful drain of one engine. An engine that leaves discovery (pod deleted, file entry removed),
// answers its health probe as draining, or is drained by hand (POST /admin/engines/drain) gets no
// new requests from the moment the registry says so; the requests it holds may finish for
// `engineDrainTimeout`. Then the streams among them that can migrate move to other engines, and
// requests still waiting for their first byte are sent elsewhere; streams that cannot migrate are
// left to finish (or fail) where they are. A request whose model no other engine in rotation serves
// yet (its replacement just discovered and not yet probed) stays on the draining engine, which still
// answers, and the deadline is tried again a moment later: moving it then would only fail it. An
// ejected engine's streams that have gone silent move at once rather than waiting out the idle
// timeout: the engine was judged unhealthy and says nothing.
import { logger } from "../../obs/log.js";
import type { MoveReason } from "./rules.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";

const log = logger("router.drain");

/** how soon a deadline that left requests with nowhere to go is tried again (ms) */
const RETRY_MS = 250;

/**
 * What a drain asks of an attempt in flight: the data plane's Attempt (../dataplane/attempt.ts), named
 * here by what it must do so that this room does not import the data plane that imports it.
 */
export interface MovableAttempt {
  /** the model the request asks for: it moves only to an engine that serves it */
  readonly model: string;
  readonly movable: boolean;
  readonly midStream: boolean;
  silentFor(now: number): number;
  moveOff(why: MoveReason): void;
}

export interface DrainDeps {
  registry: EngineRegistry;
  config: () => RouterConfig;
  /** the attempts in flight on an engine (the data plane's list) */
  attemptsOn: (e: EngineRecord) => { toArray(): MovableAttempt[] };
}

export class EngineDrains {
  /** one deadline per engine draining now; entries go when they fire or the drain ends */
  private readonly timers = new Map<EngineRecord, NodeJS.Timeout>();

  constructor(private readonly d: DrainDeps) {
    d.registry.on("draining", (e) => this.start(e));
  }

  /** An engine started draining: its requests in flight get engineDrainTimeout, then move. */
  start(e: EngineRecord, afterMs?: number): void {
    if (this.timers.has(e)) return;
    const ms = afterMs ?? this.d.config().engineDrainTimeout;
    const t = setTimeout(() => {
      this.timers.delete(e);
      // back in rotation meanwhile (a drain ended by hand, an engine that came back): nothing to do
      if (!e.draining && e.state !== "draining") return;
      const served = this.servedElsewhere(e);
      const moved = this.move(e, "drain", (a) => served.has(a.model));
      const left = this.d
        .attemptsOn(e)
        .toArray()
        .filter((a) => a.movable && !served.has(a.model)).length;
      if (afterMs === undefined || moved > 0)
        log.info(
          { engine: e.url, moved, left, drainMs: ms },
          "engine drain deadline: requests in flight moved",
        );
      // a request with nowhere to go yet is tried again once its model's engine may be in rotation
      if (left > 0) this.start(e, RETRY_MS);
    }, ms);
    t.unref();
    this.timers.set(e, t);
  }

  /** A drain ended (by hand): the deadline is off. */
  cancel(e: EngineRecord): void {
    clearTimeout(this.timers.get(e));
    this.timers.delete(e);
  }

  /** The engine was ejected: its migratable streams silent for a health timeout or longer move now. */
  ejected(url: string): void {
    const e = this.d.registry.engines.get(url);
    if (!e) return;
    const quiet = this.d.config().health.timeout;
    const now = performance.now();
    const moved = this.move(e, "ejected", (a) => a.midStream && a.silentFor(now) >= quiet);
    if (moved > 0) log.warn({ engine: url, moved }, "engine ejected: its silent streams moved");
  }

  /** the models some other engine in rotation (healthy, not draining) serves now */
  private servedElsewhere(e: EngineRecord): Set<string> {
    const served = new Set<string>();
    for (const o of this.d.registry.engines.values())
      if (o !== e && o.healthy && !o.draining && o.state !== "draining")
        for (const m of o.view.models) served.add(m);
    return served;
  }

  private move(e: EngineRecord, why: MoveReason, which: (a: MovableAttempt) => boolean): number {
    let n = 0;
    for (const a of this.d.attemptsOn(e).toArray()) {
      if (!a.movable || !which(a)) continue;
      a.moveOff(why);
      n++;
    }
    return n;
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
