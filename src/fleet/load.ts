// The fleet simulator's load driver: replays a bench workload (src/workload) the way `switchyard bench`
// sends it — an arrival schedule, a cap on active sessions, follow-up turns once their answers are in
// (the same SessionScheduler as src/bench/load.ts) — and turns each turn into prompt token ids. It knows
// nothing of engines or routing: it hands each turn to `send` and is told when the answer is complete.
// A turn that waits for a tool (Turn.pauseBeforeS) becomes ready that many virtual seconds after the
// previous answer; a turn's sub-agents (Turn.forks) start at its answer with its context as their history.
import { arrivalGaps, scheduledGaps, type ArrivalKind } from "../workload/arrivals.js";
import type { RequestRecord } from "../workload/record.js";
import { SessionScheduler } from "../workload/sessions.js";
import type { Session, Workload } from "../workload/types.js";
import type { VirtualDriver } from "../engine/index.js";
import { VirtualTokenizer } from "./tokens.js";

export interface LoadOptions {
  workload: Workload;
  /** requests/s; Infinity = as fast as the concurrency cap allows */
  qps: number;
  arrival: ArrivalKind;
  /** sessions active at once; Infinity = no cap */
  concurrency: number;
  maxRequests: number;
  /** stop starting requests after this many virtual seconds */
  durationS: number;
  seed: number;
  hooks?: FleetHooks | undefined;
}

/** Hooks for callers that run many simulations of one workload (the planner); none changes a run. */
export interface FleetHooks {
  /** the tokenizer to use, so that its cache of prompt ids outlives one run */
  tokenizer?: VirtualTokenizer;
  /** sees each finished request; returning true ends the run there (FleetResult.stoppedEarly) */
  onRecord?: (record: RequestRecord) => boolean;
}

/** A session between its turns. */
export interface Active {
  session: Session;
  round: number;
  /** prompt ids of the last turn plus its answer: the history the next turn carries */
  history: readonly number[];
}

/** One turn on its way to an engine. */
export interface Turn {
  /** the request's number in send order (also its routing seq) */
  index: number;
  active: Active;
  prompt: number[];
  maxTokens: number;
  /** the session's system text, named once per distinct text, so engines hash it once */
  sharedPrefix: { key: string; tokens: number } | undefined;
}

/** What the engine side observed of a turn by the time it finished. */
export interface Answer {
  start: number;
  itl: number[];
  /** the answer's token ids (kept only for sessions that carry history) */
  answer: number[];
}

/** distinct shared prefixes the fleet names to its engines; later ones are hashed per request */
const MAX_PREFIX_KEYS = 4096;

export class LoadDriver {
  readonly records: RequestRecord[] = [];
  /** completion time of the last answer */
  lastEnd = 0;
  /** no more turns will be sent */
  done = false;
  /** the run was ended by the onRecord hook before its load was done */
  stoppedEarly = false;
  private readonly tok: VirtualTokenizer;
  private readonly sessions: SessionScheduler<Active>;
  private readonly gaps: Iterator<number>;
  private readonly prefixKeys = new Map<string, string>();
  private dispatched = 0;
  private waitingForSlot = false;
  private nextAt = 0;

  constructor(
    private readonly o: LoadOptions,
    private readonly driver: VirtualDriver,
    private readonly send: (turn: Turn) => void,
  ) {
    this.tok = o.hooks?.tokenizer ?? new VirtualTokenizer();
    // a replayed trace keeps its own times
    const schedule = o.workload.arrivalGapsS;
    this.gaps = schedule ? scheduledGaps(schedule) : arrivalGaps(o.qps, o.arrival, o.seed);
    this.sessions = new SessionScheduler<Active>(o.workload.sessions, o.concurrency, (session) => ({
      session,
      round: session.startRound ?? 0,
      history: [],
    }));
  }

  start(): void {
    this.gaps.next(); // the first gap is 0
    this.driver.at(0, this.next);
  }

