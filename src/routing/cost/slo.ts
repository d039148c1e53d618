// Time-to-first-token SLOs: the model's from the configuration (or the default), which a request's own
// (the `x-slo-ttft-ms` header, parsed at the router's edge) may tighten but never lift. The predictive policy refuses, early, a request that no
// engine is predicted to start within its SLO.
import { InvalidArgumentError } from "../../errors/index.js";

export interface SloOptions {
  /** ms, for every model without its own */
  defaultTtftMs?: number | undefined;
  /** ms per served model name */
  models?: Readonly<Record<string, number>> | undefined;
}

/** the header a client sets its TTFT SLO with, in milliseconds */
export const SLO_HEADER = "x-slo-ttft-ms";
/** the largest SLO a header may carry (10 minutes): beyond it the value is surely a mistake */
export const MAX_SLO_MS = 600_000;

/**
 * The header's value as milliseconds; undefined when absent; an Error (its message fit for a 400) when it
 * is not a positive number up to MAX_SLO_MS.
 */
export function parseSloHeader(value: string | string[] | undefined): number | undefined | Error {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value[0] : value;
  const ms = Number(text);
  if (text === undefined || text.trim() === "" || !Number.isFinite(ms) || ms <= 0 || ms > MAX_SLO_MS)
    return new InvalidArgumentError(
      `${SLO_HEADER} must be a number of milliseconds above 0 and at most ${MAX_SLO_MS}, got ${JSON.stringify(text ?? "")}`,
    );
  return ms;
}

/**
 * The SLO that applies to a request: the operator's (its model's, else the default) is a ceiling the
 * request's own may only tighten; the request's own where the operator set none; undefined: none. A
 * client that could lift the operator's SLO with a header would get served what the operator refuses
 * to everyone else (a long prompt at a busy time), at their cost.
 */
export function sloFor(
  req: { model: string; sloTtftMs?: number | undefined },
  options: SloOptions | undefined,
): number | undefined {
  const models = options?.models;
  const own = models && Object.hasOwn(models, req.model) ? models[req.model] : undefined;
  const operator = own ?? options?.defaultTtftMs;
  if (req.sloTtftMs === undefined) return operator;
  return operator === undefined ? req.sloTtftMs : Math.min(operator, req.sloTtftMs);
}

/** Retry-After, whole seconds (at least 1), for a refusal predicted `overMs` over the SLO */
export function retryAfterSeconds(overMs: number): number {
  return Math.max(1, Math.ceil(overMs / 1000));
}

/**
 * A running estimate of a quantile of positive values (here: actual over predicted TTFT), by stochastic
 * approximation in the log domain: each value moves the estimate up by `step · quantile` when above it
 * and down by `step · (1 − quantile)` when below, so it settles where a fraction `quantile` of values fall
 * below. O(1), no samples kept; follows drift (a host that got slower, overheads the model does not know).
 */
export class RunningQuantile {
  private log = 0;
  count = 0;

  constructor(
    readonly quantile: number,
    private readonly step = 0.02,
    /** the estimate stays within [1/bound, bound] */
    private readonly bound = 20,
  ) {}

  get value(): number {
    return Math.exp(this.log);
  }

  add(value: number): void {
    if (!(value > 0) || !Number.isFinite(value)) return;
    this.count++;
    this.log += Math.log(value) > this.log ? this.step * this.quantile : -this.step * (1 - this.quantile);
    const logBound = Math.log(this.bound);
    if (this.log > logBound) this.log = logBound;
    else if (this.log < -logBound) this.log = -logBound;
  }
}
