// The decision: the replicas a pool needs to hold TTFT p90 and TPOT p90 through the next start-up
// interval. The forecast is the arrival rate at now + start-up + one interval (a least-squares trend
// over the recent history, never below the rate now), plus the backlog the replicas hold, divided by
// one replica's sustainable rate at the SLO from the engine model (EngineCapacity). Up is at once and
// ahead of need; down is slow and safe: it needs extra spare capacity (hysteresis) and follows the
// highest count asked for over the stabilisation window. State is per (model, role); the clock is the
// signals' nowS.
import type { AutoscaleConfig, CapacityModel, PoolSignals, ScaleDecision, ScalePolicy } from "./types.js";
import { InvalidConfigError } from "../errors/index.js";

const DEFAULTS = {
  intervalSeconds: 15,
  trendWindowSeconds: 600,
  // the margin below the SLO's bounds (sloMargin) is the spare capacity; headroom adds to it
  headroom: 0,
  scaleDownHysteresis: 0.1,
  sloMargin: 0.1,
};

/** seconds of the recent mean a burst is read from */
const RECENT_SECONDS = 60;
/** rate samples kept per pool (bounded; the trend window trims them first) */
const HISTORY_LIMIT = 512;
/** pools remembered (bounded: a model and role seen once more than this ago is forgotten first) */
const POOL_LIMIT = 256;

interface PoolState {
  /** per decision: the arrival rate and the shape of the interval's requests */
  rates: { t: number; rate: number; prompt: number; output: number; hit: number }[];
  /** counts asked for, newest last, over the stabilisation window */
  recommendations: { t: number; desired: number }[];
}

export function validateAutoscaleConfig(c: AutoscaleConfig): void {
  const bad = (what: string) => {
    throw new InvalidConfigError(`autoscale: ${what}`);
  };
  if (!(c.ttftP90Ms > 0) || !(c.tpotP90Ms > 0)) bad("the SLO's TTFT and TPOT bounds must be positive");
  if (!Number.isInteger(c.minReplicas) || c.minReplicas < 0) bad("minReplicas must be an integer >= 0");
  if (!Number.isInteger(c.maxReplicas) || c.maxReplicas < Math.max(1, c.minReplicas))
    bad("maxReplicas must be an integer >= max(1, minReplicas)");
  if (!(c.startupSeconds >= 0)) bad("startupSeconds must be >= 0");
  if (!(c.scaleDownStabilizationSeconds >= 0)) bad("scaleDownStabilizationSeconds must be >= 0");
}

export class Autoscaler implements ScalePolicy {
  readonly name = "slo";
  private readonly pools = new Map<string, PoolState>();
  private readonly opts: Required<AutoscaleConfig>;

  constructor(
    config: AutoscaleConfig,
    private readonly capacity: CapacityModel,
  ) {
    validateAutoscaleConfig(config);
    this.opts = { ...DEFAULTS, ...config } as Required<AutoscaleConfig>;
  }

  get config(): Readonly<Required<AutoscaleConfig>> {
    return this.opts;
  }

