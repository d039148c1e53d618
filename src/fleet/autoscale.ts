// The autoscaler in the fleet simulator's loop: every interval of virtual time it reads what the live
// router would (arrivals and their lengths, each engine's queue, GPU busy time, the prefix-hit rate,
// finished requests' latency), asks a ScalePolicy (ours or a baseline, src/autoscale) for a count, and
// carries it out the way a cluster does: a new engine serves only after its start-up time, and an
// engine chosen to leave drains — the router's snapshot excludes it at once (RouterView.routable), and it
// leaves only when it holds nothing. Every engine is billed from the moment it is asked for until it
// leaves: GPU-seconds.
import type { PoolSignals, ReplicaSignal, ScaleDecision, ScalePolicy } from "../autoscale/index.js";
import type { Engine, VirtualDriver } from "../engine/index.js";
import type { RequestRecord } from "../workload/record.js";
import { InvalidConfigError } from "../errors/index.js";

export interface FleetAutoscaleOptions {
  policy: ScalePolicy;
  /** virtual seconds between two decisions */
  intervalS: number;
  /** seconds from asking for an engine until it serves */
  startupS: number;
  /** engines serving at time 0 */
  initial: number;
  /** the engines the simulation holds (serving, starting, draining and off together) */
  maxEngines: number;
  /** the pool's model name in the signals */
  model?: string;
  /** told of every decision */
  onDecision?: ((d: ScaleDecision, nowS: number) => void) | undefined;
}

export type EngineState = "off" | "starting" | "ready" | "draining";

export interface DrainRecord {
  engine: number;
  chosenAtS: number;
  leftAtS: number;
  /** requests it held when chosen */
  heldWhenChosen: number;
}

export interface AutoscaleReport {
  /** GPU-seconds billed: every engine from asked-for to gone (per GPU of the engine's TP) */
  gpuSeconds: number;
  /** decisions that asked for a new count (a scale-up or a scale-down) */
  scaleEvents: number;
  /** requests routed to an engine that was not serving (starting, draining or off): must stay 0 */
  sentToLeaving: number;
  drains: DrainRecord[];
  /** per decision: time, engines serving, starting, draining, desired */
  timeline: { t: number; ready: number; starting: number; draining: number; desired: number }[];
}

export class FleetScaler {
  readonly state: EngineState[];
  /** the router's eligibility view, shared with RouterView.routable */
  readonly routable: boolean[];
  private readonly since: number[];
  private readonly inflight: number[];
  private readonly busyAt: number[];
  private readonly chosenAt: number[];
  private readonly held: number[];
  private readonly report: AutoscaleReport = {
    gpuSeconds: 0,
    scaleEvents: 0,
    sentToLeaving: 0,
    drains: [],
    timeline: [],
  };
  // the interval's observations
  private arrivals = 0;
  private promptSum = 0;
  private outputSum = 0;
  private ttftSum = 0;
  private tpotSum = 0;
  private tpotN = 0;
  private done = 0;
  private lastHits = 0;
  private lastQueries = 0;
  private hitRate = 0;
  private meanPrompt = 0;
  private meanOutput = 0;
  private readonly gpus: number;
  /** the count last asked for */
  private target: number;

  constructor(
    private readonly o: FleetAutoscaleOptions,
    private readonly engines: readonly Engine[],
    private readonly driver: VirtualDriver,
    private readonly finished: () => boolean,
  ) {
    const n = engines.length;
    if (o.initial < 1 || o.initial > n)
      throw new InvalidConfigError(`autoscale: initial engines must be 1..${n}`);
    this.state = Array.from({ length: n }, (_, e) => (e < o.initial ? "ready" : "off"));
    this.routable = this.state.map((s) => s === "ready");
    this.since = new Array<number>(n).fill(0);
    this.inflight = new Array<number>(n).fill(0);
    this.busyAt = new Array<number>(n).fill(0);
    this.chosenAt = new Array<number>(n).fill(0);
    this.held = new Array<number>(n).fill(0);
    this.gpus = engines[0]?.config.tensorParallelSize ?? 1;
    this.target = o.initial;
  }

  start(): void {
    this.driver.at(this.o.intervalS, this.tick);
  }

  /** a request arrived at the router */
  arrived(promptTokens: number, maxTokens: number): void {
    this.arrivals++;
    this.promptSum += promptTokens;
    this.outputSum += maxTokens;
  }

  /** the router sent a request to engine e */
  sent(e: number): void {
    if (this.state[e] !== "ready") this.report.sentToLeaving++;
    this.inflight[e]!++;
  }

  /** a request on engine e finished (its record, when answered) */
  finishedOn(e: number, record: RequestRecord | null): void {
    this.inflight[e]!--;
    if (record && record.ok) {
      this.done++;
      this.ttftSum += record.ttft;
      if (record.outputTokens > 1) {
        this.tpotSum += (record.e2el - record.ttft) / (record.outputTokens - 1);
        this.tpotN++;
      }
    }
    if (this.state[e] === "draining" && this.inflight[e] === 0) this.leave(e);
  }

