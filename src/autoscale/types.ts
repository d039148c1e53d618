// The autoscaling decision's vocabulary: what the router (or the fleet simulator) observes of one pool
// of engines, and the replica count the decision asks for. Plain values; the clock is the caller's
// (`nowS`), never the wall clock, so the same decision runs live and in virtual time.

/** a pool's role: one engine does both phases (mixed), or the pools of a P/D split */
export type PoolRole = "mixed" | "prefill" | "decode";

export interface AutoscaleConfig {
  /** the SLO: time to first token, 90th percentile, milliseconds */
  ttftP90Ms: number;
  /** the SLO: time per output token, 90th percentile, milliseconds */
  tpotP90Ms: number;
  minReplicas: number;
  maxReplicas: number;
  /** seconds from asking for a replica until it serves (image pull, weights, warm-up) */
  startupSeconds: number;
  /** a scale-down follows the highest count asked for over this many seconds (HPA's window) */
  scaleDownStabilizationSeconds: number;
  /** seconds between two decisions (the loop's period); the forecast looks this far past start-up; default 15 */
  intervalSeconds?: number;
  /** seconds of arrival-rate history the trend (and the request shape) is fitted over; default 600 */
  trendWindowSeconds?: number;
  /** spare capacity kept above the forecast rate, as a fraction, beyond sloMargin's; default 0 */
  headroom?: number;
  /** a scale-down needs this much more spare capacity than a scale-up keeps (hysteresis); default 0.1 */
  scaleDownHysteresis?: number;
  /** the replicas are sized for p90s this fraction below the SLO's bounds (as `plan`'s headroom); default 0.1 */
  sloMargin?: number;
}

export interface ReplicaSignal {
  id: string;
  /** starting: asked for, not yet serving; draining: chosen to leave, gets no new request */
  state: "starting" | "ready" | "draining";
  /** requests the engine holds and runs */
  running: number;
  /** requests queued at the engine, not yet scheduled */
  waiting: number;
  /** the router's prediction of a new request's TTFT on this replica, milliseconds */
  predictedTtftMs?: number;
  /** the router's prediction of this replica's time per output token, milliseconds */
  predictedTpotMs?: number;
  /** share of the last interval the GPU ran a kernel (0..1), as nvidia-smi's utilisation reads it */
  gpuUtilization?: number;
}

export interface PoolSignals {
  model: string;
  role: PoolRole;
  /** the caller's clock, seconds (virtual time in the fleet simulator) */
  nowS: number;
  /** requests arriving at this pool per second, measured over the caller's last interval */
  arrivalRatePerS: number;
  meanPromptTokens: number;
  meanOutputTokens: number;
  /** share of prompt tokens served from cache (0..1) */
  prefixHitRate: number;
  replicas: ReplicaSignal[];
  /** mean TTFT of the requests that finished over the last interval, ms (Dynamo's correction factor) */
  observedTtftMs?: number;
  /** mean time per output token of those requests, ms */
  observedTpotMs?: number;
}

export interface ScaleDecision {
  model: string;
  role: PoolRole;
  /** replicas serving or starting (draining ones excluded) */
  current: number;
  desired: number;
  /** one line: why this count */
  reason: string;
  /** the engine model's p90 TTFT at the desired count and forecast rate, milliseconds */
  predictedTtftP90Ms?: number;
  /** the engine model's p90 TPOT at the desired count and forecast rate, milliseconds */
  predictedTpotP90Ms?: number;
  /** the arrival rate the decision sized for (the forecast at now + start-up + interval), per second */
  forecastRatePerS?: number;
  /** one replica's sustainable rate at the SLO for this shape, per second */
  replicaRatePerS?: number;
}

/** a request shape the capacity model is asked about */
export interface RequestShape {
  promptTokens: number;
  outputTokens: number;
  prefixHitRate: number;
}

/** the engine model's answer for one replica at one arrival rate */
export interface ReplicaLatency {
  ttftP90Ms: number;
  tpotP90Ms: number;
  /** false when the rate exceeds what one replica can serve at all */
  stable: boolean;
}

/** one replica's latency from the engine model, and its sustainable rate at an SLO */
export interface CapacityModel {
  latency(role: PoolRole, shape: RequestShape, ratePerS: number): ReplicaLatency;
  /** the highest arrival rate per second one replica serves within both p90 bounds */
  sustainableRate(role: PoolRole, shape: RequestShape, ttftP90Ms: number, tpotP90Ms: number): number;
}

/** anything that turns a pool's signals into a replica count: ours (Autoscaler) and the baselines */
export interface ScalePolicy {
  readonly name: string;
  decide(signals: PoolSignals): ScaleDecision;
}
