// The engine model in real time: one Engine driven by the RealTimeDriver, with every request's tokens
// and completion routed back to the HTTP handler that owns it, metrics observed on the way, and each
// step's KV events handed to the ZMQ publisher as one batch.
import { Engine, RealTimeDriver } from "../engine/index.js";
import type {
  EngineConfig,
  EngineObserver,
  EngineRequest,
  EngineSnapshot,
  FinishReason,
  RequestTimings,
  StepPlan,
} from "../engine/types.js";
import type { KvEvent, KvEventBatch } from "../kvevents/events.js";
import { logger } from "../obs/log.js";
import type { DisaggConnector } from "./disagg.js";
import { LMCACHE_EVENT_MEDIUM, type LmcacheTier } from "./lmcache.js";
import type { SimMetrics } from "./metrics.js";

const log = logger("sim.engine");

export interface RequestSink {
  onTokens(tokenIds: readonly number[], time: number): void;
  onFinished(reason: FinishReason, timings: RequestTimings): void;
}

interface Tracked {
  sink: RequestSink;
  lastTokenTime: number;
  maxTokensParam: number;
  loraName: string | null;
  arrivalTime: number;
  producing: boolean;
}

export interface KvBatchSink {
  publish(batch: KvEventBatch): void;
}

/** Requests in flight at once; above it new requests get a 503 instead of growing maps without bound. */
export const MAX_IN_FLIGHT = 65_536;

export class SimRuntime {
  readonly engine: Engine;
  private readonly driver: RealTimeDriver;
  private readonly tracked = new Map<string, Tracked>();
  metrics: SimMetrics | null = null;
  kvSink: KvBatchSink | null = null;
  kvBatchesPublished = 0;
  /** LMCache around the engine: prefix lookups before admission, stores of computed chunks */
  lmcache: LmcacheTier | null = null;
  /** stamp group_idx 0 on engine events (the layout of vLLM ≥ 0.24 does) */
  groupIdxOnEvents = false;
  /** NixlConnector: a decode request waits for its KV from the prefill engine before admission */
  disagg: DisaggConnector | null = null;

  constructor(
    readonly config: EngineConfig,
    readonly timeScale: number,
  ) {
    const observer: EngineObserver = {
      onTokens: (id, ids, time) => this.tokens(id, ids, time),
      onFinished: (id, reason, timings) => this.finished(id, reason, timings),
      onKvEvents: (events, time) => this.kvEvents(events, time),
      onChunksComputed: (id, from, to, tokenIds, time) => this.chunksComputed(id, from, to, tokenIds, time),
    };
    this.engine = new Engine(config, observer);
    this.observeSteps();
    this.driver = new RealTimeDriver(this.engine, {
      timeScale,
      onError: (err) => log.error({ err }, "engine step failed; the engine loop stopped"),
    });
  }

  /** Observes vllm:iteration_tokens_total from each plan without a second pass over the batch. */
  private observeSteps(): void {
    const begin = this.engine.beginStep.bind(this.engine);
    this.engine.beginStep = (now: number): StepPlan | null => {
      const plan = begin(now);
      if (plan && this.metrics) this.metrics.observeStep(plan.prefillTokens + plan.decodeSeqs);
      return plan;
    };
  }

  get inFlight(): number {
    return this.tracked.size;
  }

  snapshot(): EngineSnapshot {
    return this.engine.snapshot();
  }

  submit(req: EngineRequest, sink: RequestSink, maxTokensParam: number): void {
    this.tracked.set(req.requestId, {
      sink,
      lastTokenTime: 0,
      maxTokensParam,
      loraName: req.loraName,
      arrivalTime: req.arrivalTime,
      producing: false,
    });
    const lookup = this.lmcache?.prepare(req) ?? this.disagg?.prepare(req);
    if (lookup) void lookup.then(() => this.admit(req));
    else this.admit(req);
  }

  private admit(req: EngineRequest): void {
    const t = this.tracked.get(req.requestId);
    if (!t) {
      // aborted while its prefix was being looked up
      this.lmcache?.forget(req.requestId);
      return;
    }
    try {
      this.engine.add(req);
    } catch (err) {
      // submit() callers validate first; this is a bug, but one request must not take the server down
      log.error({ err, requestId: req.requestId }, "engine refused a request after its LMCache lookup");
      this.tracked.delete(req.requestId);
      this.lmcache?.forget(req.requestId);
      const now = req.arrivalTime;
      t.sink.onFinished("abort", {
        arrivalTime: now,
        firstScheduledTime: now,
        firstTokenTime: -1,
        finishedTime: now,
        promptTokens: req.promptTokenIds.length,
        outputTokens: 0,
        cachedTokens: 0,
        externalTokens: 0,
        preemptions: 0,
      });
      return;
    }
    this.driver.wake();
  }

  abort(requestId: string): void {
    if (!this.tracked.has(requestId)) return;
    // The engine reports the abort through onFinished, which drops the entry; if it does not know the
    // request any more, drop it here so that nothing leaks.
    if (!this.engine.abort(requestId)) this.tracked.delete(requestId);
  }

  loraActivity(): { running: string[]; waiting: string[] } {
    const running = new Set<string>();
    const waiting = new Set<string>();
    for (const t of this.tracked.values()) {
      if (t.loraName) (t.producing ? running : waiting).add(t.loraName);
    }
    for (const n of running) waiting.delete(n);
    return { running: [...running], waiting: [...waiting] };
  }

  private tokens(id: string, ids: readonly number[], time: number): void {
    const t = this.tracked.get(id);
    if (!t) return;
    const m = this.metrics;
    if (m) {
      if (t.lastTokenTime === 0) m.observeTtft(time - t.arrivalTime);
      else m.observeItl(time - t.lastTokenTime);
    }
    t.lastTokenTime = time;
    t.producing = true;
    t.sink.onTokens(ids, time);
  }

  private finished(id: string, reason: FinishReason, timings: RequestTimings): void {
    const t = this.tracked.get(id);
    this.lmcache?.forget(id);
    if (!t) return;
    this.tracked.delete(id);
    this.metrics?.observeFinished(reason, timings, t.maxTokensParam);
    t.sink.onFinished(reason, timings);
  }

  private chunksComputed(
    id: string,
    from: number,
    to: number,
    tokenIds: readonly number[],
    _time: number,
  ): void {
    const lm = this.lmcache;
    if (!lm) return;
    lm.chunksComputed(id, from, to, tokenIds, this.kvSink ? this.emitEvents : null);
  }

  // after the step's own batch (flushed at the end of completeStep), not before it
  private readonly emitEvents = (events: KvEvent[]): void => queueMicrotask(() => this.kvEvents(events, 0));

  private kvEvents(events: KvEvent[], _time: number): void {
    if (!this.kvSink || events.length === 0) return;
    if (this.groupIdxOnEvents) {
      // vLLM ≥ 0.24 names the KV-cache group on its own GPU and offload events (one group here: 0);
      // the events its LMCache connector relays carry none
      for (const ev of events)
        if (ev.type !== "AllBlocksCleared" && ev.medium !== LMCACHE_EVENT_MEDIUM) ev.groupIdx = 0;
    }
    this.kvSink.publish({
      ts: Date.now() / 1000,
      events,
      dataParallelRank: this.config.dataParallelRank ?? 0,
    });
    this.kvBatchesPublished++;
  }

  stop(): void {
    this.driver.stop();
  }
}
