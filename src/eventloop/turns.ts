// Sliced CPU work (a long prompt's tokenising, then its block hashing for KV-aware routing) gives the
// event loop back between slices so that its sockets are served. Waiting slices form one line per event
// loop (module state: one per thread), the work that began first goes first, and one waiting slice runs
// per turn, however many requests are slicing; work whose `Cancellable` is cancelled stops at its next
// turn. Why one line and not a setImmediate per slice, and what bounds it: this folder's README.md.
import { IndexedHeap } from "../collections/indexed-heap.js";
import { ERROR_CODES, SwitchyardError } from "../errors/index.js";

interface Waiter {
  /** when the work began (performance.now()): older goes first */
  since: number;
  /** ties (equal times) in order of asking */
  seq: number;
  pos: number;
  /** what the work is for: a cancelled one is rejected at its turn and runs no slice */
  owner: Cancellable | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

const line = new IndexedHeap<Waiter>(
  (a, b) => a.since < b.since || (a.since === b.since && a.seq < b.seq),
  (w) => w.pos,
  (w, i) => {
    w.pos = i;
  },
);
// process-wide: there is one event loop per process, so one line of sliced work, its arrival counter,
// and whether a turn is scheduled
const turn = { seq: 0, scheduled: false };

function runOne(): void {
  turn.scheduled = false;
  let w = line.pop();
  // work nobody waits for any more runs no slice, and takes no turn from the rest
  while (w?.owner?.cancelled) {
    w.reject(new WorkCancelled());
    w = line.pop();
  }
  // the next waiter's turn is the loop's next turn: sockets are read in between
  if (line.size > 0) schedule();
  // its continuation (the next slice) runs in this turn's microtasks
  w?.resolve();
}

function schedule(): void {
  if (turn.scheduled) return;
  turn.scheduled = true;
  setImmediate(runOne);
}

/**
 * Resolves on a later turn of the event loop, after every waiter whose work began before `since`
 * (one waiter is let through per turn). `since` is when the caller's work began, not now. Rejects
 * with WorkCancelled instead when, at its turn, `owner` is cancelled.
 */
export function nextTurn(since: number, owner?: Cancellable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    line.push({ since, seq: turn.seq++, pos: -1, owner, resolve, reject });
    schedule();
  });
}

/** What sliced work is done for: once `cancelled`, its remaining slices are not run. */
export interface Cancellable {
  /** nobody waits for the work any more (its client went away, or its time ran out) */
  readonly cancelled: boolean;
}

/** Sliced work given up at a turn because what it was for was cancelled. */
export class WorkCancelled extends SwitchyardError {
  static override readonly code = ERROR_CODES.cancelled;

  constructor() {
    super("sliced work given up: nobody waits for it");
    this.name = "WorkCancelled";
  }
}

/** slices waiting for their turn: new work that finds any waits its turn too instead of cutting in */
export function waitingSlices(): number {
  return line.size;
}
