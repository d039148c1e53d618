// What a fleet costs per hour: a default price per GPU-hour for every GPU the engine model has a
// profile for, which the scenario (`ops.gpu_usd_per_hour`) or the command line (`--gpu-price`)
// overrides. The defaults are indicative on-demand rates, not quotes: cloud prices for the same GPU
// differ 2–4× between providers, so a plan that matters should run with the team's own prices.
import type { ResolvedScenario } from "../fleet/scenario.js";
import { gpusOf, type FleetChoice } from "./input.js";
import { InvalidConfigError } from "../errors/index.js";

/** USD per GPU-hour, by the scenario's GPU ids */
export type PriceTable = Readonly<Record<string, number>>;

export const DEFAULT_GPU_USD_PER_HOUR: PriceTable = {
  h100: 3.0,
  h200: 4.0,
  a100: 1.3,
  l40s: 0.9,
  l4: 0.7,
};

/** where the defaults come from, as the plan prints it */
export const PRICE_SOURCE =
  "indicative on-demand USD per GPU-hour at specialised GPU clouds: H100 SXM $3.00, H200 SXM $4.00, A100 80GB $1.30 " +
  "(mid-range of the 2026 survey at mercatus-ai.com/blog/cloud-gpu-pricing), L40S $0.90 (aihardwareindex.com cost-per-token " +
  "analysis, December 2025: $0.87), L4 $0.70 (Google Cloud g2-standard-4 on-demand, us-central1); override with " +
  "ops.gpu_usd_per_hour or --gpu-price";

export class PriceError extends InvalidConfigError {}

/** `h100=2.5,l4=0.6` → { h100: 2.5, l4: 0.6 }; ids are checked against `known` */
export function parsePriceFlag(text: string, known: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(/[\s,]+/).filter(Boolean)) {
    const m = /^([A-Za-z0-9-]+)=([0-9]+(?:\.[0-9]+)?)$/.exec(part);
    if (!m) throw new PriceError(`--gpu-price: cannot read '${part}' (expected GPU=USD, e.g. h100=2.5)`);
    const id = m[1]!.toLowerCase();
    if (!known.includes(id))
      throw new PriceError(`--gpu-price: unknown GPU '${id}' (known: ${known.join(", ")})`);
    const usd = Number(m[2]);
    if (!(usd > 0)) throw new PriceError(`--gpu-price: ${id} must cost more than 0, got ${m[2]}`);
    out[id] = usd;
  }
  return out;
}

/** defaults, then the scenario's prices, then the flag's */
export function priceTable(r: ResolvedScenario, flag: Record<string, number> = {}): PriceTable {
  const fromScenario: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.scenario.ops.gpu_usd_per_hour ?? {}))
    fromScenario[k.toLowerCase()] = v;
  return { ...DEFAULT_GPU_USD_PER_HOUR, ...fromScenario, ...flag };
}

export function fleetCost(prices: PriceTable, gpu: string, engines: number, tp: number): number | null {
  const p = prices[gpu];
  return p === undefined ? null : p * engines * tp;
}

/** what a fleet (aggregated or disaggregated) costs per hour, or null without a price for its GPU */
export function costOf(prices: PriceTable, f: FleetChoice): number | null {
  const p = prices[f.gpu];
  return p === undefined ? null : p * gpusOf(f);
}

export const usd = (x: number) => `$${x.toFixed(2)}`;
