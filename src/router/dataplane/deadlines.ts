// One coarse timer for every per-request timeout (total, first byte, idle, keep-alive), instead of a
// Node timer per request. Timeouts of the same length expire in the order they were (re)armed, so
// each length keeps an insertion-ordered list and a tick only looks at the heads of those lists:
// arming, re-arming and disarming are O(1) and a tick costs O(expired + distinct lengths).
// Deadlines fire up to one tick late; the tick is a tenth of the shortest armed timeout
// (5 ms .. 100 ms), so a 5-minute idle timeout is checked ten times a second, not per chunk.

import { LinkedList, type Linked } from "../../collections/linked-list.js";

export interface Deadline extends Linked<Deadline> {
  /** absolute time (performance.now()) at which it fires; set by the queue */
  at: number;
  fire(): void;
}

const MIN_TICK_MS = 5;
const MAX_TICK_MS = 100;

function tickFor(ms: number): number {
  return Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.floor(ms / 10)));
}

/**
 * Deadlines of one length in the order they were (re)armed. A linked list through the deadlines, not
 * a Set: a Set that gains and loses an entry per request chains its rehashed tables, and once one is
 * in the old generation every later request is promoted with it. With Sets here and in
 * Engine.pending the router promoted 97% of what survived a scavenge (398 MB over a 5-second run
 * against 10 MB without them) and spent 70–86 µs per tiny request instead of 52–65.
 */
class DeadlineList extends LinkedList<Deadline> {
  constructor(readonly ms: number) {
    super();
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
    if (d.list === null) this.armed++;
    d.at = now + ms;
    let list = this.byLength.get(ms);
    if (!list) {
      // lengths come from configuration, so there are a handful; empty lists are dropped on tick
      list = new DeadlineList(ms);
      this.byLength.set(ms, list);
    }
    list.push(d);
    this.schedule(ms);
  }

  disarm(d: Deadline): void {
    if (d.list === null) return;
    d.list.remove(d);
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
        list.remove(d);
        this.armed--;
        try {
          d.fire();
        } catch {
          // a deadline's action must not stop the others
        }
      }
      if (list.empty) this.byLength.delete(ms);
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
    for (const list of this.byLength.values()) for (const d of list.toArray()) list.remove(d);
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
  prev: Deadline | null = null;
  next: Deadline | null = null;
  list: LinkedList<Deadline> | null = null;
  constructor(
    private readonly owner: DeadlineOwner<K>,
    private readonly kind: K,
  ) {}

  fire(): void {
    this.owner.onDeadline(this.kind);
  }
}
