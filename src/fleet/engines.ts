// The engines of a simulated fleet: N copies of the one engine model (src/engine) on the virtual driver,
// the requests each is serving (first token, inter-token gaps, the answer's ids), and the shared LMCache
// server each looks prefixes up in and stores computed chunks to. A finished request goes back to the
// caller with what was observed of it.
import {
  Engine,
  type EngineConfig,
  type EngineLora,
  type RequestTimings,
  type VirtualDriver,
} from "../engine/index.js";
import type { Answer, Turn } from "./load.js";
import type { SharedCacheServer } from "./remote.js";

/** A request on an engine. */
export interface Flight extends Answer {
  turn: Turn;
  engine: number;
  lastTokenAt: number;
  firstTokenAt: number;
  /** the prompt's chunk keys on the shared server (null without one) */
  keys: number[] | null;
}

export class FleetEngines {
  readonly engines: Engine[] = [];
  private readonly flights = new Map<string, Flight>();

  constructor(
    config: EngineConfig,
    count: number,
    private readonly driver: VirtualDriver,
    /** the shared server each engine uses, by engine index; null: none */
    private readonly servers: readonly SharedCacheServer[] | null,
    recordItl: boolean,
    onFirstToken: (f: Flight) => void,
    onFinished: (f: Flight, t: RequestTimings) => void,
  ) {
    const chunkTokens = servers?.[0]?.chunkTokens;
    const cfg: EngineConfig = chunkTokens ? { ...config, externalChunkTokens: chunkTokens } : config;
    for (let e = 0; e < count; e++) {
      const shared = servers?.[e] ?? null;
      const engine: Engine = new Engine(cfg, {
        onTokens: (rid, ids, time) => {
          const f = this.flights.get(rid)!;
          if (f.firstTokenAt < 0) {
            f.firstTokenAt = time;
            onFirstToken(f);
          } else if (recordItl) f.itl.push((time - f.lastTokenAt) * 1000);
          f.lastTokenAt = time;
          // only a multi-round session's next turn needs the answer's ids
          if (f.turn.active.session.carriesHistory)
            for (let i = 0; i < ids.length; i++) f.answer.push(ids[i]!);
        },
        onFinished: (rid, _reason, t) => {
          const f = this.flights.get(rid)!;
          this.flights.delete(rid);
          onFinished(f, t);
        },
        onChunksComputed: shared
          ? (rid, from, to) => {
              const f = this.flights.get(rid);
              if (f?.keys) shared.store.put(f.keys, from, to);
            }
          : undefined,
      });
      this.engines.push(engine);
      driver.attach(engine);
    }
  }

  /**
   * Sends a turn to engine `e` now. `arrivedAt`: when the turn reached the router (it may have waited
   * there); the record is timed from it. `maxTokens`: a cap below the turn's (a P/D prefill's 1);
   * `transferredTokens`: prompt tokens whose KV a prefill engine computed and moved here (in place, at
   * no further cost: the transfer was waited for before); `lora`: the adapter it names (loaded there).
   */
  start(
    turn: Turn,
    e: number,
    arrivedAt = this.driver.now,
    opts: { maxTokens?: number; transferredTokens?: number; lora?: EngineLora | undefined } = {},
  ): void {
    const now = this.driver.now;
    const engine = this.engines[e]!;
    const prompt = turn.prompt;
    const maxTokens = Math.min(
      opts.maxTokens ?? turn.maxTokens,
      turn.maxTokens,
      engine.config.maxModelLen - prompt.length,
    );
    let keys: number[] | null = null;
    let ext = opts.transferredTokens ?? 0;
    let bandwidth = Number.POSITIVE_INFINITY;
    const shared = this.servers?.[e];
    if (shared) {
      const hit = shared.lookup(prompt);
      keys = hit.keys;
      ext = hit.tokens;
      bandwidth = shared.store.bandwidth;
    }
    const rid = `r${turn.index}`;
    this.flights.set(rid, {
      turn,
      engine: e,
      start: arrivedAt,
      lastTokenAt: now,
      firstTokenAt: -1,
      itl: [],
      answer: [],
      keys,
    });
    const salt = turn.index * 2654435761;
    engine.add({
      requestId: rid,
      promptTokenIds: prompt,
      maxTokens: Math.max(1, maxTokens),
      stopAfter: Math.max(1, maxTokens),
      ignoreEos: true,
      minTokens: 0,
      priority: 0,
      cacheSalt: null,
      loraName: opts.lora?.name ?? null,
      ...(opts.lora ? { lora: opts.lora } : {}),
      arrivalTime: now,
      sampleToken: (i) => 1000 + (((salt + i * 40503) >>> 0) % 50000),
      externalCachedTokens: ext > 0 ? ext : undefined,
      externalLoadBandwidth: ext > 0 ? bandwidth : undefined,
      sharedPrefix: turn.sharedPrefix,
    });
    this.driver.wake(engine);
  }
}
