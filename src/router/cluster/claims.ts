// Claims: across router workers, a load-aware pick stands only once the primary has checked that it
// counted every other pick that stood on its engine. Each worker decides on its own copy of the group's
// counts, which lag the others' picks by about a millisecond, so two workers deciding at once could both
// pick the same engine. The request goes to its engine at once and its answer is held until the pick
// stands; a refused pick is decided again (worker-claims.ts). What is checked, how claims are batched
// and the measurements behind both: this folder's README.md, "Claims".
import { logger } from "../../obs/log.js";
import { noteSent, type Policy } from "../../routing/index.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { ClaimItem, LoadCounts, ToPrimary } from "./protocol.js";
import type { SharedLoad } from "./shared-load.js";
import type { PickExchange } from "./picks.js";

const log = logger("router.worker");

/** a batch unanswered this long stands (the primary is gone or stuck: routing goes on) */
const CLAIM_TIMEOUT_MS = 2_000;
/** refusals in a row after which the next pick stands unconfirmed (a safety valve: never seen) */
const MAX_RETRIES = 8;

/** Whose pick awaits the word: told once whether it stands (worker-claims.ts's holders, a test's). */
export interface ClaimHolder {
  /** the claim its pick awaits the word on (set by take); 0 when the pick needed none */
  claim: number;
  /** the pick was refused: whether it was taken back (it then lets go of its claim and slot and decides again) */
  takeBack(): boolean;
  /** the pick stands (confirmed, unanswered in time, or refused too late to take back) */
  stands(): void;
}

/** The claims' side worker-claims.ts uses (Claims; a test stands in for the primary's word with its own). */
export interface ClaimArbiter {
  /** Takes a slot on `e` for the holder's pick; one that awaits the group's word sets `holder.claim`. */
  take(e: EngineRecord, holder: ClaimHolder): void;
  /** The holder let go of claim `id` (its slot is freed: the request ended or was taken back). */
  withdraw(id: number): void;
}

interface Waiting extends ClaimItem {
  /** when the pick was made (performance.now()) */
  at: number;
  holder: ClaimHolder;
  /** what the decision learned (prefix blocks, predicted hits): learned by the group if the pick stands */
  learned: ReturnType<PickExchange["takeHeld"]>;
}

/** one message of claims: its claims still unanswered, and the timer that lets them stand */
interface Batch {
  left: number;
  timer: NodeJS.Timeout;
}

export class Claims implements ClaimArbiter {
  private seq = 0;
  private queued: Waiting[] = [];
  /** claims sent and not answered yet, each with its batch */
  private readonly out = new Map<number, { w: Waiting; batch: Batch }>();
  /**
   * claim → engine: picks counted here and left out of this worker's reports, until they stand or
   * their holder lets go (one per request in flight at most)
   */
  private readonly held = new Map<number, string>();
  private flushAtTurnEnd: NodeJS.Immediate | undefined;
  private retries = 0;
  /** the last claim whose answer this worker has heard (every report says it: ledger.ts) */
  acked = 0;

  constructor(
    private readonly registry: EngineRegistry,
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

  take(e: EngineRecord, holder: ClaimHolder): void {
    const reg = this.registry;
    holder.claim = 0;
    if (!this.loadAware() || this.retries >= MAX_RETRIES) {
      this.retries = 0;
      reg.takeSlot(e);
      return;
    }
    const seen: LoadCounts[] = [];
    if (this.policy().loadElsewhereKeepsPick === true) seen.push(this.load.othersRow(e.url));
    else for (const v of reg.snapshot()) seen.push(this.load.othersRow(v.id));
    const learned = this.picks.takeHeld();
    // counted here at once (this worker's next picks count it), reported only once it stands
    const at = performance.now();
    noteSent(e.view, at);
    this.load.holdTentative(e.url, 1);
    const id = ++this.seq;
    this.held.set(id, e.url);
    holder.claim = id;
    this.queued.push({ id, pick: e.url, seen, at, holder, learned });
    if (this.out.size === 0) this.sendBatch();
    else
      this.flushAtTurnEnd ??= setImmediate(() => {
        this.flushAtTurnEnd = undefined;
        if (this.queued.length > 0) this.sendBatch();
      });
  }

  withdraw(id: number): void {
    this.unhold(id);
  }

  /** the pick is this worker's own now, or gone: its next report counts it as it is */
  private unhold(id: number): void {
    const url = this.held.get(id);
    if (url === undefined) return;
    this.held.delete(id);
    this.load.holdTentative(url, -1);
  }

  private settle(w: Waiting, ok: boolean): void {
    // refused: the counts the decision read were stale (the fresh ones arrived before this answer);
    // the holder lets go of the claim with its slot (withdraw) and decides again
    if (!ok) {
      this.retries++;
      if (w.holder.takeBack()) return;
    }
    // it stands: out of the hold before its answer can move a count (the holder's release relays it)
    this.unhold(w.id);
    this.retries = 0;
    this.picks.commit(w.learned);
    w.holder.stands();
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
      // a request that ended meanwhile (failed, or its client left) let go of its claim: moot
      if (this.held.has(id)) this.settle(o.w, ok);
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
    for (const w of all) if (this.held.has(w.id)) this.settle(w, true);
  }
}