  decide(s: PoolSignals): ScaleDecision {
    const o = this.opts;
    const state = this.pool(`${s.model}\u0000${s.role}`);
    const current = s.replicas.filter((r) => r.state !== "draining").length;
    // a pool seen for the first time holds what it has for a window before any scale-down
    if (state.recommendations.length === 0) state.recommendations.push({ t: s.nowS, desired: current });

    // the trend: least squares over the window's samples, the forecast at now + start-up + interval
    state.rates.push({
      t: s.nowS,
      rate: Math.max(0, s.arrivalRatePerS),
      prompt: s.meanPromptTokens,
      output: s.meanOutputTokens,
      hit: s.prefixHitRate,
    });
    while (state.rates.length > HISTORY_LIMIT || state.rates[0]!.t < s.nowS - o.trendWindowSeconds)
      state.rates.shift();
    const horizon = o.startupSeconds + o.intervalSeconds;
    const { level, slope } = trend(state.rates, s.nowS);
    // the fit smooths one interval's Poisson noise away; a burst (the last minute's mean above the fit
    // by more than three of its standard deviations) is taken as the new level at once
    const base = Math.max(0, level + Math.max(0, slope) * horizon);
    const recent = state.rates.filter((x) => x.t > s.nowS - RECENT_SECONDS);
    const recentRate = recent.reduce((a, x) => a + x.rate, 0) / Math.max(1, recent.length);
    const sigma = Math.sqrt(
      Math.max(level, 1e-9) / Math.max(o.intervalSeconds, recent.length * o.intervalSeconds),
    );
    const burst = recentRate > base + 3 * sigma;
    const forecast = burst ? Math.max(recentRate, base) : base;

    // the shape over the trend window, each interval weighted by its arrivals: one interval's mean of
    // a heavy-tailed length is too noisy to size on
    let w = 0;
    let prompt = 0;
    let output = 0;
    let hit = 0;
    for (const x of state.rates) {
      const wx = x.rate + 1e-9;
      w += wx;
      prompt += wx * x.prompt;
      output += wx * x.output;
      hit += wx * x.hit;
    }
    const shape = { promptTokens: prompt / w, outputTokens: output / w, prefixHitRate: hit / w };
    // sized so the engine model's p90s sit `sloMargin` below the bounds: a one-minute window's p90
    // over a few hundred requests scatters about the steady state's
    const margin = 1 - o.sloMargin;
    const perReplica = this.capacity.sustainableRate(
      s.role,
      shape,
      o.ttftP90Ms * margin,
      o.tpotP90Ms * margin,
    );
    // the backlog the replicas hold beyond what they run is served over one start-up interval
    const waiting = s.replicas.reduce((n, r) => n + (r.state === "draining" ? 0 : r.waiting), 0);
    const backlogRate = waiting / Math.max(o.intervalSeconds, o.startupSeconds);
    const late = s.replicas.some((r) => r.state === "ready" && (r.predictedTtftMs ?? 0) > o.ttftP90Ms);
    const need = forecast + backlogRate;
    const up = perReplica > 0 ? Math.ceil((need * (1 + o.headroom)) / perReplica) : o.maxReplicas;
    const downTarget =
      perReplica > 0
        ? Math.ceil((need * (1 + o.headroom + o.scaleDownHysteresis)) / perReplica)
        : o.maxReplicas;
    let raw = up > current ? up : Math.min(current, downTarget);
    if (late && raw <= current) raw = current; // a replica already late: never scale down now
    raw = clamp(raw, o.minReplicas, o.maxReplicas);

    // stabilisation: a scale-down follows the highest count asked for over the window
    state.recommendations.push({ t: s.nowS, desired: raw });
    while (state.recommendations[0]!.t < s.nowS - o.scaleDownStabilizationSeconds)
      state.recommendations.shift();
    if (state.recommendations.length > HISTORY_LIMIT) state.recommendations.shift();
    let desired = raw;
    let reason: string;
    if (raw > current) {
      reason = `up${burst ? " (burst)" : ""}: forecast ${forecast.toFixed(2)}/s (trend ${slope >= 0 ? "+" : ""}${(slope * 60).toFixed(2)}/s per min) + backlog ${waiting} over ${perReplica.toFixed(2)}/s per replica at the SLO`;
    } else {
      const held = Math.max(...state.recommendations.map((r) => r.desired));
      desired = clamp(Math.min(current, held), o.minReplicas, o.maxReplicas);
      if (desired < current)
        reason = `down: forecast ${forecast.toFixed(2)}/s needs ${raw} at ${perReplica.toFixed(2)}/s per replica, stable for ${o.scaleDownStabilizationSeconds}s`;
      else if (raw < current)
        reason = `hold: ${raw} would do, waiting out the ${o.scaleDownStabilizationSeconds}s stabilisation window`;
      else
        reason = `hold: forecast ${forecast.toFixed(2)}/s within ${current} replicas' ${(current * perReplica).toFixed(2)}/s`;
    }
    if (desired < current && current < o.minReplicas) desired = o.minReplicas;
    const perNow = desired > 0 ? need / desired : Infinity;
    const l = this.capacity.latency(s.role, shape, perNow);
    return {
      model: s.model,
      role: s.role,
      current,
      desired,
      reason,
      ...(l.stable ? { predictedTtftP90Ms: l.ttftP90Ms, predictedTpotP90Ms: l.tpotP90Ms } : {}),
      forecastRatePerS: forecast,
      replicaRatePerS: perReplica,
    };
  }

  private pool(key: string): PoolState {
    let p = this.pools.get(key);
    if (p) {
      this.pools.delete(key);
      this.pools.set(key, p);
      return p;
    }
    p = { rates: [], recommendations: [] };
    this.pools.set(key, p);
    if (this.pools.size > POOL_LIMIT) {
      const oldest = this.pools.keys().next().value;
      if (oldest !== undefined) this.pools.delete(oldest);
    }
    return p;
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}

/**
 * the least-squares line through the samples, read at `now`: its level and slope (per second); a slope
 * within two standard errors of zero is taken as none (the level is then the mean)
 */
export function trend(
  samples: readonly { t: number; rate: number }[],
  now: number,
): { level: number; slope: number } {
  const n = samples.length;
  if (n === 0) return { level: 0, slope: 0 };
  if (n < 3) return { level: samples[n - 1]!.rate, slope: 0 };
  let st = 0;
  let sr = 0;
  for (const x of samples) {
    st += x.t;
    sr += x.rate;
  }
  const mt = st / n;
  const mr = sr / n;
  let num = 0;
  let den = 0;
  for (const x of samples) {
    num += (x.t - mt) * (x.rate - mr);
    den += (x.t - mt) ** 2;
  }
  const slope = den > 0 ? num / den : 0;
  // the slope's standard error: a trend within two of it is noise, not a trend
  let res = 0;
  for (const x of samples) res += (x.rate - (mr + slope * (x.t - mt))) ** 2;
  const se = den > 0 ? Math.sqrt(res / (n - 2) / den) : Infinity;
  const real = Math.abs(slope) > 2 * se ? slope : 0;
  return { level: real !== 0 ? mr + slope * (now - mt) : mr, slope: real };
}
