// Exact routing across router workers. Each worker decides on its own copy of the group's in-flight
// counts, which the others' reports keep current within about a millisecond; two workers deciding in
// that millisecond would each miss the other's last picks and could both pick the same engine
// (measured: 1 burst in 5 of 8 simultaneous requests over 4 engines came out 3/2/2/1 instead of 2/2/2/2).
// So a pick of a load-aware policy is a claim: the worker sends its own counts and the others' on the
// engine it picked as it saw them, and waits; the primary applies claims one at a time, confirms one
// made on counts no lower than the current ones, and answers any other with the current counts, on
// which the worker decides again. A pick never stands without counting every other pick that stood
// before it on its engine. Picks elsewhere need no check when the policy prices each engine by its own
// view (Policy.loadElsewhereKeepsPick: least-load, the cache-aware policies): load added to another
// engine only makes that one costlier, and the pick stands as it would have with it counted (checking
// every engine refused picks that another worker's pick elsewhere could not have changed, and sent
// every engine's counts with each claim). Session's bounded load reads the fleet's total, so its
// claims carry and are checked on every engine. A count that only fell (another process's request
// finished or got its first token) is news the worker learns a moment late, as a single process learns
// it only when it reads the engine's answer. Refusing those too (equal counts only) refused 31% of
// claims instead of 18% and raised mean TTFT by a tenth (bench/routing-scale.ts's workload, two
// workers, six interleaved rounds). Round-robin reads no load and claims nothing.
//
// Claims leave at once when none is out; while some are out, those made in one turn of the event
// loop leave together at its end, so a busy worker sends one message per turn, not one per request,
// and no claim waits for another's answer (waiting for the batch out cost such a claim a second round
// trip). A claim decided while an earlier one of this worker's was out counted that pick as its own;
// if the earlier one is refused, the later one read one request too many on that engine, never one
// too few, so it is judged on its own like any other.
//
// What a claim costs is its wait for the answer (`switchyard_routing_claim_wait_seconds`), and that is
// mostly this worker's own event loop being busy when the answer arrives, not the primary: hence
// long prompts are tokenised one slice per turn of the loop (src/tokenizer/turns.ts).
import { logger } from "../../obs/log.js";
import { noteSent, type Policy } from "../../routing/index.js";
import type { Registry, SlotArbiter, Upstream } from "../registry.js";
import type { ClaimItem, LoadCounts, ToPrimary } from "./protocol.js";
import type { SharedLoad } from "./shared-load.js";
import type { PickExchange } from "./picks.js";

const log = logger("router.worker");

/** a batch unanswered this long stands (the primary is gone or stuck: routing goes on) */
const CLAIM_TIMEOUT_MS = 2_000;
/** refusals in a row after which the next pick stands unconfirmed (a safety valve: never seen) */
const MAX_RETRIES = 8;

interface Waiting extends ClaimItem {
  /** when the pick was made (performance.now()) */
  at: number;
  settle: (ok: boolean) => void;
}

/** one message of claims: its claims still unanswered, and the timer that lets them stand */
interface Batch {
  left: number;
  timer: NodeJS.Timeout;
}

export class Claims implements SlotArbiter {
  private seq = 0;
  private queued: Waiting[] = [];
  /** claims sent and not answered yet, each with its batch */
  private readonly out = new Map<number, { w: Waiting; batch: Batch }>();
  private flushAtTurnEnd: NodeJS.Immediate | undefined;
  private retries = 0;
  /** the last claim whose answer this worker has heard (every report says it: ledger.ts) */
  acked = 0;

  constructor(
    private readonly registry: Registry,
    private readonly load: SharedLoad,
    private readonly picks: PickExchange,
    private readonly send: (m: ToPrimary) => void,
    /** false for a policy that reads no load (round-robin): nothing to claim */
    private readonly loadAware: () => boolean,
    /** the policy deciding now (which engines' counts its pick depends on) */
    private readonly policy: () => Policy,
    /** a claim answered: its result and how long it waited (`switchyard_routing_claims_total`, `_claim_wait_seconds`) */
    private readonly counted: (result: "confirmed" | "refused" | "unconfirmed", waitedS: number) => void,
  ) {}

