// Exact routing across router workers. Each worker decides on its own copy of the group's in-flight
// counts, which the others' reports keep current within about a millisecond; two workers deciding in
// that millisecond would each miss the other's last picks and could both pick the same engine
// (measured: 1 burst in 5 of 8 simultaneous requests over 4 engines came out 3/2/2/1 instead of 2/2/2/2).
// So a pick of a load-aware policy is a claim: the worker sends its own counts and the others' as it
// saw them, and waits; the primary applies claims one at a time, confirms one made on counts no
// lower than the current ones, and answers any other with the current counts, on which the worker
// decides again. A pick never stands without counting every other pick that stood before it; a
// count that only fell (another process's request finished or got its first token) is news the
// worker learns a moment late, as a single process learns it only when it reads the engine's answer.
// Refusing those too (equal counts only) refused 31% of claims instead of 18% and raised mean TTFT
// by a tenth (bench/routing-scale.ts's workload, two workers, six interleaved rounds). Round-robin
// reads no load and claims nothing.
//
// A worker has one batch of claims out at a time: a claim made while one is out waits for its
// answer and leaves with the others made meanwhile, so a busy worker sends one message per round
// trip, not one per request. A claim after a refused one in the same batch is refused too (it was
// decided counting the refused pick as this worker's).
import { logger } from "../../obs/log.js";
import { noteSent } from "../../routing/index.js";
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
  settle: (ok: boolean) => void;
}

export class Claims implements SlotArbiter {
  private seq = 0;
  private queued: Waiting[] = [];
  private out: Map<number, Waiting> | undefined;
  private outTimer: NodeJS.Timeout | undefined;
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
    /** claims answered, by result (`switchyard_routing_claims_total`) */
    private readonly counted: (result: "confirmed" | "refused" | "unconfirmed", n: number) => void,
  ) {}

  confirm(e: Upstream, decideAgain: () => Upstream | Promise<Upstream>): Upstream | Promise<Upstream> {
    const reg = this.registry;
    if (!this.loadAware() || this.retries >= MAX_RETRIES) {
      this.retries = 0;
      reg.takeSlot(e);
      return e;
    }
    const seen: LoadCounts[] = [];
    for (const v of reg.snapshot()) seen.push(this.load.othersRow(v.id));
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
      this.queued.push({ id, pick: e.url, seen, settle });
      if (!this.out) this.sendBatch();
    });
  }

  private sendBatch(): void {
    const batch = this.queued;
    this.queued = [];
    this.out = new Map(batch.map((w) => [w.id, w]));
    // this worker's own counts, its claims out left out: the primary applies them first
    const own: LoadCounts[] = [];
    for (const e of this.registry.engines.values()) own.push(this.load.report(e));
    this.send({
      t: "claims",
      own,
      acked: this.acked,
      items: batch.map(({ id, pick, seen }) => ({ id, pick, seen })),
    });
    this.outTimer = setTimeout(() => {
      log.warn("routing claims got no answer from the primary; the picks stand");
      this.answer(
        batch.map((w) => [w.id, true]),
        true,
      );
    }, CLAIM_TIMEOUT_MS);
  }

  /** The primary's answers to the batch out (fresh counts for refused ones came just before). */
  answer(results: readonly [id: number, ok: boolean][], unanswered = false): void {
    const out = this.out;
    // a late answer to a batch that timed out (its picks stood): the batch out now is another
    if (!out || !results.some(([id]) => out.has(id))) return;
    clearTimeout(this.outTimer);
    this.out = undefined;
    for (const [id, ok] of results) {
      const w = out.get(id);
      if (!w) continue;
      if (id > this.acked) this.acked = id;
      this.counted(unanswered ? "unconfirmed" : ok ? "confirmed" : "refused", 1);
      w.settle(ok);
    }
    // decided meanwhile (a refused request decided again is among them): the next batch
    if (this.queued.length > 0 && !this.out) this.sendBatch();
  }

  close(): void {
    clearTimeout(this.outTimer);
    const all = [...(this.out?.values() ?? []), ...this.queued];
    this.out = undefined;
    this.queued = [];
    for (const w of all) w.settle(true);
  }
}
