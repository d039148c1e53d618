// When an engine last failed, and for whom: a few recent failures per engine, each with the request
// it failed (0: a health probe). The data plane reads them to tell a request that breaks engines (a
// poison request: its engines fail for it alone) from engines that broke under everyone (a crash,
// a hang, a reset: their other requests and their probes fail too), so that two unrelated engine
// faults in a row do not end a healthy request as poison (../dataplane/poison.ts).
//
// Bounded: a ring of RING marks per engine, overwritten oldest first; a mark is two numbers.

/** failures kept per engine: more than the requests one fault can break at once need not be kept */
const RING = 16;

export class FailureMarks {
  private readonly at = new Float64Array(RING);
  private readonly owner = new Float64Array(RING);
  private next = 0;
  private count = 0;

  /** A failure at `now` (performance.now()) of request `owner` (0: a probe or the engine as such). */
  mark(owner: number, now: number): void {
    this.at[this.next] = now;
    this.owner[this.next] = owner;
    this.next = (this.next + 1) % RING;
    if (this.count < RING) this.count++;
  }

  /** True when something other than request `owner` failed on the engine within [from, to]. */
  othersFailed(owner: number, from: number, to: number): boolean {
    for (let i = 0; i < this.count; i++) {
      const t = this.at[i]!;
      if (t >= from && t <= to && this.owner[i] !== owner) return true;
    }
    return false;
  }
}
