// One coarse timer for every per-request timeout (total, first byte, idle, keep-alive), instead of a
// Node timer per request. Timeouts of the same length expire in the order they were (re)armed, so
// each length keeps an insertion-ordered list and a tick only looks at the heads of those lists:
// arming, re-arming and disarming are O(1) and a tick costs O(expired + distinct lengths).
// Deadlines fire up to one tick late; the tick is a tenth of the shortest armed timeout
// (5 ms .. 100 ms), so a 5-minute idle timeout is checked ten times a second, not per chunk.

export interface Deadline {
  /** absolute time (performance.now()) at which it fires; set by the queue */
  at: number;
  /** length it was armed with, which picks its list; 0 when disarmed */
  ms: number;
  /** neighbours in the list for its length, owned by the queue; null when disarmed */
  prev: Deadline | null;
  next: Deadline | null;
  fire(): void;
}

const MIN_TICK_MS = 5;
const MAX_TICK_MS = 100;

function tickFor(ms: number): number {
  return Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.floor(ms / 10)));
}

/**
 * Deadlines of one length in the order they were (re)armed, linked through the deadlines themselves.
 * Not a Set: a Set that gains and loses an entry per request rehashes every few dozen requests, and
 * V8 links each replaced table to its successor (for live iterators), entries left in place. Once a
 * full GC has moved one such table to the old generation, that dead table keeps every later table,
 * and every request their entries reach, alive through young-generation GCs until the next full GC,
 * which starts it over. With Sets here and in Engine.pending the router promoted 97% of what survived
 * a scavenge (398 MB over a 5-second run against 10 MB without them) and spent 70–86 µs per tiny
 * request instead of 52–65. Unlinking clears a deadline's pointers, so a dead deadline holds nothing.
 */
class DeadlineList {
  head: Deadline | null = null;
  tail: Deadline | null = null;

  push(d: Deadline): void {
    d.prev = this.tail;
    d.next = null;
    if (this.tail) this.tail.next = d;
    else this.head = d;
    this.tail = d;
  }

  unlink(d: Deadline): void {
    if (d.prev) d.prev.next = d.next;
    else this.head = d.next;
    if (d.next) d.next.prev = d.prev;
    else this.tail = d.prev;
    d.prev = d.next = null;
  }
}

export class DeadlineQueue {
  private readonly byLength = new Map<number, DeadlineList>();
  private timer: NodeJS.Timeout | undefined;
  private tickMs = MAX_TICK_MS;
  private armed = 0;

  get size(): number {
    return this.armed;
  }

  /** Arms (or re-arms, moving it to the back) `d` to fire `ms` from now. */
  arm(d: Deadline, ms: number, now = performance.now()): void {
    if (d.ms !== 0) this.byLength.get(d.ms)?.unlink(d);
    else this.armed++;
    d.ms = ms;
    d.at = now + ms;
    let list = this.byLength.get(ms);
    if (!list) {
      // lengths come from configuration, so there are a handful; empty lists are dropped on tick
      list = new DeadlineList();
      this.byLength.set(ms, list);
    }
    list.push(d);
    this.schedule(ms);
  }

  disarm(d: Deadline): void {
    if (d.ms === 0) return;
    this.byLength.get(d.ms)?.unlink(d);
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
    for (const [ms, list] of this.byLength) {
      // a deadline re-armed by its own action goes to the back with a later time, so this ends
      for (let d = list.head; d !== null && d.at <= now; d = list.head) {
        list.unlink(d);
        d.ms = 0;
        this.armed--;
        try {
          d.fire();
        } catch {
          // a deadline's action must not stop the others
        }
      }
      if (list.head === null) this.byLength.delete(ms);
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
    for (const list of this.byLength.values())
      for (let d = list.head; d !== null; d = list.head) {
        list.unlink(d);
        d.ms = 0;
      }
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
  prev: Deadline | null = null;
  next: Deadline | null = null;
  constructor(
    private readonly owner: DeadlineOwner<K>,
    private readonly kind: K,
  ) {}

  fire(): void {
    this.owner.onDeadline(this.kind);
  }
}
