// A weighted fair queue of waiting requests across tenants: strict priority bands, and within a
// band start-time fair queuing (SFQ) over virtual time. Each flow (tenant) is FIFO; the flow whose
// head has the smallest start tag goes next, and serving it advances the flow's finish tag by
// cost / weight, so backlogged flows share service by weight however fast each one arrives.
// A flow that goes quiet cannot bank credit: on return it starts at the band's current virtual
// time. Bounded globally and per flow; when the global bound is hit the last request of the longest
// flow (its newest, or its lowest-ranked) is pushed out for a shorter one (so a flood cannot occupy
// the queue other tenants need). Within a flow a request may carry its own rank and a shorter wait
// bound (an agent's `priority` and `deadline_seconds`): higher rank first, then the earlier deadline,
// then arrival, so a client reorders only its own flow's requests and never gains on another flow.
// Every operation is O(log flows) or O(1) for requests of the default rank and wait; one that goes
// ahead walks past those it passes. Pure: the clock is an argument, so the fleet simulator and tests
// drive it in virtual time.
import { IndexedHeap } from "../collections/indexed-heap.js";
import { LruMap } from "../collections/lru-map.js";

export interface FairQueueLimits {
  /** requests waiting in all, 0 = none may wait */
  size: number;
  /** requests waiting per flow, 0 = only the global bound */
  perFlow: number;
  /** longest wait, ms */
  timeout: number;
  /** idle flows kept for their finish tags (beyond this the oldest are forgotten) */
  maxIdleFlows?: number;
}

export interface FlowParams {
  weight: number;
  priority: number;
  /** service this request is charged, e.g. 1 or its estimated tokens */
  cost?: number;
  /** this request's rank within its flow: higher goes first (default 0) */
  rank?: number;
  /** this request's own longest wait, ms: shortens the queue's timeout, never extends it */
  timeout?: number;
}

interface Band {
  priority: number;
  vtime: number;
  heap: IndexedHeap<Flow>;
}

interface Flow {
  key: string;
  weight: number;
  band: Band;
  lastFinish: number;
  headTag: number;
  head: Entry<unknown> | undefined;
  tail: Entry<unknown> | undefined;
  count: number;
  fairPos: number;
  sizePos: number;
}

interface Entry<T> {
  value: T;
  flow: Flow;
  cost: number;
  seq: number;
  rank: number;
  deadline: number;
  enqueuedAt: number;
  queued: boolean;
  prev: Entry<unknown> | undefined;
  next: Entry<unknown> | undefined;
  gprev: Entry<unknown> | undefined;
  gnext: Entry<unknown> | undefined;
}

/** Opaque handle for cancel. */
export interface Ticket<T> {
  readonly value: T;
  readonly enqueuedAt: number;
  readonly deadline: number;
}

export type EnqueueResult<T> =
  | { ok: true; ticket: Ticket<T>; /** a request pushed out to make room: reject it */ evicted?: T }
  | { ok: false; reason: "queue_full" | "tenant_queue_full" };

export class FairQueue<T> {
  private readonly bands: Band[] = []; // highest priority first
  private readonly flows = new Map<string, Flow>();
  /**
   * oldest idle first: an LruMap, as a Map whose every flow leaves and rejoins it walked its deleted
   * slots each time the oldest was read
   */
  private readonly idle = new LruMap<string, Flow>();
  private readonly bySize = new IndexedHeap<Flow>(
    (a, b) => a.count > b.count,
    (f) => f.sizePos,
    (f, i) => (f.sizePos = i),
  );
  private ghead: Entry<unknown> | undefined;
  private gtail: Entry<unknown> | undefined;
  private count = 0;
  private seq = 0;

  constructor(private limits: FairQueueLimits) {}

  setLimits(limits: FairQueueLimits): void {
    this.limits = limits;
  }

  get size(): number {
    return this.count;
  }

  /** Flows known (backlogged + idle ones kept for their tags): for memory checks. */
  get flowCount(): number {
    return this.flows.size;
  }

  flowSize(key: string): number {
    return this.flows.get(key)?.count ?? 0;
  }

