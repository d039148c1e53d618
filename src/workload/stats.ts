// Summary statistics with numpy's conventions, so figures match vllm bench serve's: population
// standard deviation (ddof 0) and percentiles by linear interpolation between closest ranks. Every
// percentile and median in src/ and bench/ is computed here.

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

/**
 * The one percentile of the project: p (0..100) of values already in ascending order, by numpy's default
 * method ("linear": interpolated between the two closest ranks, `np.percentile(xs, p)`), which is what
 * vllm bench serve reports. No values have no percentile: an empty input gives NaN. A report that must
 * write a number there (vllm bench serve's `np.percentile(xs or 0, p)` gives 0) says so where it does.
 */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = (p / 100) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** `percentileSorted` of values in any order (a sorted copy; the input is left as it is) */
export function percentile(xs: ArrayLike<number>, p: number): number {
  return percentileSorted(Float64Array.from(xs).sort(), p);
}

/** the median: the 50th percentile (the mean of the middle two for an even count), NaN for none */
export function median(xs: ArrayLike<number>): number {
  return percentile(xs, 50);
}

export function sortedCopy(xs: readonly number[]): Float64Array {
  return Float64Array.from(xs).sort();
}
