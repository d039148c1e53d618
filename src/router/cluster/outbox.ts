// One IPC write per destination per turn. Each process.send is a write on the channel and a read and
// a parse at the other end; in a busy group the primary told each worker of every other's counts once
// per confirmed claim and per report, and the worker sent its report and its claims apart, so the
// channel's own cost was most of what two workers spent beyond one process (measured: docs/router.md,
// "Workers and replicas"). Messages queued while a callback runs leave together when it returns (a
// microtask: no later than they would have, only in one write), in the order they were queued; counts
// of one source queued back to back fold into one message (each row is that source's absolute counts
// on its engine, so the later row of an engine replaces the earlier).
import type { LoadCounts } from "./protocol.js";

/** A message that may carry a source's counts (only `load` ones fold). */
type Foldable = { t: string; source?: string; load?: LoadCounts[] };

export class Outbox<M extends Foldable> {
  private queued: M[] = [];
  private scheduled = false;

  constructor(
    /** writes one message on the channel */
    private readonly write: (m: M | { t: "many"; ms: M[] }) => void,
  ) {}

  send(m: M): void {
    if (m.t === "load" && this.fold(m)) return;
    this.queued.push(m);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(this.flush);
  }

  /** Writes what is queued now (before an exit, or where order with a direct write matters). */
  readonly flush = (): void => {
    this.scheduled = false;
    const ms = this.queued;
    if (ms.length === 0) return;
    this.queued = [];
    this.write(ms.length === 1 ? ms[0]! : { t: "many", ms });
  };

  /**
   * Folds a source's counts into a `load` of the same source among the queued messages' trailing
   * `load`s (counts of different sources commute; nothing else may be passed over).
   */
  private fold(m: M): boolean {
    for (let i = this.queued.length - 1; i >= 0; i--) {
      const q = this.queued[i]!;
      if (q.t !== "load") return false;
      if (q.source !== m.source) continue;
      // a copy: a broadcast queues one message object for every worker
      const rows = q.load!.slice();
      this.queued[i] = { ...q, load: rows };
      for (const r of m.load!) {
        const at = rows.findIndex((x) => x[0] === r[0]);
        if (at >= 0) rows[at] = r;
        else rows.push(r);
      }
      return true;
    }
    return false;
  }
}
