// Which session turn goes out next, shared by the live load generator (load.ts) and the fleet simulator
// (src/fleet), so both admit work the same way: a session's next turn is ready only once its previous
// answer arrived; ready follow-ups go before new sessions, so that users finish; and a new session
// starts only while fewer than `concurrency` are active. A turn that waits for a tool (Turn.pauseBeforeS)
// is handed to followUp by the caller once its pause is over, on the caller's clock.
import type { Session } from "./types.js";

export class SessionScheduler<A> {
  private readonly source: Iterator<Session>;
  private sourceDone = false;
  private readonly ready: A[] = [];
  private active = 0;

  constructor(
    sessions: Iterable<Session>,
    private readonly concurrency: number,
    /** the caller's state for a session that starts now */
    private readonly begin: (session: Session) => A,
  ) {
    this.source = sessions[Symbol.iterator]();
  }

  /** the next turn to send, or null when every active session awaits an answer or the cap is reached */
  take(): A | null {
    if (this.ready.length) return this.ready.shift()!;
    if (this.sourceDone || this.active >= this.concurrency) return null;
    for (;;) {
      const n = this.source.next();
      if (n.done) {
        this.sourceDone = true;
        return null;
      }
      if (n.value.turns.length === 0) continue;
      this.active++;
      return this.begin(n.value);
    }
  }

  /** a turn taken but not sent goes back to the front */
  putBack(a: A): void {
    this.ready.unshift(a);
  }

  /** the session's next turn is ready to send */
  followUp(a: A): void {
    this.ready.push(a);
  }

  /**
   * a session begun by another (a sub-agent forking its parent's context): active from now, its first
   * turn ready to send
   */
  spawn(a: A): void {
    this.active++;
    this.ready.push(a);
  }

  /** the session is over (last turn answered, or a turn failed) */
  finish(): void {
    this.active--;
  }

  /** no session is active and none is left to start */
  get exhausted(): boolean {
    return this.sourceDone && this.active === 0;
  }
}
