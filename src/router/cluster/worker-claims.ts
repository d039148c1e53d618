// A router worker's side of the data plane's SlotClaims (../dataplane/slot-claims.ts): its load-aware
// picks become claims the primary confirms (claims.ts), and what the word sets off happens here, so a
// lone router's data plane never carries it. A pick that stands releases the attempt's held answer; a
// refused one is let go of (its claim, its slot, the policy's memory of it) and decided again at once:
// picked again, its engine keeps the request it already has; otherwise the attempt is taken back
// unseen (it ends as `unclaimed`) and the next one goes to the new pick. A pick that must stand before
// its request goes out (P/D's prefill step) waits for the word instead, and is decided again until one
// stands. Wired in ../cli.ts, when the worker links to its primary.
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { ClaimingRequest, PickHost, SlotClaims } from "../dataplane/slot-claims.js";
import type { ClaimArbiter, ClaimHolder } from "./claims.js";

/** The group's word on a pick that waits for it before its request goes out (standing). */
class AwaitedWord implements ClaimHolder {
  claim = 0;
  private say!: (stood: boolean) => void;
  readonly stood = new Promise<boolean>((resolve) => (this.say = resolve));

  takeBack(): boolean {
    this.say(false);
    return true;
  }

  stands(): void {
    this.say(true);
  }
}

/** A request's claimed pick: the word goes to the request's attempt (its answer is held meanwhile). */
class RequestClaim<R extends ClaimingRequest> implements ClaimHolder {
  claim = 0;
  req: R | undefined;
  constructor(private readonly owner: WorkerSlotClaims<R>) {}

  takeBack(): boolean {
    return this.owner.refused(this.req!);
  }

  stands(): void {
    this.owner.stood(this.req!);
  }
}

export class WorkerSlotClaims<R extends ClaimingRequest> implements SlotClaims<R> {
  /** the holder of the last pick that needed no claim, for the next (round-robin claims nothing) */
  private spare: RequestClaim<R> | undefined;

  constructor(
    private readonly claims: ClaimArbiter,
    private readonly registry: EngineRegistry,
    private readonly host: PickHost<R>,
  ) {}

  take(e: EngineRecord, req: R, _now: number, word?: object): void {
    if (word instanceof AwaitedWord) return this.claims.take(e, word);
    const h = this.spare ?? new RequestClaim(this);
    h.req = req;
    this.claims.take(e, h);
    if (h.claim === 0) {
      h.req = undefined;
      this.spare = h;
      return;
    }
    this.spare = undefined;
    req.claim = h.claim;
  }

  free(e: EngineRecord, req: R, answered: boolean): void {
    if (req.claim !== 0) {
      this.claims.withdraw(req.claim);
      req.claim = 0;
    }
    this.registry.freeSlot(e, answered);
  }

  standing(req: R): Promise<EngineRecord> {
    return this.untilStanding(req);
  }

  private async untilStanding(req: R): Promise<EngineRecord> {
    for (;;) {
      const word = new AwaitedWord();
      const got = this.host.acquire(req, word);
      const e = got instanceof Promise ? await got : got;
      if (word.claim === 0 || (await word.stood)) return e;
      this.claims.withdraw(word.claim);
      this.host.unpick(req, e);
    }
  }

  /** The pick stands: the attempt's held answer goes out, and the rest as it comes. */
  stood(req: R): void {
    req.claim = 0;
    req.current?.release();
  }

  /**
   * The group refused the pick of the request's attempt, whose answer is held: the request is decided
   * again at once, as if that pick had not been made (its claim and slot let go of, the policy's memory
   * of it taken back). The same engine keeps the request it already has, claimed anew; another engine
   * gets the next attempt, and this one is cancelled unseen. False when it can no longer be taken back,
   * or its engine's whole answer is already held (it stands).
   */
  refused(req: R): boolean {
    const att = req.current;
    // an engine that already answered in full did the work: sending it again elsewhere only doubles
    // it (and aborting the finished exchange cost the engine's connection), so the pick stands
    if (!att?.retractable || att.answeredInFull) return false;
    const e = att.engine;
    this.host.unpick(req, e);
    let next: EngineRecord | Promise<EngineRecord> | undefined;
    try {
      next = this.host.acquire(req);
    } catch {
      // no engine now (or a refusal): the attempts loop decides again and answers what it meets
    }
    if (next === e) {
      // picked without a claim (the worker's refusals ran out): it stands
      if (req.claim === 0) att.release();
      return true;
    }
    req.repicked = next;
    att.takeBack();
    return true;
  }
}
