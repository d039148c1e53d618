// The router's side of SLO autoscaling: a timer that gathers, per model and role, what the router
// already observes (requests answered, from its own counters; each engine's state, running and waiting
// from its scrapes; prompt and output lengths and the prefix-hit rate from the engines' counters; each
// engine's predicted TTFT from the predictive policy's timing), runs the pure decision (src/autoscale)
// and keeps the result for `switchyard_autoscale_*` and `GET /autoscale`. Nothing here runs per
// request: the request path only bumps counters it already had. It scales nothing itself; KEDA, an HPA
// or `switchyard up --autoscale` carry the decision out (docs/autoscaling.md).
import { Gauge, type Registry as PromRegistry } from "prom-client";
import {
  Autoscaler,
  EngineCapacity,
  type CapacityModel,
  type PoolRole,
  type PoolSignals,
  type ReplicaSignal,
  type ScaleDecision,
} from "../../autoscale/index.js";
import { defaultEngineConfig } from "../../engine/config.js";
import { resolveGpu, resolveModel } from "../../models/index.js";
import { logger } from "../../obs/log.js";
import { predictiveOptions, type EngineTiming, type EngineView } from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";

const log = logger("router.autoscale");

/** pools remembered (a pool whose engines all left still gets a decision: its traffic may need one) */
const MAX_POOLS = 256;
/** requests finished before the mean lengths and hit rate move */
const MIN_FINISHED = 20;
/** the GPU profile the decision sizes with when neither autoscaling.gpu nor the predictive policy names one */
const DEFAULT_GPU = "h100";

/** What the loop reads of the rest of the router, handed in by the wiring (../assembly.ts). */
export interface AutoscaleDeps {
  registry: EngineRegistry;
  config: () => RouterConfig;
  /** requests answered so far by model (the router's switchyard_requests_total, summed) */
  answeredByModel: () => Map<string, number>;
  /** the Prometheus registry the gauges join */
  metrics: PromRegistry;
}

/** One pool's decision with the signals it was made from, as GET /autoscale shows it. */
export interface PoolReport extends ScaleDecision {
  signals: Omit<PoolSignals, "replicas" | "model" | "role" | "nowS">;
  replicas: (ReplicaSignal & { inFlight: number })[];
}

export interface AutoscaleReport {
  enabled: boolean;
  intervalMs: number;
  slo: { ttftP90Ms: number; tpotP90Ms: number };
  minReplicas: number;
  maxReplicas: number;
  /** ms since the epoch of the last decision; null before the first */
  decidedAt: number | null;
  pools: PoolReport[];
}

/** one engine's cumulative counters, as last scraped */
interface EngineCounters {
  prompt: number;
  cached: number;
  generated: number;
  finished: number;
}

interface PoolMemo {
  model: string;
  role: PoolRole;
  /** the router's counts at the last round: requests answered for the model, in flight on the pool */
  last: { answered: number; inFlight: number } | undefined;
  /** each engine's counters at the last round (only engines still in the pool are kept) */
  engines: Map<string, EngineCounters>;
  /** the engines' differences since the lengths last moved */
  pending: EngineCounters;
  /** the last lengths and hit rate seen (kept through intervals with no finished request) */
  promptTokens: number;
  outputTokens: number;
  hitRate: number;
}

/**
 * The pool as a Kubernetes label value (a model id's `/` is not one), for an HPA's External metric
 * selector: `meta-llama/Llama-3.1-8B-Instruct`, mixed → `meta-llama-llama-3.1-8b-instruct-mixed`. The
 * chart writes the same (templates/engines.yaml).
 */
export function poolLabel(model: string, role: PoolRole): string {
  return `${model}-${role}`
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, "-")
    .slice(0, 63)
    .replace(/^[-._]+|[-._]+$/g, "");
}

function roleOf(e: EngineRecord): PoolRole {
  const r = e.spec.role?.trim().toLowerCase();
  return r === "prefill" || r === "decode" ? r : "mixed";
}

/** the models an engine serves as itself (an adapter's requests are its base model's load) */
function baseModels(e: EngineRecord): string[] {
  const cards = e.modelCards.filter((c) => c.parent === undefined || c.parent === null);
  return cards.length > 0 ? cards.map((c) => c.id) : [...e.view.models];
}

/**
 * The engine model's capacity for engines that run `timeScale` times the GPU's time (a sim at
 * --time-scale): a replica there serves 1/timeScale the rate at timeScale the latency.
 */
function scaled(base: CapacityModel, timeScale: number): CapacityModel {
  if (timeScale === 1) return base;
  return {
    latency(role, shape, rate) {
      const l = base.latency(role, shape, rate * timeScale);
      return { ...l, ttftP90Ms: l.ttftP90Ms * timeScale, tpotP90Ms: l.tpotP90Ms * timeScale };
    },
    sustainableRate(role, shape, ttft, tpot) {
      return base.sustainableRate(role, shape, ttft / timeScale, tpot / timeScale) / timeScale;
    },
  };
}

