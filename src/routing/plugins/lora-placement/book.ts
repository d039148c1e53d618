// The `lora` policy's state, one per policy: its options resolved, its learned service time, the
// per-adapter request rates an eviction's price reads, and what was scored per request (for the pick's
// word to the cache oracle). The scorer, picker and hooks (files beside this one) read and update it.
import { LruMap } from "../../../collections/lru-map.js";
import { RequestMemo } from "../../policy/memo.js";
import type { CacheOracle, CacheSource } from "../../policy/cache-oracle.js";
import type { EngineView } from "../../policy/views.js";

export interface LoraPolicyOptions {
  /** seconds one request takes on an engine, before it learns them from completions; default 2 */
  serviceSeconds?: number;
  /**
   * the queue's price: each request in flight on an engine costs service / (2 × batchSize) seconds;
   * default 256. vLLM runs 256 to 1,024 sequences at once (max_num_seqs), so a request in flight
   * delays a new one's first token little; at 32 an engine with 4 more in flight looked twice a cold
   * load slower, and ours loaded adapters to avoid it (routing/lora: TTFT p90 99 → 86 ms at 70%)
   */
  batchSize?: number;
  /** half-life of the per-adapter traffic rates, ms; default 60 s */
  rateHalfLifeMs?: number;
  /**
   * the router's cache oracle: a candidate's cached prefix of the request (vLLM hashes the adapter
   * into its blocks, so only that adapter's earlier prompts count) is taken off its cost at the
   * prefill time it saves; the decision is told to it (the route note). Absent: no prefix is priced.
   */
  cache?: CacheOracle | undefined;
  /** seconds of prefill one cached prompt token saves; default 50 µs (20,000 tokens/s) */
  prefillSecondsPerToken?: number;
  /**
   * the prompt tokens a request queued on an engine for prefill holds a new one up by (at
   * prefillSecondsPerToken); default 256: a prompt past a system prompt the engine holds (the LoRA
   * benchmark's own part). In virtual time 100 and 256 tokens gave TTFT p90 within a few ms of each
   * other at the sweep's points tried; 1,024, without the replica's price, made 50 adapters at high
   * rates worse. Requests in flight (batchSize) price the decode batch; this prices the prefill queue.
   */
  queuedPromptTokens?: number;
}

/** a request's candidates and cached tokens, from its decision to its pick */
export interface LoraScored {
  engines: readonly EngineView[];
  cached: Float64Array;
  source: CacheSource[];
}

/** per-adapter request rates (decayed counts), bounded: what an eviction's price reads */
export class AdapterRates {
  private readonly rates = new LruMap<string, { n: number; at: number }>();
  constructor(
    private readonly halfLifeMs: number,
    private readonly cap = 16_384,
  ) {}
  note(name: string, now: number): void {
    const rate = this.rates.use(name);
    if (rate) {
      rate.n = rate.n * Math.pow(0.5, (now - rate.at) / this.halfLifeMs) + 1;
      rate.at = now;
    } else {
      this.rates.set(name, { n: 1, at: now });
      while (this.rates.size > this.cap) this.rates.shift();
    }
  }
  /** requests per second, decayed to `now` */
  perSecond(name: string, now: number): number {
    const rate = this.rates.get(name);
    if (!rate) return 0;
    const decayed = rate.n * Math.pow(0.5, (now - rate.at) / this.halfLifeMs);
    return (decayed * Math.LN2) / (this.halfLifeMs / 1000);
  }
}

/**
 * This router's own requests on each engine, bounded: those in flight (picked, not yet ended) and the
 * same counted by when they were sent (each send decayed over a request's time). The decayed count
 * expects as many as are in flight but, unlike the in-flight count, does not drop at the end of the
 * step in which requests finish: priced by it, an engine that has just begun a step (its finished
 * requests just left) does not look the least loaded, and the sends spread as round-robin's do.
 */
export class OwnRequests {
  private readonly engines = new LruMap<string, { inFlight: number; sent: number; at: number }>();
  constructor(private readonly cap = 4096) {}
  private entry(id: string, now: number) {
    let e = this.engines.use(id);
    if (!e) {
      e = { inFlight: 0, sent: 0, at: now };
      this.engines.set(id, e);
      while (this.engines.size > this.cap) this.engines.shift();
    }
    return e;
  }
  sent(id: string, now: number, service: number): void {
    const e = this.entry(id, now);
    e.sent = this.decayed(e, now, service) + 1;
    e.at = Math.max(e.at, now);
    e.inFlight++;
  }
  ended(id: string): void {
    const e = this.engines.get(id);
    if (e && e.inFlight > 0) e.inFlight--;
  }
  /** [requests in flight, sends decayed to `now` over `service` seconds] */
  on(id: string, now: number, service: number): [number, number] {
    const e = this.engines.get(id);
    return e ? [e.inFlight, this.decayed(e, now, service)] : [0, 0];
  }
  private decayed(e: { sent: number; at: number }, now: number, service: number): number {
    return now > e.at ? e.sent * Math.exp(-(now - e.at) / (service * 1000)) : e.sent;
  }
}

/** one `lora` policy's state */
export class LoraPlacementBook {
  readonly batch: number;
  /** seconds a request holds its engine: a moving mean of completions (onDone) */
  service: number;
  readonly rates: AdapterRates;
  /** this router's own requests per engine: in flight, and by when they were sent */
  readonly own = new OwnRequests();
  /** each candidate's cost in seconds, reused across decisions */
  readonly costs: number[] = [];
  readonly cache: CacheOracle | undefined;
  readonly perToken: number;
  /** seconds a prompt queued for prefill on an engine holds a new one up by */
  readonly queuedPromptSeconds: number;
  readonly scored = new RequestMemo<LoraScored>("lora.scored");
  /** the time of the latest decision (the caller's clock), for the rates onPicked notes */
  lastNow = 0;

  constructor(opts: LoraPolicyOptions) {
    this.batch = opts.batchSize ?? 256;
    this.service = opts.serviceSeconds ?? 2;
    this.rates = new AdapterRates(opts.rateHalfLifeMs ?? 60_000);
    this.cache = opts.cache;
    this.perToken = opts.prefillSecondsPerToken ?? 50e-6;
    this.queuedPromptSeconds = (opts.queuedPromptTokens ?? 256) * this.perToken;
  }
}