  confirm(e: Upstream, decideAgain: () => Upstream | Promise<Upstream>): Upstream | Promise<Upstream> {
    const reg = this.registry;
    if (!this.loadAware() || this.retries >= MAX_RETRIES) {
      this.retries = 0;
      reg.takeSlot(e);
      return e;
    }
    const seen: LoadCounts[] = [];
    if (this.policy().loadElsewhereKeepsPick === true) seen.push(this.load.othersRow(e.url));
    else for (const v of reg.snapshot()) seen.push(this.load.othersRow(v.id));
    // what the decision learned (prefix blocks, predicted hits) is learned only if the pick stands
    const learned = this.picks.takeHeld();
    // held here while the primary decides: this worker's next picks count it, its reports do not
    const sentBefore = e.view.lastSentAt;
    const sentAt = performance.now();
    noteSent(e.view, sentAt);
    this.load.holdTentative(e.url, 1);
    const id = ++this.seq;
    return new Promise<Upstream>((resolve) => {
      const settle = (ok: boolean) => {
        this.load.holdTentative(e.url, -1);
        if (ok) {
          // it is this worker's own now: its next report counts it (and says so with `acked`)
          this.retries = 0;
          this.picks.commit(learned);
          return resolve(e);
        }
        // the counts the decision read were stale; the fresh ones arrived before this answer
        // (never sent: as if not picked, the engine's last answer time untouched)
        e.view.inFlight--;
        if (e.view.awaitingFirstToken) e.view.awaitingFirstToken--;
        if (e.view.lastSentAt === sentAt) e.view.lastSentAt = sentBefore;
        reg.maybeFinishDrain(e);
        this.retries++;
        resolve(decideAgain());
      };
      this.queued.push({ id, pick: e.url, seen, at: sentAt, settle });
      if (this.out.size === 0) this.sendBatch();
      else
        this.flushAtTurnEnd ??= setImmediate(() => {
          this.flushAtTurnEnd = undefined;
          if (this.queued.length > 0) this.sendBatch();
        });
    });
  }

  private sendBatch(): void {
    const batch = this.queued;
    this.queued = [];
    const b: Batch = {
      left: batch.length,
      timer: setTimeout(() => {
        log.warn("routing claims got no answer from the primary; the picks stand");
        this.answer(
          batch.map((w) => [w.id, true]),
          true,
        );
      }, CLAIM_TIMEOUT_MS),
    };
    for (const w of batch) this.out.set(w.id, { w, batch: b });
    // this worker's own counts, its claims out left out: the primary applies them first
    const own: LoadCounts[] = [];
    for (const e of this.registry.engines.values()) own.push(this.load.report(e));
    this.send({
      t: "claims",
      own,
      acked: this.acked,
      items: batch.map(({ id, pick, seen }) => ({ id, pick, seen })),
    });
  }

  /**
   * The primary's answers to a batch (fresh counts for refused ones came just before). Batches are
   * answered in the order sent; a late answer to one that timed out (its picks stood) is ignored.
   */
  answer(results: readonly [id: number, ok: boolean][], unanswered = false): void {
    const now = performance.now();
    for (const [id, ok] of results) {
      const o = this.out.get(id);
      if (!o) continue;
      this.out.delete(id);
      if (--o.batch.left === 0) clearTimeout(o.batch.timer);
      if (id > this.acked) this.acked = id;
      this.counted(unanswered ? "unconfirmed" : ok ? "confirmed" : "refused", (now - o.w.at) / 1000);
      o.w.settle(ok);
    }
    // decided meanwhile (a refused request decided again is among them): out now, not at turn end
    if (this.queued.length > 0 && this.out.size === 0) this.sendBatch();
  }

  close(): void {
    if (this.flushAtTurnEnd) clearImmediate(this.flushAtTurnEnd);
    this.flushAtTurnEnd = undefined;
    const all: Waiting[] = [];
    for (const o of this.out.values()) {
      clearTimeout(o.batch.timer);
      all.push(o.w);
    }
    all.push(...this.queued);
    this.out.clear();
    this.queued = [];
    for (const w of all) w.settle(true);
  }
}
