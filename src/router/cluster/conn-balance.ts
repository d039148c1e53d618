// Client connections even across a worker group. Each worker listens on sockets of its own in the
// port's SO_REUSEPORT group, and the kernel hands a new connection to a socket by a hash of its
// addresses, not by how many each worker holds: 64 keep-alive connections split 37 / 27 between two
// workers in one sample, and the busier worker serves each of its requests that much slower (the
// group's p99 at 64 connections was 1.2–1.4× vllm-router's; docs/router.md, "Workers and replicas"). A
// worker above its share closes that many connections after their current response (`connection:
// close`, as a drain does); their clients reconnect and the hash places them again, about half of them
// elsewhere, so the split converges within a few reports. A process cannot hand another a socket it
// has read from, so it asks the client.
//
// Acting on counts of different ages closes connections for nothing: a client opens its connections
// in a burst, and a worker that reported 37 while the other's last report still said 0 took a share
// of 18 and closed 18 (20–42 closes a cell where 5 were needed, under wrk at 64 connections, each
// new cell's burst alike). So a worker reports a change within a few milliseconds, the group's total
// goes out only once no count has changed for a settle time (ConnectionCensus), and a worker whose
// count moved since its report waits for the next total.

/** a worker within this many connections of its share (and 5% of it) keeps them all */
const SLACK = 1;

/**
 * Below this many connections a worker, none is closed: a worker with a handful is not what holds the
 * group back, and a client that keeps one connection on purpose (a session, a test) is left alone.
 */
const MIN_SHARE = 8;

/** ms without a change in any worker's count before the group's total goes out */
export const SETTLE_MS = 25;
/** ms at most between the first change and a total going out, however the counts keep moving */
export const MAX_UNSETTLED_MS = 250;

/**
 * The primary's side: when the group's total may go out. Clock-free: the caller says the time
 * (monotonic ms) and arms its one timer for `due`.
 */
export class ConnectionCensus {
  /** when the first change not yet sent out came (undefined: nothing to send) */
  private firstChange: number | undefined;
  private lastChange = 0;

  /** A worker's count changed at `now`. */
  changed(now: number): void {
    this.firstChange ??= now;
    this.lastChange = now;
  }

  /** When the total should go out; undefined when there is nothing new. */
  get due(): number | undefined {
    if (this.firstChange === undefined) return undefined;
    return Math.min(this.lastChange + SETTLE_MS, this.firstChange + MAX_UNSETTLED_MS);
  }

  /** True when the total should go out at `now` (and it is then taken as sent). */
  take(now: number): boolean {
    const due = this.due;
    if (due === undefined || now < due) return false;
    this.firstChange = undefined;
    return true;
  }
}

export class ConnectionBalance {
  /** responses still to close before this worker is at its share */
  private toClose = 0;
  /**
   * The group holds `total` client connections, this worker `mine` of them (its count in that total),
   * over `workers` listening. `now`: its count at this moment; a different one is in a report not yet
   * in the total, so nothing is decided until the next.
   */
  update(mine: number, total: number, workers: number, now = mine): void {
    if (now !== mine) {
      this.toClose = 0;
      return;
    }
    const share = total / workers;
    const over = mine - share;
    const even = workers < 2 || share < MIN_SHARE || over <= Math.max(SLACK, 0.05 * share);
    this.toClose = even ? 0 : Math.floor(over);
  }

  /** For each request: true when its response should close its connection. */
  closeThis(): boolean {
    if (this.toClose <= 0) return false;
    this.toClose--;
    return true;
  }
}