  /** bills the engines still up at the end of the run and returns the report */
  close(endS: number): AutoscaleReport {
    for (let e = 0; e < this.state.length; e++)
      if (this.state[e] !== "off") this.report.gpuSeconds += Math.max(0, endS - this.since[e]!) * this.gpus;
    return this.report;
  }

  private leave(e: number): void {
    const now = this.driver.now;
    this.report.gpuSeconds += (now - this.since[e]!) * this.gpus;
    this.report.drains.push({
      engine: e,
      chosenAtS: this.chosenAt[e]!,
      leftAtS: now,
      heldWhenChosen: this.held[e]!,
    });
    this.state[e] = "off";
    this.routable[e] = false;
  }

  private readonly tick = (): void => {
    const now = this.driver.now;
    const dt = this.o.intervalS;
    const replicas: ReplicaSignal[] = [];
    let hits = 0;
    let queries = 0;
    for (let e = 0; e < this.engines.length; e++) {
      const s = this.engines[e]!.snapshot();
      hits += s.counters.prefixCacheHits;
      queries += s.counters.prefixCacheQueries;
      const busy = s.counters.busySeconds;
      const util = Math.min(1, Math.max(0, (busy - this.busyAt[e]!) / dt));
      this.busyAt[e] = busy;
      const st = this.state[e]!;
      if (st === "off") continue;
      replicas.push({
        id: `engine-${e}`,
        state: st,
        running: s.numRunning,
        waiting: s.numWaiting,
        ...(st === "ready" ? { gpuUtilization: util } : {}),
      });
    }
    if (queries > this.lastQueries) this.hitRate = (hits - this.lastHits) / (queries - this.lastQueries);
    this.lastHits = hits;
    this.lastQueries = queries;
    if (this.arrivals > 0) {
      this.meanPrompt = this.promptSum / this.arrivals;
      this.meanOutput = this.outputSum / this.arrivals;
    }
    const signals: PoolSignals = {
      model: this.o.model ?? "model",
      role: "mixed",
      nowS: now,
      arrivalRatePerS: this.arrivals / dt,
      meanPromptTokens: this.meanPrompt || 1,
      meanOutputTokens: this.meanOutput || 1,
      prefixHitRate: this.hitRate,
      replicas,
      ...(this.done > 0 ? { observedTtftMs: this.ttftSum / this.done } : {}),
      ...(this.tpotN > 0 ? { observedTpotMs: this.tpotSum / this.tpotN } : {}),
    };
    this.arrivals = this.promptSum = this.outputSum = 0;
    this.done = this.ttftSum = this.tpotSum = this.tpotN = 0;
    const d = this.o.policy.decide(signals);
    this.o.onDecision?.(d, now);
    this.apply(Math.max(1, d.desired));
    const count = (k: EngineState) => this.state.filter((x) => x === k).length;
    this.report.timeline.push({
      t: now,
      ready: count("ready"),
      starting: count("starting"),
      draining: count("draining"),
      desired: d.desired,
    });
    if (!this.finished() || this.inflight.some((x) => x > 0)) this.driver.after(dt, this.tick);
  };

  /** brings the serving-or-starting count to `desired`: start engines, or cancel starts and drain */
  private apply(desired: number): void {
    const now = this.driver.now;
    const live = () => this.state.filter((s) => s === "ready" || s === "starting").length;
    let n = live();
    // an event is a new target: a count the fleet cannot reach yet (every engine slot busy draining)
    // is not counted again at every decision
    const changed = desired !== this.target;
    this.target = desired;
    if (desired === n) return;
    if (changed) this.report.scaleEvents++;
    for (let e = 0; e < this.state.length && n < desired; e++) {
      if (this.state[e] !== "off") continue;
      this.state[e] = "starting";
      this.since[e] = now;
      n++;
      this.driver.at(now + this.o.startupS, () => {
        if (this.state[e] !== "starting" || this.since[e] !== now) return;
        this.state[e] = "ready";
        this.routable[e] = true;
      });
    }
    // down: the newest starts first (nothing to drain), then the serving engines holding least
    for (let e = this.state.length - 1; e >= 0 && n > desired; e--) {
      if (this.state[e] !== "starting") continue;
      this.report.gpuSeconds += (now - this.since[e]!) * this.gpus;
      this.state[e] = "off";
      n--;
    }
    while (n > desired) {
      let pick = -1;
      for (let e = 0; e < this.state.length; e++)
        if (this.state[e] === "ready" && (pick < 0 || this.inflight[e]! < this.inflight[pick]!)) pick = e;
      if (pick < 0 || live() <= 1) break;
      this.state[pick] = "draining";
      this.routable[pick] = false;
      this.chosenAt[pick] = now;
      this.held[pick] = this.inflight[pick]!;
      n--;
      if (this.inflight[pick] === 0) this.leave(pick);
    }
  }
}