  enqueue(key: string, value: T, p: FlowParams, now: number): EnqueueResult<T> {
    this.reclaimIdle(1);
    let f = this.flows.get(key);
    if (f && this.limits.perFlow > 0 && f.count >= this.limits.perFlow)
      return { ok: false, reason: "tenant_queue_full" };
    let evicted: T | undefined;
    if (this.count >= this.limits.size) {
      const victim = this.bySize.peek();
      const mine = f?.count ?? 0;
      if (!victim || victim === f || victim.count <= mine + 1 || victim.band.priority > p.priority)
        return { ok: false, reason: "queue_full" };
      const e = victim.tail!;
      this.unlink(e);
      evicted = e.value as T;
    }
    if (!f) {
      f = this.newFlow(key, p);
    } else if (f.count === 0 && f.band.priority !== p.priority) {
      // a priority change moves an idle flow; tags of another band mean nothing here
      f.band = this.band(p.priority);
      f.lastFinish = 0;
    }
    f.weight = p.weight;
    const own =
      p.timeout !== undefined && p.timeout >= 0 ? Math.min(p.timeout, this.limits.timeout) : undefined;
    const e: Entry<T> = {
      value,
      flow: f,
      cost: p.cost ?? 1,
      seq: this.seq++,
      rank: p.rank ?? 0,
      deadline: now + (own ?? this.limits.timeout),
      enqueuedAt: now,
      queued: true,
      prev: undefined,
      next: undefined,
      gprev: undefined,
      gnext: undefined,
    };
    this.linkInFlow(f, e);
    this.linkByDeadline(e);
    f.count++;
    this.count++;
    if (f.count === 1) {
      this.idle.delete(key);
      f.headTag = Math.max(f.band.vtime, f.lastFinish);
      f.band.heap.push(f);
      this.bySize.push(f);
    } else {
      this.bySize.update(f);
      f.band.heap.update(f); // its count breaks ties
    }
    const r: EnqueueResult<T> = { ok: true, ticket: e };
    if (evicted !== undefined) r.evicted = evicted;
    return r;
  }

  /**
   * Takes the next request: highest band first, smallest start tag within it. With `accept`, heads
   * it refuses (e.g. their model has no room) are skipped, flows keeping their place; at most
   * `maxTries` requests are looked at. `deep`: a refused head does not hold back the rest of its flow
   * (each request waits for room of its own, as a per-program pool's do), so the flow's next requests
   * are looked at too, in order.
   */
  dequeue(accept?: (value: T) => boolean, maxTries = 64, deep = false): T | undefined {
    this.reclaimIdle(1);
    let tries = 0;
    for (const band of this.bands) {
      const skipped: Flow[] = [];
      let served: Entry<unknown> | undefined;
      while (band.heap.size > 0 && tries < maxTries) {
        const f = band.heap.peek()!;
        let e: Entry<unknown> | undefined = f.head!;
        tries++;
        if (accept && !accept(e.value as T)) {
          // accept claims room when it says yes: the request it said yes to is the one served
          let found: Entry<unknown> | undefined;
          for (e = e.next; deep && e && tries < maxTries; e = e.next) {
            tries++;
            if (accept(e.value as T)) {
              found = e;
              break;
            }
          }
          if (!found) {
            band.heap.pop();
            skipped.push(f);
            continue;
          }
          e = found;
        }
        served = e;
        break;
      }
      for (const f of skipped) band.heap.push(f);
      if (served) {
        const f = served.flow;
        band.vtime = f.headTag;
        f.lastFinish = f.headTag + served.cost / f.weight;
        this.unlink(served);
        return served.value as T;
      }
      if (tries >= maxTries) break;
    }
    return undefined;
  }

  /** Removes a waiting request (client went away); false when it had left the queue already. */
  cancel(ticket: Ticket<T>): boolean {
    const e = ticket as Entry<T>;
    if (!e.queued) return false;
    this.unlink(e);
    return true;
  }

  /** Earliest deadline of a waiting request, for one timer. */
  nextDeadline(): number | undefined {
    return this.ghead?.deadline;
  }

