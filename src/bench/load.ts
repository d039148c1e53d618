// Drives a workload against a sender: open loop (requests start on an arrival schedule at --qps),
// closed loop (at most --concurrency sessions active at once), or both (a rate with a cap, as vllm
// bench's --request-rate with --max-concurrency). A session's next turn becomes ready only when its
// previous answer arrived; ready follow-ups go before new sessions so that users finish. A turn that
// waits for a tool (Turn.pauseBeforeS) becomes ready that long after the previous answer, on a real timer
// (at most one per active session, cleared when the run stops); a turn's sub-agents (Turn.forks) start
// at its answer, carrying the answers so far.
import { performance } from "node:perf_hooks";
import type { RequestRecord } from "../workload/record.js";
import { arrivalGaps, scheduledGaps, type ArrivalKind } from "../workload/arrivals.js";
import type { Session } from "../workload/types.js";
import { SessionScheduler } from "../workload/sessions.js";

export interface LoadOptions {
  /** requests/s; Infinity sends as fast as the concurrency cap allows */
  qps: number;
  arrival: ArrivalKind;
  /** sessions active at once (single-turn: requests in flight); Infinity for no cap */
  concurrency: number;
  /** requests to send at most */
  maxRequests: number;
  /** stop starting requests after this many seconds; Infinity for no limit */
  durationS: number;
  seed: number;
  /** a replayed trace's gaps before each new session (Workload.arrivalGapsS), instead of qps's schedule */
  schedule?: readonly number[] | undefined;
}

export interface TurnToSend {
  index: number;
  session: Session;
  round: number;
  answers: readonly string[];
}

export type Sender = (turn: TurnToSend) => Promise<{ record: RequestRecord; text: string }>;

export interface LoadResult {
  records: RequestRecord[];
  /** seconds from the first send to the last completion (vllm bench's benchmark_duration) */
  durationS: number;
  /** highest number of requests in flight at once */
  maxInFlight: number;
}

interface Active {
  session: Session;
  round: number;
  answers: string[];
}

export class LoadRun {
  private stopped = false;
  private wake: (() => void) | null = null;
  inFlight = 0;
  done = 0;
  failed = 0;
  dispatched = 0;

  constructor(
    private readonly opts: LoadOptions,
    private readonly sender: Sender,
  ) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Stops starting new requests; those in flight finish. */
  stop(): void {
    this.stopped = true;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private waitForEvent(timeoutMs?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.wake = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.wake = null;
          resolve();
        }, timeoutMs);
      }
    });
  }

  async run(sessions: Iterable<Session>): Promise<LoadResult> {
    const o = this.opts;
    const records: RequestRecord[] = [];
    let maxInFlight = 0;
    const pending = new Set<Promise<void>>();
    const gaps = o.schedule ? scheduledGaps(o.schedule) : arrivalGaps(o.qps, o.arrival, o.seed);
    const t0 = performance.now();
    const deadline = Number.isFinite(o.durationS) ? t0 + o.durationS * 1000 : Infinity;
    let nextAt = t0;
    let lastEnd = t0;

    const sessionsToSend = new SessionScheduler<Active>(sessions, o.concurrency, (session) => ({
      session,
      round: session.startRound ?? 0,
      answers: [],
    }));
    // sessions waiting for a tool: one timer each, so as many as there are active sessions at most
    const pauses = new Set<NodeJS.Timeout>();
    const take = () => sessionsToSend.take();

    while (!this.stopped && this.dispatched < o.maxRequests) {
      nextAt += gaps.next().value! * 1000;
      // a schedule's end (Infinity) or the deadline
      if (nextAt > deadline || nextAt === Infinity) break;
      let wait = nextAt - performance.now();
      // Timers fire late by up to a millisecond or so; sleep only for gaps worth sleeping, and
      // otherwise send now and let the schedule catch up, so the average rate holds at high qps.
      if (wait > 1) {
        await new Promise((r) => setTimeout(r, wait));
      }
      let item = take();
      const held = item === null;
      while (item === null && !this.stopped) {
        if (sessionsToSend.exhausted) break;
        wait = deadline - performance.now();
        if (wait <= 0) break;
        await this.waitForEvent(Number.isFinite(wait) ? wait : undefined);
        item = take();
      }
      if (item === null || this.stopped || performance.now() > deadline) {
        if (item) sessionsToSend.putBack(item);
        break;
      }
      // A tick held by the cap or by sessions awaiting answers does not bunch later arrivals behind it.
      if (held) nextAt = Math.max(nextAt, performance.now());
      const index = this.dispatched++;
      const a = item;
      this.inFlight++;
      if (this.inFlight > maxInFlight) maxInFlight = this.inFlight;
      const p = this.sender({ index, session: a.session, round: a.round, answers: a.answers }).then(
        ({ record, text }) => {
          records.push(record);
          this.inFlight--;
          this.done++;
          if (!record.ok) this.failed++;
          lastEnd = performance.now();
          a.answers.push(text);
          const forks = record.ok ? a.session.turns[a.round]!.forks : undefined;
          a.round++;
          if (forks)
            for (const f of forks)
              sessionsToSend.spawn({ session: f, round: f.startRound ?? 0, answers: a.answers.slice() });
          // A failed turn ends its session: the next round would lack the history it builds on.
          if (record.ok && a.round < a.session.turns.length) {
            const pauseMs = (a.session.turns[a.round]!.pauseBeforeS ?? 0) * 1000;
            if (pauseMs > 0 && !this.stopped) {
              const timer = setTimeout(() => {
                pauses.delete(timer);
                sessionsToSend.followUp(a);
                this.notify();
              }, pauseMs);
              pauses.add(timer);
            } else sessionsToSend.followUp(a);
          } else sessionsToSend.finish();
          pending.delete(p);
          this.notify();
        },
      );
      pending.add(p);
    }
    // the run is over: sessions still waiting for a tool send nothing more
    for (const t of pauses) clearTimeout(t);
    pauses.clear();
    await Promise.all(pending);
    // answers that came in while the last ones drained may have started pauses
    for (const t of pauses) clearTimeout(t);
    records.sort((x, y) => x.index - y.index);
    return { records, durationS: (lastEnd - t0) / 1000, maxInFlight };
  }
}
