// The one door between the data plane and whoever confirms its picks. A lone router's picks stand as
// they are made, so its door (LoneSlotClaims) is the registry's slot operations and nothing else: no
// promise, no awaited word, no pick taken back. A router worker's picks are confirmed by the process
// group's primary; that implementation, with everything a refused pick sets off, lives with the rest
// of the group's machinery in ../cluster/worker-claims.ts, and is chosen when the worker is wired
// (../cli.ts). The data plane only calls this interface and never learns which one it holds.
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";

/** What the claims side reads and sets of a request whose pick it confirms (RequestContext). */
export interface ClaimingRequest {
  /** the claim its pick awaits the word on; 0 when none. While not 0, its attempt holds the engine's answer */
  claim: number;
  /** the attempt in flight on the pick */
  readonly current: HeldAttempt | undefined;
  /** the engine its next attempt goes to, picked when the group refused the last one's pick */
  repicked: EngineRecord | Promise<EngineRecord> | undefined;
}

/** An attempt whose engine's answer is held while its pick awaits the word (attempt.ts). */
export interface HeldAttempt {
  readonly engine: EngineRecord;
  /** its answer is still held and its body can be sent again */
  readonly retractable: boolean;
  /** the engine's whole answer is held: its work is done, and taking it back would throw that away */
  readonly answeredInFull: boolean;
  /** taken off its engine unseen: it ends as `unclaimed`, and the request goes to `repicked` */
  takeBack(): void;
  /** the pick stands: the held answer goes out */
  release(): void;
}

/** The data plane's own steps a claims implementation calls back (a refused pick is decided again). */
export interface PickHost<R> {
  /**
   * Decides the request's engine and takes a slot on it (through SlotClaims.take, passing `word` on);
   * throws the data plane's HttpError where no engine can take it.
   */
  acquire(req: R, word?: object): EngineRecord | Promise<EngineRecord>;
  /** A pick let go of: its slot freed (SlotClaims.free) and the policy's memory of it taken back. */
  unpick(req: R, e: EngineRecord): void;
}

/** What the data plane asks of whoever confirms its picks. */
export interface SlotClaims<R extends ClaimingRequest = ClaimingRequest> {
  /**
   * Takes a slot on `e`, the policy's pick for `req`. A pick that must await a word gets a claim
   * (`req.claim` set, or the claim of `word`, a token of the implementation's own made in `standing`);
   * the word comes later, and a refused pick is decided again through the PickHost. Synchronous.
   */
  take(e: EngineRecord, req: R, now: number, word?: object): void;
  /**
   * The request is done with its slot on `e` (its attempt ended, or its pick is let go of): a claim
   * still out is withdrawn and the slot freed. `answered`: its first token had come back.
   */
  free(e: EngineRecord, req: R, answered: boolean): void;
  /**
   * A pick that stands before its request goes out (P/D's prefill step, whose answer is not held):
   * with a word to wait for, a promise of the engine once the pick stands.
   */
  standing(req: R): EngineRecord | Promise<EngineRecord>;
}

/** Makes the claims of a data plane, given its PickHost (at wiring: ../cli.ts). */
export type SlotClaimsFactory = <R extends ClaimingRequest>(host: PickHost<R>) => SlotClaims<R>;

/** A lone router: every pick stands as it is made; the registry's slots, nothing else. */
export class LoneSlotClaims<R extends ClaimingRequest> implements SlotClaims<R> {
  constructor(
    private readonly registry: EngineRegistry,
    private readonly host: PickHost<R>,
  ) {}

  take(e: EngineRecord, _req: R, now: number): void {
    this.registry.takeSlot(e, now);
  }

  free(e: EngineRecord, _req: R, answered: boolean): void {
    this.registry.freeSlot(e, answered);
  }

  standing(req: R): EngineRecord | Promise<EngineRecord> {
    return this.host.acquire(req);
  }
}