export class AutoscaleLoop {
  private timer: NodeJS.Timeout | undefined;
  private readonly pools = new Map<string, PoolMemo>();
  /** one decision per model (its engine profile sizes it); keyed by model */
  private readonly scalers = new Map<string, Autoscaler | null>();
  private configKey = "";
  private timing: ((e: EngineView, model: string) => EngineTiming | undefined) | undefined;
  private reports: PoolReport[] = [];
  private decidedAt: number | null = null;
  private lastTickS: number | undefined;

  constructor(private readonly d: AutoscaleDeps) {
    const reports = () => this.reports;
    const gauge = (name: string, help: string, pick: (r: PoolReport) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["model", "role", "pool"],
        registers: [d.metrics],
        collect() {
          this.reset();
          for (const r of reports())
            this.set({ model: r.model, role: r.role, pool: poolLabel(r.model, r.role) }, pick(r));
        },
      });
    gauge(
      "switchyard_autoscale_desired_replicas",
      "Replicas the SLO autoscaling decision asks for, by model and role (GET /autoscale gives the reason)",
      (r) => r.desired,
    );
    gauge(
      "switchyard_autoscale_current_replicas",
      "Replicas serving or starting as the router sees them (draining ones excluded), by model and role",
      (r) => r.current,
    );
    gauge(
      "switchyard_autoscale_forecast_rate",
      "Requests per second the decision sized for (the forecast at now + start-up), by model and role",
      (r) => r.forecastRatePerS ?? 0,
    );
  }

  /** Starts (or stops, when the config turns it off) the timer; a reload calls it again. */
  apply(): void {
    const a = this.d.config().autoscaling;
    clearInterval(this.timer);
    this.timer = undefined;
    if (!a.enabled) {
      this.reports = [];
      return;
    }
    this.timer = setInterval(() => this.tick(), a.interval);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  report(): AutoscaleReport {
    const a = this.d.config().autoscaling;
    return {
      enabled: a.enabled,
      intervalMs: a.interval,
      slo: { ttftP90Ms: a.ttftP90Ms, tpotP90Ms: a.tpotP90Ms },
      minReplicas: a.minReplicas,
      maxReplicas: a.maxReplicas,
      decidedAt: this.decidedAt,
      pools: this.reports,
    };
  }

  /** One round of decisions, at `nowS` (seconds; the wall clock's by default). */
  tick(nowS = performance.now() / 1000): PoolReport[] {
    const cfg = this.d.config();
    this.refresh(cfg);
    const dt = this.lastTickS === undefined ? undefined : nowS - this.lastTickS;
    this.lastTickS = nowS;
    const answered = this.d.answeredByModel();
    // the engines of each pool (an engine serving several models is in each of their pools)
    const members = new Map<string, EngineRecord[]>();
    for (const e of this.d.registry.engines.values()) {
      for (const model of baseModels(e)) {
        const key = `${model}\u0000${roleOf(e)}`;
        let list = members.get(key);
        if (!list) members.set(key, (list = []));
        list.push(e);
        if (!this.pools.has(key)) this.remember(key, model, roleOf(e));
      }
    }
    const reports: PoolReport[] = [];
    for (const [key, memo] of this.pools) {
      const engines = members.get(key) ?? [];
      const now = { answered: answered.get(memo.model) ?? 0, inFlight: 0 };
      for (const e of engines) now.inFlight += e.view.inFlight;
      const last = memo.last;
      memo.last = now;
      // the engines' own counters, as differences per engine: one that joined or restarted adds nothing
      // until its second round, one that left takes nothing away
      const d = this.engineDeltas(engines, memo);
      let rate = 0;
      if (last && dt !== undefined && dt > 0) {
        // arrivals = answered + the growth of what is in flight (both the router's own counts)
        rate = Math.max(0, now.answered - last.answered + (now.inFlight - last.inFlight)) / dt;
      }
      // the lengths and hit rate move once enough requests finished: prompt tokens count when a prompt
      // is computed, a request when it ends, so a few requests' worth would swing the mean
      const acc = memo.pending;
      acc.prompt += d.prompt;
      acc.cached += d.cached;
      acc.generated += d.generated;
      acc.finished += d.finished;
      if (acc.finished >= MIN_FINISHED) {
        memo.promptTokens = acc.prompt / acc.finished;
        memo.outputTokens = acc.generated / acc.finished;
        if (acc.prompt > 0) memo.hitRate = Math.min(1, acc.cached / acc.prompt);
        memo.pending = { prompt: 0, cached: 0, generated: 0, finished: 0 };
      }
      const replicas = engines.map((e) => this.replica(e, memo));
      const signals: PoolSignals = {
        model: memo.model,
        role: memo.role,
        nowS,
        arrivalRatePerS: rate,
        meanPromptTokens: memo.promptTokens,
        meanOutputTokens: memo.outputTokens,
        prefixHitRate: memo.hitRate,
        replicas: replicas.map(({ inFlight: _, ...r }) => r),
      };
      const scaler = this.scaler(memo.model, cfg);
      if (!scaler) {
        const current = replicas.filter((r) => r.state !== "draining").length;
        reports.push({
          model: memo.model,
          role: memo.role,
          current,
          desired: current,
          reason: "hold: no engine profile for this model, so no capacity to size with",
          signals: this.signalsOf(signals),
          replicas,
        });
        continue;
      }
      const decision = scaler.decide(signals);
      if (decision.desired !== decision.current) log.info(decision, "autoscale decision");
      reports.push({ ...decision, signals: this.signalsOf(signals), replicas });
    }
    this.reports = reports;
    this.decidedAt = Date.now();
    return reports;
  }

  private signalsOf(s: PoolSignals): PoolReport["signals"] {
    return {
      arrivalRatePerS: s.arrivalRatePerS,
      meanPromptTokens: s.meanPromptTokens,
      meanOutputTokens: s.meanOutputTokens,
      prefixHitRate: s.prefixHitRate,
    };
  }

  private remember(key: string, model: string, role: PoolRole): void {
    if (this.pools.size >= MAX_POOLS) this.pools.delete(this.pools.keys().next().value!);
    // a first guess until the engines' counters say: a chat turn
    this.pools.set(key, {
      model,
      role,
      last: undefined,
      engines: new Map(),
      pending: { prompt: 0, cached: 0, generated: 0, finished: 0 },
      promptTokens: 512,
      outputTokens: 128,
      hitRate: 0,
    });
  }

  private engineDeltas(engines: EngineRecord[], memo: PoolMemo): EngineCounters {
    const sum: EngineCounters = { prompt: 0, cached: 0, generated: 0, finished: 0 };
    const seen = new Map<string, EngineCounters>();
    for (const e of engines) {
      const c: EngineCounters = {
        prompt: e.load.prefill?.promptTokens ?? 0,
        cached: e.load.prefill?.cachedTokens ?? 0,
        generated: e.load.generationTokens ?? 0,
        finished: e.load.requestsFinished ?? 0,
      };
      seen.set(e.url, c);
      const before = memo.engines.get(e.url);
      // a counter that went back is a restarted engine: nothing to add this round
      if (!before || c.finished < before.finished || c.prompt < before.prompt) continue;
      sum.prompt += c.prompt - before.prompt;
      sum.cached += Math.max(0, c.cached - before.cached);
      sum.generated += Math.max(0, c.generated - before.generated);
      sum.finished += c.finished - before.finished;
    }
    memo.engines = seen;
    return sum;
  }

  private replica(e: EngineRecord, memo: PoolMemo): ReplicaSignal & { inFlight: number } {
    const state: ReplicaSignal["state"] =
      e.draining || e.state === "draining" ? "draining" : e.healthy ? "ready" : "starting";
    const r: ReplicaSignal & { inFlight: number } = {
      id: e.url,
      state,
      running: e.view.running,
      waiting: e.view.waiting,
      inFlight: e.view.inFlight,
    };
    // the predictive policy's timing: the prompts queued there and a new one, prefilled beside its batch
    const t = this.timing?.(e.view, memo.model);
    if (t && state === "ready") {
      const uncached = memo.promptTokens * (1 - memo.hitRate);
      const ctx = e.view.running * (memo.promptTokens + memo.outputTokens / 2);
      const s = t.prefillSeconds(
        (e.view.waiting + 1) * uncached,
        memo.promptTokens - uncached,
        e.view.running,
        ctx,
      );
      if (Number.isFinite(s)) r.predictedTtftMs = s * 1000;
    }
    return r;
  }

  /** rebuilds the decisions when the config they were made with changed (a reload) */
  private refresh(cfg: RouterConfig): void {
    const key = JSON.stringify([cfg.autoscaling, cfg.predictive]);
    if (key === this.configKey) return;
    this.configKey = key;
    this.scalers.clear();
    this.timing = predictiveOptions(cfg.predictive, cfg.slo).timing;
  }

  private scaler(model: string, cfg: RouterConfig): Autoscaler | null {
    let s = this.scalers.get(model);
    if (s !== undefined) return s;
    const a = cfg.autoscaling;
    const p = cfg.predictive;
    try {
      const engine = defaultEngineConfig(resolveModel(model), resolveGpu(a.gpu ?? p?.gpu ?? DEFAULT_GPU), {
        tensorParallelSize: p?.tensorParallelSize ?? 1,
      });
      s = new Autoscaler(
        {
          ttftP90Ms: a.ttftP90Ms,
          tpotP90Ms: a.tpotP90Ms,
          minReplicas: a.minReplicas,
          maxReplicas: a.maxReplicas,
          startupSeconds: a.startup / 1000,
          scaleDownStabilizationSeconds: a.scaleDownWindow / 1000,
          intervalSeconds: a.interval / 1000,
          trendWindowSeconds: a.trendWindow / 1000,
          ...(a.headroom !== undefined ? { headroom: a.headroom } : {}),
        },
        scaled(new EngineCapacity(engine), p?.timeScale ?? 1),
      );
    } catch (err) {
      log.warn({ model, err: (err as Error).message }, "autoscale: no engine profile for this model");
      s = null;
    }
    if (this.scalers.size >= MAX_POOLS) this.scalers.delete(this.scalers.keys().next().value!);
    this.scalers.set(model, s);
    return s;
  }
}
