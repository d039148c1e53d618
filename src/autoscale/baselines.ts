// The baselines an SLO autoscaler is measured against, each as its documentation describes it, behind
// the same ScalePolicy as ours:
// - keda-waiting: the chart's engines.autoscaling (KEDA's prometheus trigger on the sum of
//   vllm:num_requests_waiting, threshold per replica, AverageValue) carried out by the HPA it creates.
// - hpa-gpu-util: an HPA on GPU utilisation (DCGM's DCGM_FI_DEV_GPU_UTIL as a per-pod metric).
//   Both run Kubernetes' HPA algorithm: desiredReplicas = ceil(currentReplicas × metric / target),
//   nothing while the ratio is within the 10% tolerance, a scale-down follows the highest
//   recommendation of the last 300 s (the default stabilisation window), scale-up at most
//   max(100%, 4 pods) per 15 s period (the default policies).
//   https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/
//   https://keda.sh/docs/latest/scalers/prometheus/
// - dynamo-sla: NVIDIA Dynamo's SLA planner: every adjustment interval a load predictor (here its
//   `constant` one: the next interval as the last) forecasts requests, ISL and OSL; prefill engines =
//   ceil(predicted prompt tokens/s ÷ the profiled prefill throughput at that ISL), decode engines =
//   ceil(predicted output tokens/s ÷ the profiled decode throughput per engine at the ITL target and
//   context), each corrected by observed ÷ expected TTFT and ITL. The profile is the engine model's
//   (EngineCapacity.profile), as Dynamo's is its pre-deployment profiling sweep.
//   https://docs.nvidia.com/dynamo/latest/design-docs/component-design/planner-design
// - fixed: a constant fleet (sized for the peak by the caller, e.g. with `switchyard plan`).
import type { EngineCapacity } from "./capacity.js";
import type { PoolSignals, ScaleDecision, ScalePolicy } from "./types.js";

/** Kubernetes' HPA controller around one metric: tolerance, stabilisation, scaling policies */
export interface HpaOptions {
  minReplicas: number;
  maxReplicas: number;
  /** HPA's --horizontal-pod-autoscaler-tolerance: 0.1 */
  tolerance?: number;
  /** behavior.scaleDown.stabilizationWindowSeconds: 300 */
  scaleDownStabilizationSeconds?: number;
  /** seconds between the controller's metric reads (HPA's sync period 15 s; KEDA's pollingInterval) */
  periodSeconds?: number;
}

abstract class HpaLike implements ScalePolicy {
  abstract readonly name: string;
  private readonly recs: { t: number; n: number }[] = [];
  private lastAt = -Infinity;
  private last = -1;

  constructor(protected readonly hpa: HpaOptions) {}

  /** the metric's ratio to its target (the HPA's usageRatio), or null: no reading */
  protected abstract ratio(s: PoolSignals, current: number): { ratio: number; note: string } | null;

  decide(s: PoolSignals): ScaleDecision {
    const current = s.replicas.filter((r) => r.state !== "draining").length;
    const period = this.hpa.periodSeconds ?? 15;
    const min = this.hpa.minReplicas;
    const max = this.hpa.maxReplicas;
    const base = { model: s.model, role: s.role, current };
    if (this.last >= 0 && s.nowS < this.lastAt + period)
      return { ...base, desired: this.last, reason: "between polls" };
    this.lastAt = s.nowS;
    const r = this.ratio(s, Math.max(1, current));
    let raw = current;
    let note = "no metric";
    if (r) {
      note = r.note;
      const tol = this.hpa.tolerance ?? 0.1;
      if (current === 0) raw = r.ratio > 0 ? 1 : 0;
      else if (Math.abs(r.ratio - 1) > tol) raw = Math.ceil(current * r.ratio);
    }
    // scaleUp default policies: at most +100% or +4 pods per period, whichever is more
    raw = Math.min(raw, Math.max(2 * current, current + 4));
    raw = Math.min(max, Math.max(min, raw));
    const window = this.hpa.scaleDownStabilizationSeconds ?? 300;
    this.recs.push({ t: s.nowS, n: raw });
    while (this.recs.length > 0 && this.recs[0]!.t < s.nowS - window) this.recs.shift();
    const desired = raw >= current ? raw : Math.min(current, Math.max(...this.recs.map((x) => x.n)));
    this.last = desired;
    return {
      ...base,
      desired,
      reason: `${note}: ${desired > current ? "up" : desired < current ? "down" : "hold"}`,
    };
  }
}