  /** the turn's answer is complete (`ok`: it produced output): record it, schedule the follow-up */
  answered(turn: Turn, ok: boolean, record: RequestRecord, answer: Answer): void {
    this.records.push(record);
    const onRecord = this.o.hooks?.onRecord;
    if (onRecord && !this.stoppedEarly && onRecord(record)) {
      this.stoppedEarly = true;
      this.driver.stop();
    }
    const a = turn.active;
    const forks = ok ? a.session.turns[a.round]!.forks : undefined;
    a.round++;
    const more = ok && a.round < a.session.turns.length;
    // the next turn, and any sub-agent, carries this turn's prompt and its answer
    const context =
      a.session.carriesHistory && (more || forks) ? this.promptOfDone(a).concat(answer.answer) : undefined;
    if (forks)
      for (const f of forks)
        this.sessions.spawn({ session: f, round: f.startRound ?? 0, history: context ?? [] });
    if (more) {
      if (context) a.history = context;
      const pause = a.session.turns[a.round]!.pauseBeforeS ?? 0;
      if (pause > 0) {
        // the tool runs: the turn is ready once it returns
        this.driver.at(this.driver.now + pause, () => {
          this.sessions.followUp(a);
          this.wake();
        });
      } else this.sessions.followUp(a);
    } else this.sessions.finish();
    this.wake();
  }

  /** a turn became ready or a session slot freed: resume sending if the schedule was held */
  private wake(): void {
    if (!this.waitingForSlot) return;
    this.waitingForSlot = false;
    this.driver.at(this.driver.now, this.next);
  }

  private readonly next = (): void => {
    if (this.done) return;
    const d = this.driver;
    if (this.dispatched >= this.o.maxRequests || d.now > this.o.durationS) {
      this.done = true;
      return;
    }
    const item = this.sessions.take();
    if (item === null) {
      if (this.sessions.exhausted) {
        this.done = true;
        return;
      }
      // held by the session cap or by sessions awaiting answers: resume when a request finishes
      this.waitingForSlot = true;
      this.nextAt = Math.max(this.nextAt, d.now);
      return;
    }
    this.send(this.turnOf(item));
    this.nextAt = Math.max(this.nextAt, d.now) + this.gaps.next().value!;
    if (Number.isFinite(this.nextAt)) d.at(this.nextAt, this.next);
    else d.at(d.now, this.next);
  };

  private turnOf(a: Active): Turn {
    const index = this.dispatched++;
    const prompt = this.promptOf(a);
    const system = a.session.system;
    const prefixKey = system !== null ? this.prefixKeyOf(system) : undefined;
    return {
      index,
      active: a,
      prompt,
      maxTokens: a.session.turns[a.round]!.maxTokens,
      sharedPrefix:
        prefixKey !== undefined ? { key: prefixKey, tokens: this.tok.encode(system!).length } : undefined,
    };
  }

  private promptOf(a: Active): number[] {
    const s = a.session;
    const turn = this.tok.encode(s.turns[a.round]!.text);
    // a session's first turn (a fork's carries its parent's context as its history)
    if (!s.carriesHistory || a.history.length === 0)
      return s.system !== null ? this.tok.encode(s.system).concat(turn) : turn.slice();
    return a.history.concat(turn);
  }

  /** the prompt of a finished turn is rebuilt rather than kept per request (prompts can be large) */
  private promptOfDone(a: Active): number[] {
    return this.promptOf({ ...a, round: a.round - 1 });
  }

  /** the system text of a session names its shared prefix to the engine (EngineRequest.sharedPrefix) */
  private prefixKeyOf(system: string): string | undefined {
    let k = this.prefixKeys.get(system);
    if (k === undefined && this.prefixKeys.size < MAX_PREFIX_KEYS) {
      k = `s${this.prefixKeys.size}`;
      this.prefixKeys.set(system, k);
    }
    return k;
  }
}
