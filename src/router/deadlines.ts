// One coarse timer for every per-request timeout (total, first byte, idle, keep-alive), instead of a
// Node timer per request. Timeouts of the same length expire in the order they were (re)armed, so
// each length keeps an insertion-ordered Set and a tick only looks at the heads of those Sets:
// arming, re-arming and disarming are O(1) and a tick costs O(expired + distinct lengths).
// Deadlines fire up to one tick late; the tick is a tenth of the shortest armed timeout
// (5 ms .. 100 ms), so a 5-minute idle timeout is checked ten times a second, not per chunk.

export interface Deadline {
  /** absolute time (performance.now()) at which it fires; set by the queue */
  at: number;
  /** length it was armed with, which picks its Set; 0 when disarmed */
  ms: number;
  fire(): void;
}

const MIN_TICK_MS = 5;
const MAX_TICK_MS = 100;

function tickFor(ms: number): number {
  return Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.floor(ms / 10)));
}

export class DeadlineQueue {
  private readonly byLength = new Map<number, Set<Deadline>>();
  private timer: NodeJS.Timeout | undefined;
  private tickMs = MAX_TICK_MS;
  private armed = 0;

  get size(): number {
    return this.armed;
  }

  /** Arms (or re-arms, moving it to the back) `d` to fire `ms` from now. */
  arm(d: Deadline, ms: number, now = performance.now()): void {
    if (d.ms !== 0) this.byLength.get(d.ms)?.delete(d);
    else this.armed++;
    d.ms = ms;
    d.at = now + ms;
    let set = this.byLength.get(ms);
    if (!set) {
      // lengths come from configuration, so there are a handful; empty Sets are dropped on tick
      set = new Set();
      this.byLength.set(ms, set);
    }
    set.add(d);
    this.schedule(ms);
  }

  disarm(d: Deadline): void {
    if (d.ms === 0) return;
    this.byLength.get(d.ms)?.delete(d);
    d.ms = 0;
    this.armed--;
  }

  private schedule(ms: number): void {
    const want = tickFor(ms);
    if (this.timer && want >= this.tickMs) return;
    if (this.timer) clearInterval(this.timer);
    this.tickMs = want;
    this.timer = setInterval(() => this.tick(), want);
    this.timer.unref();
  }

  /** Fires every deadline that has passed; public for tests. */
  tick(now = performance.now()): void {
    let shortest = Infinity;
    for (const [ms, set] of this.byLength) {
      for (const d of set) {
        if (d.at > now) break;
        set.delete(d);
        d.ms = 0;
        this.armed--;
        try {
          d.fire();
        } catch {
          // a deadline's action must not stop the others
        }
      }
      if (set.size === 0) this.byLength.delete(ms);
      else if (ms < shortest) shortest = ms;
    }
    if (this.armed === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.tickMs = MAX_TICK_MS;
    } else if (shortest !== Infinity && tickFor(shortest) > this.tickMs * 2) {
      // the short timeouts are gone: slow down again
      clearInterval(this.timer);
      this.timer = undefined;
      this.tickMs = MAX_TICK_MS;
      this.schedule(shortest);
    }
  }

  clear(): void {
    this.byLength.clear();
    this.armed = 0;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** What an owned deadline calls, with the kind it was made for. */
export interface DeadlineOwner<K> {
  onDeadline(kind: K): void;
}

/**
 * A deadline that calls `owner.onDeadline(kind)`: one small object per timeout, no closure and
 * context (these are made for every request and attempt).
 */
export class OwnedDeadline<K> implements Deadline {
  at = 0;
  ms = 0;
  constructor(
    private readonly owner: DeadlineOwner<K>,
    private readonly kind: K,
  ) {}

  fire(): void {
    this.owner.onDeadline(this.kind);
  }
}