/** the chart's mode today: KEDA's prometheus trigger on waiting requests, `threshold` per replica */
export class KedaWaiting extends HpaLike {
  readonly name = "keda-waiting";
  constructor(
    readonly threshold: number,
    hpa: HpaOptions,
  ) {
    super({ periodSeconds: 15, ...hpa });
  }
  protected ratio(s: PoolSignals, current: number) {
    const waiting = s.replicas.reduce((n, r) => n + (r.state === "ready" ? r.waiting : 0), 0);
    // AverageValue: the HPA divides the query's sum by the replicas, then by the threshold
    return {
      ratio: waiting / current / this.threshold,
      note: `waiting ${waiting} / ${current} vs ${this.threshold}`,
    };
  }
}

/** an HPA on GPU utilisation (percent, averaged over the ready pods), `targetPercent` the target */
export class HpaGpuUtil extends HpaLike {
  readonly name = "hpa-gpu-util";
  constructor(
    readonly targetPercent: number,
    hpa: HpaOptions,
  ) {
    super(hpa);
  }
  protected ratio(s: PoolSignals) {
    const ready = s.replicas.filter((r) => r.state === "ready" && r.gpuUtilization !== undefined);
    if (ready.length === 0) return null;
    const util = (100 * ready.reduce((n, r) => n + r.gpuUtilization!, 0)) / ready.length;
    // the HPA computes the ratio over the pods it has metrics for (ready ones), scaled to all
    return {
      ratio:
        ((util / this.targetPercent) * ready.length) /
        Math.max(1, s.replicas.filter((r) => r.state !== "draining").length),
      note: `gpu ${util.toFixed(0)}% vs ${this.targetPercent}%`,
    };
  }
}

export interface DynamoOptions {
  minReplicas: number;
  maxReplicas: number;
  ttftP90Ms: number;
  tpotP90Ms: number;
  /** Dynamo's adjustment_interval, seconds */
  adjustmentIntervalSeconds: number;
}

/** Dynamo's SLA planner with the constant load predictor, the pools' sizes summed over mixed engines */
export class DynamoSla implements ScalePolicy {
  readonly name = "dynamo-sla";
  private lastAt = -Infinity;
  private last = -1;
  constructor(
    private readonly o: DynamoOptions,
    private readonly capacity: EngineCapacity,
  ) {}

  decide(s: PoolSignals): ScaleDecision {
    const current = s.replicas.filter((r) => r.state !== "draining").length;
    const base = { model: s.model, role: s.role, current };
    if (this.last >= 0 && s.nowS < this.lastAt + this.o.adjustmentIntervalSeconds)
      return { ...base, desired: this.last, reason: "between adjustments" };
    this.lastAt = s.nowS;
    // constant predictor: the next interval's requests, ISL and OSL are the last interval's
    const rate = s.arrivalRatePerS;
    const isl = Math.max(1, s.meanPromptTokens * (1 - s.prefixHitRate));
    const osl = Math.max(1, s.meanOutputTokens);
    const p = this.capacity.profile(s.meanPromptTokens, osl, isl, this.o.tpotP90Ms);
    // correction factors: observed over what the profile expects at this load
    const prefillCorrection = s.observedTtftMs !== undefined ? s.observedTtftMs / p.expectedTtftMs : 1;
    const decodeCorrection = s.observedTpotMs !== undefined ? s.observedTpotMs / p.expectedItlMs : 1;
    const prefillLoad = ((rate * isl) / Math.max(1e-9, p.prefillTokensPerS)) * Math.min(1, prefillCorrection);
    const itlTarget = this.o.tpotP90Ms / Math.max(1e-9, decodeCorrection);
    const decodeTput = this.capacity.profile(s.meanPromptTokens, osl, isl, itlTarget).decodeTokensPerS;
    const decodeLoad = decodeTput > 0 ? (rate * osl) / decodeTput : this.o.maxReplicas;
    // one mixed engine gives its time to both pools' work
    const raw = Math.ceil(prefillLoad + decodeLoad);
    const desired = Math.min(this.o.maxReplicas, Math.max(this.o.minReplicas, raw));
    this.last = desired;
    return {
      ...base,
      desired,
      reason: `prefill ${prefillLoad.toFixed(2)} + decode ${decodeLoad.toFixed(2)} engines for ${rate.toFixed(2)}/s`,
    };
  }
}

/** a constant fleet */
export class FixedFleet implements ScalePolicy {
  readonly name = "fixed";
  constructor(readonly replicas: number) {}
  decide(s: PoolSignals): ScaleDecision {
    const current = s.replicas.filter((r) => r.state !== "draining").length;
    return { model: s.model, role: s.role, current, desired: this.replicas, reason: "fixed" };
  }
}
