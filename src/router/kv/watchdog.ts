// The silent-miss watchdog: the router's exact (KV-event) predictions of prefix-cache hits, per engine,
// against the hits the engine itself reports (`vllm:prefix_cache_hits`), over a sliding window. When
// they differ by more than `tolerance` the router's hashes do not match the engine's (PYTHONHASHSEED,
// tokenizer, chat template, block size, hash algorithm) and KV routing is silently blind: say so loudly.
// Only once the difference has lasted `sustainMs`: a healthy router differs by a few requests' hits at
// its first checks (prompts sent together with a new prefix hit at the engine though predicted cold; a
// prefix evicted between pick and schedule), 25–100% of a small sum that later traffic dilutes within one
// or two checks, while a real mismatch lasts as long as its cause.
// The engine's side comes from the registry's own /metrics scrapes (no second scrape).
import type { Gauge } from "prom-client";
import type { Logger } from "../../obs/log.js";

export interface WatchdogOptions {
  /** window the two sums are compared over */
  windowMs?: number;
  /** buckets the window is kept in */
  buckets?: number;
  /** relative difference that raises the alarm */
  tolerance?: number;
  /** fewer hit tokens than this (either side) over the window: too little to judge */
  minTokens?: number;
  /** how long the difference must last, judged beyond tolerance at every check, before the alarm */
  sustainMs?: number;
}

interface Track {
  predicted: Float64Array;
  reported: Float64Array;
  lastCounter: number | null;
  bucket: number;
  bucketStart: number;
  /** since when every verdict has found the difference beyond tolerance; null: the last one did not */
  beyondSince: number | null;
  mismatch: boolean;
}

export interface WatchdogVerdict {
  predicted: number;
  reported: number;
  /** |predicted − reported| / max(predicted, reported), 0 when both are 0 */
  error: number;
  /** beyond tolerance, judged, for at least `sustainMs` */
  mismatch: boolean;
  /** false: too few hits to judge */
  judged: boolean;
  /** the previous verdict's mismatch: the alarm is raised (and cleared) on a change */
  was: boolean;
}

export class HitWatchdog {
  readonly windowMs: number;
  readonly buckets: number;
  readonly tolerance: number;
  readonly minTokens: number;
  readonly sustainMs: number;
  private readonly tracks = new Map<string, Track>();
  /** told of every local prediction (router workers and replicas add each other's: `predictedFrom`);
   * returning true takes it over (a router worker counts it once its pick is confirmed) */
  onPredicted: ((engine: string, tokens: number) => boolean | void) | undefined;

  constructor(
    opts: WatchdogOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.windowMs = opts.windowMs ?? 300_000;
    this.buckets = opts.buckets ?? 10;
    this.tolerance = opts.tolerance ?? 0.2;
    this.minTokens = opts.minTokens ?? 1024;
    this.sustainMs = opts.sustainMs ?? 45_000;
  }

  private track(engine: string): Track {
    let t = this.tracks.get(engine);
    if (!t) {
      t = {
        predicted: new Float64Array(this.buckets),
        reported: new Float64Array(this.buckets),
        lastCounter: null,
        bucket: 0,
        bucketStart: this.now(),
        beyondSince: null,
        mismatch: false,
      };
      this.tracks.set(engine, t);
    }
    this.advance(t);
    return t;
  }

  private advance(t: Track): void {
    const width = this.windowMs / this.buckets;
    const now = this.now();
    let steps = Math.floor((now - t.bucketStart) / width);
    if (steps <= 0) return;
    t.bucketStart += steps * width;
    if (steps > this.buckets) steps = this.buckets;
    for (let i = 0; i < steps; i++) {
      t.bucket = (t.bucket + 1) % this.buckets;
      t.predicted[t.bucket] = 0;
      t.reported[t.bucket] = 0;
    }
  }

  /** the router sent a request to `engine` predicting this many cached prompt tokens */
  predicted(engine: string, tokens: number): void {
    if (this.onPredicted?.(engine, tokens) === true) return;
    this.predictedFrom(engine, tokens);
  }

  /** another router of the group predicted these (the engine's hits are the whole group's) */
  predictedFrom(engine: string, tokens: number): void {
    const t = this.track(engine);
    // until the engine's counter has a baseline, its reported side cannot count these hits: comparing
    // them would raise a false alarm on every fresh router (seen as "reported 0" at the first check)
    if (t.lastCounter === null) return;
    t.predicted[t.bucket] = t.predicted[t.bucket]! + tokens;
  }

  /** a scrape of the engine's `vllm:prefix_cache_hits` counter (tokens); a drop means a restart */
  reported(engine: string, counter: number): void {
    const t = this.track(engine);
    const delta = t.lastCounter === null ? 0 : counter >= t.lastCounter ? counter - t.lastCounter : counter;
    t.lastCounter = counter;
    t.reported[t.bucket] = t.reported[t.bucket]! + delta;
  }

  verdict(engine: string): WatchdogVerdict {
    const t = this.track(engine);
    let p = 0;
    let r = 0;
    for (let i = 0; i < this.buckets; i++) {
      p += t.predicted[i]!;
      r += t.reported[i]!;
    }
    const top = Math.max(p, r);
    const error = top > 0 ? Math.abs(p - r) / top : 0;
    const judged = top >= this.minTokens;
    const was = t.mismatch;
    const now = this.now();
    if (!judged || error <= this.tolerance) t.beyondSince = null;
    else t.beyondSince ??= now;
    t.mismatch = t.beyondSince !== null && now - t.beyondSince >= this.sustainMs;
    return { predicted: p, reported: r, error, mismatch: t.mismatch, judged, was };
  }

  forget(engine: string): void {
    this.tracks.delete(engine);
  }

  engines(): string[] {
    return [...this.tracks.keys()];
  }
}

/** Sets the watchdog's gauges for each engine judged, and says so loudly when an engine starts (or stops) missing. */
export function judgeEngines(
  watchdog: HitWatchdog,
  engines: Iterable<string>,
  gauges: { mismatch: Gauge<"engine">; error: Gauge<"engine"> },
  log: Logger,
): void {
  for (const url of engines) {
    const v = watchdog.verdict(url);
    gauges.error.set({ engine: url }, v.error);
    gauges.mismatch.set({ engine: url }, v.mismatch ? 1 : 0);
    if (v.mismatch && !v.was)
      log.error(
        { engine: url, predictedTokens: v.predicted, reportedTokens: v.reported, error: v.error },
        "KV routing is missing silently: the router's predicted prefix-cache hits and the engine's " +
          "vllm:prefix_cache_hits differ beyond tolerance — check the hash seed (PYTHONHASHSEED), the " +
          "tokenizer and chat template, the block size and the hash algorithm",
      );
    else if (!v.mismatch && v.was) log.info({ engine: url }, "predicted and reported hits agree again");
  }
}

/** Sums `vllm:prefix_cache_hits_total` (or the unsuffixed name) over its series in a metrics page. */
export function parsePrefixCacheHits(text: string): number | null {
  let sum = 0;
  let seen = false;
  const re = /^vllm:prefix_cache_hits(?:_total)?(?:\{[^}]*\})?\s+([0-9.eE+-]+)/gm;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const v = Number(m[1]);
    if (Number.isFinite(v)) {
      sum += v;
      seen = true;
    }
  }
  return seen ? sum : null;
}