  /** Removes and returns requests whose wait ran out by `now`, earliest deadline first. */
  expire(now: number, out: T[] = []): T[] {
    while (this.ghead && this.ghead.deadline <= now) {
      const e = this.ghead;
      this.unlink(e);
      out.push(e.value as T);
    }
    return out;
  }

  /** Empties the queue, returning what waited (shutdown). */
  drain(): T[] {
    const out: T[] = [];
    while (this.ghead) {
      const e = this.ghead;
      this.unlink(e);
      out.push(e.value as T);
    }
    return out;
  }

  /** into its flow after every request that goes before it (rank, then deadline), FIFO among equals */
  private linkInFlow(f: Flow, e: Entry<unknown>): void {
    let at = f.tail;
    while (at && (e.rank > at.rank || (e.rank === at.rank && e.deadline < at.deadline))) at = at.prev;
    e.prev = at;
    e.next = at ? at.next : f.head;
    if (e.next) e.next.prev = e;
    else f.tail = e;
    if (at) at.next = e;
    else f.head = e;
  }

  /** into the global list in deadline order, so the head is always the next to expire */
  private linkByDeadline(e: Entry<unknown>): void {
    let at = this.gtail;
    while (at && at.deadline > e.deadline) at = at.gprev;
    e.gprev = at;
    e.gnext = at ? at.gnext : this.ghead;
    if (e.gnext) e.gnext.gprev = e;
    else this.gtail = e;
    if (at) at.gnext = e;
    else this.ghead = e;
  }

  private unlink(e: Entry<unknown>): void {
    e.queued = false;
    const f = e.flow;
    const wasHead = f.head === e;
    if (e.prev) e.prev.next = e.next;
    else f.head = e.next;
    if (e.next) e.next.prev = e.prev;
    else f.tail = e.prev;
    if (e.gprev) e.gprev.gnext = e.gnext;
    else this.ghead = e.gnext;
    if (e.gnext) e.gnext.gprev = e.gprev;
    else this.gtail = e.gprev;
    e.prev = e.next = e.gprev = e.gnext = undefined;
    f.count--;
    this.count--;
    if (f.count === 0) {
      f.band.heap.remove(f);
      this.bySize.remove(f);
      this.idle.set(f.key, f);
      this.capIdle();
      return;
    }
    this.bySize.update(f);
    // a served head advanced lastFinish; a cancelled one was never charged, so the tag holds
    if (wasHead) f.headTag = Math.max(f.band.vtime, f.lastFinish);
    f.band.heap.update(f);
  }

  private newFlow(key: string, p: FlowParams): Flow {
    const f: Flow = {
      key,
      weight: p.weight,
      band: this.band(p.priority),
      lastFinish: 0,
      headTag: 0,
      head: undefined,
      tail: undefined,
      count: 0,
      fairPos: -1,
      sizePos: -1,
    };
    this.flows.set(key, f);
    return f;
  }

  private band(priority: number): Band {
    for (const b of this.bands) if (b.priority === priority) return b;
    const b: Band = {
      priority,
      vtime: 0,
      heap: new IndexedHeap<Flow>(
        // equal tags: the shorter flow first (a light tenant's second request does not queue
        // behind a flood's backlog; shares are set by the tags, so they do not change), then age
        (x, y) =>
          x.headTag < y.headTag ||
          (x.headTag === y.headTag &&
            (x.count < y.count || (x.count === y.count && x.head!.seq < y.head!.seq))),
        (f) => f.fairPos,
        (f, i) => (f.fairPos = i),
      ),
    };
    this.bands.push(b);
    this.bands.sort((a, c) => c.priority - a.priority);
    return b;
  }

  /** An idle flow whose finish tag the band's clock has passed carries nothing: forget it. */
  private reclaimIdle(n: number): void {
    for (let i = 0; i < n; i++) {
      const first = this.idle.shift();
      if (first === undefined) return;
      const { key, value: f } = first;
      if (f.lastFinish <= f.band.vtime) this.flows.delete(key);
      else this.idle.add(key, f); // not yet: to the back
    }
  }

  private capIdle(): void {
    const max = this.limits.maxIdleFlows ?? 10_000;
    while (this.idle.size > max) {
      this.flows.delete(this.idle.shift()!.key);
    }
  }
}
