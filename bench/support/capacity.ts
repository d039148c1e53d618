// The highest load a routing policy holds within an SLO: the figure that separates routers where goodput
// at a fixed load cannot (below capacity every policy carries what it is offered). A load is a fraction
// of a reference capacity (round-robin's, in the agent benchmark); whether a load is held is the caller's
// run of the workload at it. The search assumes holding is monotone in load (a policy that misses the SLO
// at some load misses it above too), which is what makes bisection sound; where a run is not monotone the
// search still returns a load it saw held, never one it did not try.
import { percentile } from "../../src/workload/stats.js";

/** the SLO a load is held within: both percentiles at or under their bounds */
export interface CapacitySlo {
  /** TTFT p90 of every request measured, ms */
  ttftP90Ms: number;
  /** TTFT p90 of the turns sent after a tool pause, ms */
  resumedTtftP90Ms: number;
}

/** the agent benchmark's SLO: TTFT p90 ≤ 2 s over all turns and ≤ 1 s over resumed turns */
export const AGENT_SLO: CapacitySlo = { ttftP90Ms: 2000, resumedTtftP90Ms: 1000 };

/** what one load's runs gave, seeds pooled: TTFTs in ms, a failed or refused request as Infinity */
export interface LoadPoint {
  ttfts: readonly number[];
  resumedTtfts: readonly number[];
}

export interface SloVerdict {
  held: boolean;
  ttftP90Ms: number;
  resumedTtftP90Ms: number;
}

/** the 90th percentile, Infinity where it falls among failed requests (interpolating them gives NaN) */
function p90(xs: readonly number[]): number {
  const v = percentile(xs, 90);
  return Number.isNaN(v) ? Infinity : v;
}

/** whether a load's pooled TTFTs meet the SLO; a point with no resumed turns is judged on its TTFTs alone */
export function judge(p: LoadPoint, slo: CapacitySlo): SloVerdict {
  const ttftP90Ms = p.ttfts.length > 0 ? p90(p.ttfts) : Infinity;
  const resumedTtftP90Ms = p.resumedTtfts.length > 0 ? p90(p.resumedTtfts) : 0;
  return {
    held: ttftP90Ms <= slo.ttftP90Ms && resumedTtftP90Ms <= slo.resumedTtftP90Ms,
    ttftP90Ms,
    resumedTtftP90Ms,
  };
}

export interface CapacitySearch {
  /** the first load tried */
  start: number;
  /** below this, a policy holds nothing: the search answers 0 */
  min: number;
  /** the search looks no higher: a policy that holds this answers it */
  max: number;
  /** the search stops when the held and the missed loads are this close */
  resolution: number;
}

export interface CapacityFound {
  /** the highest load seen held (0: none down to `min`) */
  load: number;
  /** the lowest load seen missed above it (Infinity: none up to `max`) */
  missed: number;
  /** every load tried, in order, and whether it held */
  tried: { load: number; held: boolean }[];
}

/**
 * The highest load `holds` says yes to: doubling (or halving) from `start` until the answer changes,
 * then bisection until the held and the missed load are `resolution` apart. With `start` a power of two
 * times `resolution`, every load tried is a multiple of `resolution`.
 */
export function highestLoadHeld(holds: (load: number) => boolean, o: CapacitySearch): CapacityFound {
  if (!(o.min > 0 && o.start >= o.min && o.max >= o.start && o.resolution > 0))
    throw new Error(`capacity search: need 0 < min ≤ start ≤ max and resolution > 0`);
  const tried: { load: number; held: boolean }[] = [];
  const at = (load: number) => {
    const held = holds(load);
    tried.push({ load, held });
    return held;
  };
  let lo: number;
  let hi: number;
  if (at(o.start)) {
    lo = o.start;
    hi = Infinity;
    while (lo < o.max) {
      const next = Math.min(o.max, lo * 2);
      if (at(next)) lo = next;
      else {
        hi = next;
        break;
      }
    }
    if (hi === Infinity) return { load: lo, missed: Infinity, tried };
  } else {
    hi = o.start;
    lo = 0;
    while (hi / 2 >= o.min) {
      const next = hi / 2;
      if (at(next)) {
        lo = next;
        break;
      }
      hi = next;
    }
    if (lo === 0) return { load: 0, missed: hi, tried };
  }
  while (hi - lo > o.resolution * (1 + 1e-9)) {
    const mid = (lo + hi) / 2;
    if (at(mid)) lo = mid;
    else hi = mid;
  }
  return { load: lo, missed: hi, tried };
}
