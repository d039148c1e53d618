// Router workers confirm load-aware picks with the process group's primary (src/router/cluster/claims.ts).
// This is the data plane's side of it: what the registry's arbiter is asked, and what a request whose
// pick awaits the word is told.

/**
 * Router workers: a load-aware pick is a claim the process group's primary confirms once it knows the
 * pick was made on the group's exact in-flight counts (src/router/cluster/claims.ts). The request goes
 * out at once; what its engine answers is held until the word comes. A refused pick is decided again
 * on the counts the primary sent back (the request stays where it is if its engine is picked again).
 * `E` is the registry's record of an
 * engine (registry.ts's Upstream: a type parameter, so that this file and the registry's do not
 * import each other).
 */
export interface SlotArbiter<E> {
  /** Takes a slot on `e` for the holder's request; a pick that awaits the group's word sets `holder.claim`. */
  take(e: E, holder: ClaimHolder): void;
  /** The holder let go of claim `id` (its slot is freed: the request ended or was taken back). */
  withdraw(id: number): void;
}

/** A request whose pick may await the group's word (SlotArbiter). */
export interface ClaimHolder {
  /** the claim its pick awaits the word on; 0 when none */
  claim: number;
  /** the pick was refused: whether the request was taken back (it then frees its slot and is decided again) */
  takeBack(): boolean;
  /** the pick stands (confirmed, unanswered in time, or refused too late to take back) */
  stands(): void;
}

/** The group's word on a pick that waits for it before its request goes out (acquireStanding). */
export class AwaitedWord implements ClaimHolder {
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
