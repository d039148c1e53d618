// The wall clock an engine runs against in `switchyard sim`: beginStep, a wait of the step's modelled
// duration (optionally scaled), completeStep, in a loop while the engine has work. It lives with the
// sim, the one program that runs an engine in real time, so that src/engine reads no clock; the fleet
// simulator's VirtualDriver (src/engine/drivers.ts) drives the very same beginStep/completeStep.
import type { Engine } from "../../engine/index.js";

/** how far behind the ideal timeline the driver may fall before it resynchronises instead of catching up */
const MAX_CATCH_UP_S = 0.05;

/** Wall-clock seconds (monotonic). */
export function wallSeconds(): number {
  return performance.now() / 1000;
}

export interface RealTimeDriverOptions {
  /** wall seconds per modelled second: 1 = real time, 0.1 = ten times faster */
  timeScale?: number;
  /** clock in seconds; defaults to performance.now()/1000 */
  clock?: () => number;
  /** called when a step throws (the driver stops) */
  onError?: (err: unknown) => void;
}

/**
 * Runs beginStep → wait duration × timeScale → completeStep in a loop while the engine has work.
 * Waits are scheduled against the ideal timeline (the end of the previous step), not "now + duration",
 * so timer lateness does not accumulate over long runs.
 */
export class RealTimeDriver {
  private readonly engine: Engine;
  private readonly timeScale: number;
  private readonly clock: () => number;
  private readonly onError: (err: unknown) => void;
  private running = false;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private immediate: ReturnType<typeof setImmediate> | null = null;
  /** when the step in flight is due to end on the ideal timeline, seconds */
  private due = 0;

  constructor(engine: Engine, opts: RealTimeDriverOptions = {}) {
    const scale = opts.timeScale ?? 1;
    if (!(scale > 0)) throw new RangeError(`timeScale must be > 0, got ${scale}`);
    this.engine = engine;
    this.timeScale = scale;
    this.clock = opts.clock ?? wallSeconds;
    this.onError =
      opts.onError ??
      ((err) => {
        throw err;
      });
  }

  /** call after add(): starts the loop if it is idle */
  wake(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    this.due = this.clock();
    this.step();
  }

  private step(): void {
    if (this.stopped) return;
    try {
      const now = this.clock();
      // keep to the ideal timeline (a late timer shortens the next wait) unless we fell far behind it
      const start = now - this.due > MAX_CATCH_UP_S ? now : this.due;
      const plan = this.engine.beginStep(now);
      if (!plan) {
        this.running = false;
        return;
      }
      this.due = start + plan.duration * this.timeScale;
      this.schedule(this.due - this.clock());
    } catch (err) {
      this.running = false;
      this.onError(err);
    }
  }

  private schedule(delaySeconds: number): void {
    const fire = () => {
      this.timer = null;
      this.immediate = null;
      if (this.stopped) return;
      try {
        this.engine.completeStep(this.clock());
      } catch (err) {
        this.running = false;
        this.onError(err);
        return;
      }
      this.step();
    };
    if (delaySeconds < 0.001) this.immediate = setImmediate(fire);
    else this.timer = setTimeout(fire, delaySeconds * 1000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    this.running = false;
  }

  get isRunning(): boolean {
    return this.running;
  }
}
