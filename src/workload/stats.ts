// Summary statistics with numpy's conventions, so figures match vllm bench serve's: population
// standard deviation (ddof 0) and percentiles by linear interpolation between closest ranks.

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

export function std(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return Math.sqrt(s / xs.length);
}

/** Percentile p (0..100) of already sorted values, numpy's default "linear" method. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const pos = (p / 100) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function percentile(xs: readonly number[], p: number): number {
  return percentileSorted(
    [...xs].sort((a, b) => a - b),
    p,
  );
}

export function sortedCopy(xs: readonly number[]): Float64Array {
  return Float64Array.from(xs).sort();
}
