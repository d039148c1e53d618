// Client connections even across a worker group. Each worker listens on sockets of its own in the
// port's SO_REUSEPORT group, and the kernel hands a new connection to a socket by a hash of its
// addresses, not by how many each worker holds: 64 keep-alive connections split 37 / 27 between two
// workers in one sample, and the busier worker serves each of its requests that much slower (the
// group's p99 at 64 connections was 1.2–1.4× vllm-router's; docs/router.md, "Workers and replicas"). A
// worker above its share closes that many connections after their current response (`connection:
// close`, as a drain does); their clients reconnect and the hash places them again, about half of them
// elsewhere, so the split converges within a few reports. A process cannot hand another a socket it
// has read from, so it asks the client.

/** a worker within this many connections of its share (and 5% of it) keeps them all */
const SLACK = 1;

/**
 * Below this many connections a worker, none is closed: a worker with a handful is not what holds the
 * group back, and a client that keeps one connection on purpose (a session, a test) is left alone.
 */
const MIN_SHARE = 8;

export class ConnectionBalance {
  /** responses still to close before this worker is at its share */
  private toClose = 0;
  /** The group holds `total` client connections, this worker `mine` of them, over `workers` listening. */
  update(mine: number, total: number, workers: number): void {
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
