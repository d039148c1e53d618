// The engine model in real time: one Engine driven by the RealTimeDriver, with every request's tokens
// and completion routed back to the HTTP handler that owns it, metrics observed on the way, and each
// step's KV events handed to the ZMQ publisher as one batch.
//
// Outputs are paced as vLLM's API server emits them: one delivery per engine step, when the step
// completes. The driver keeps the modelled timeline rather than the timers' (real-time-driver.ts), so
// it sometimes completes steps microseconds apart: when less than a timer tick (1 ms) of a step is
// left it completes at once, and after a late timer it catches up with steps back to back. Written as
// they came, those steps' SSE events reached the client in one read, and its ITL was mostly zeros (64%
// of samples under 0.5 ms at --time-scale 0.1). A step that completes too soon after the previous
// delivery is held and merged into the next one, as vLLM's output collector merges the deltas of
// steps a consumer has not taken yet; the engine's own metrics still see every step.
import { Engine } from "../../engine/index.js";
import { RealTimeDriver, wallSeconds } from "./real-time-driver.js";
import type {
  EngineConfig,
  EngineLora,
  EngineObserver,
  EngineRequest,
  EngineSnapshot,
  FinishReason,
  RequestTimings,
  StepPlan,
} from "../../engine/types.js";
import type { KvEvent, KvEventBatch } from "../../kvevents/events.js";
import { logger } from "../../obs/log.js";
import type { DisaggConnector } from "../connectors/disagg.js";
import { LMCACHE_EVENT_MEDIUM, type LmcacheTier } from "../connectors/lmcache.js";
import type { SimMetrics } from "../metrics/metrics.js";
import type { RequestSink } from "../protocol/sink.js";

export type { RequestSink } from "../protocol/sink.js";

const log = logger("sim.engine");

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

/**
 * Deliveries of step outputs are at least this far apart (ms), and at least half the step's own wall
 * duration: Node's timers cannot pace finer than 1 ms, and half a step absorbs timer jitter.
 */
const MIN_DELIVERY_GAP_MS = 1;

/** Outputs of held steps for one request, merged until the next delivery. */
interface Held {
  sink: RequestSink;
  tokenIds: number[];
  time: number;
  finish: { reason: FinishReason; timings: RequestTimings } | null;
}

export class SimRuntime {
  readonly engine: Engine;
  private readonly driver: RealTimeDriver;
  private readonly tracked = new Map<string, Tracked>();
  /** outputs held for the next delivery; at most one entry per request in flight */
  private readonly held = new Map<string, Held>();
  /** true while a step that completed too early runs its outputs into `held` */
  private holding = false;
  private lastDeliveryMs = -Infinity;
  /** wall ms the step in flight takes (its modelled duration × time scale) */
  private stepWallMs = 0;
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** the earliest performance.now() the held outputs may go out */
  private flushDueMs = 0;
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
    this.engine = new Engine(config, observer, { clockScale: timeScale });
    this.observeSteps();
    this.paceSteps();
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
      if (plan) {
        this.stepWallMs = plan.duration * this.timeScale * 1000;
        if (this.metrics) this.metrics.observeStep(plan.prefillTokens + plan.decodeSeqs);
      }
      return plan;
    };
  }

  /** Holds the outputs of a step that completes too soon after the previous delivery (see the top). */
  private paceSteps(): void {
    const complete = this.engine.completeStep.bind(this.engine);
    this.engine.completeStep = (now: number): void => {
      const wall = performance.now();
      const gap = Math.max(MIN_DELIVERY_GAP_MS, this.stepWallMs / 2);
      const early = wall - this.lastDeliveryMs < gap;
      this.holding = early || this.held.size > 0;
      try {
        complete(now);
      } finally {
        this.holding = false;
      }
      // a delivery's time is when its last write went out: writing a large batch takes a while
      if (this.held.size === 0) this.lastDeliveryMs = performance.now();
      else if (!early) this.flush();
      else if (!this.flushTimer) {
        this.flushDueMs = this.lastDeliveryMs + gap;
        this.flushTimer = setTimeout(this.flushWhenDue, this.flushDueMs - wall);
      }
    };
  }

  // Node's timers run on the event loop's cached millisecond clock and may fire a fraction of a
  // millisecond early by performance.now(): wait out the rest rather than deliver early.
  private readonly flushWhenDue = (): void => {
    const wait = this.flushDueMs - performance.now();
    if (wait > 0) this.flushTimer = setTimeout(this.flushWhenDue, wait);
    else this.flush();
  };

  /** Delivers every held output: one merged onTokens per request, then its finish. */
  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    for (const h of this.held.values()) this.send(h);
    this.held.clear();
    this.lastDeliveryMs = performance.now();
  }

  private send(h: Held): void {
    if (h.tokenIds.length > 0) h.sink.onTokens(h.tokenIds, h.time);
    if (h.finish) h.sink.onFinished(h.finish.reason, h.finish.timings);
  }

  /** Hands a request's outputs to its sink now, or holds them while the step is held. */
  private deliver(
    id: string,
    sink: RequestSink,
    ids: readonly number[] | null,
    time: number,
    finish: Held["finish"],
  ): void {
    let h = this.held.get(id);
    if (!h && !this.holding) {
      if (ids) sink.onTokens(ids, time);
      if (finish) sink.onFinished(finish.reason, finish.timings);
      return;
    }
    if (!h) {
      h = { sink, tokenIds: [], time, finish: null };
      this.held.set(id, h);
    }
    // the engine reuses the array it passes: copy
    if (ids) for (const t of ids) h.tokenIds.push(t);
    h.time = time;
    if (finish) h.finish = finish;
    if (!this.holding) {
      // outside a step (an abort): what was held goes first, in order
      this.held.delete(id);
      this.send(h);
    }
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
        queuedTime: now,
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

  /** the adapters of the scheduler's running and waiting requests (vllm:lora_requests_info) */
  loraActivity(): { running: string[]; waiting: string[] } {
    const st = this.engine.loraState();
    return st ? { running: st.running, waiting: st.waiting } : { running: [], waiting: [] };
  }

  /** vLLM's add_lora: the adapter into the host cache and a slot; the modelled seconds it takes */
  loadLora(a: EngineLora): number {
    return this.engine.loadLora(a, wallSeconds());
  }

  unloadLora(name: string): void {
    this.engine.unloadLora(name);
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
    this.deliver(id, t.sink, ids, time, null);
  }

  private finished(id: string, reason: FinishReason, timings: RequestTimings): void {
    const t = this.tracked.get(id);
    this.lmcache?.forget(id);
    if (!t) return;
    this.tracked.delete(id);
    this.metrics?.observeFinished(reason, timings, t.maxTokensParam);
    this.deliver(id, t.sink, null, timings.finishedTime, { reason, timings });
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
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
  }
}
