// The routing decisions a router group learns from together: each pick the cache-aware policies make
// inserts the request's prefix blocks into the approximate prefix index (and, when the engine is
// routed by its KV events, adds a prediction to the silent-miss watchdog). A worker or replica that
// learned only from its own picks would send a returning conversation to an engine at random — the
// index must learn every pick of the group. Local picks are collected here and sent with the next
// report; others' are applied without being sent on again.
//
// A router worker holds its picks back until they stand (claims.ts): a pick the primary refused
// (decided on stale counts, then decided again) is never learned, here or by the others, just as a
// lone router never makes it.
import type { PrefixIndex } from "../../routing/index.js";
import type { HitWatchdog } from "../kv/watchdog.js";
import type { Pick } from "./protocol.js";

/** Picks one batch may carry; beyond, the oldest of the batch are dropped (the index is a cache). */
const MAX_PICKS_PER_BATCH = 4096;
/** Block ids one pick may carry (the index looks at no more than 4096 per request either). */
const MAX_IDS_PER_PICK = 4096;

export interface PickTargets {
  prefix: PrefixIndex;
  watchdog: HitWatchdog;
}

export class PickExchange {
  /** learned here, to send */
  private outgoing: Pick[] = [];
  /** made by the decision in progress, not learned yet (hold mode) */
  private held: Pick[] = [];

  constructor(
    private readonly targets: PickTargets,
    /** called when the first pick of a batch is ready to send (schedule a report) */
    private readonly onPending: () => void,
    /** hold picks until `commit` (router workers) instead of learning them at once */
    private readonly hold = false,
  ) {
    targets.prefix.onInsert = (ids, engine) => this.add([engine, ids, 0]);
    targets.watchdog.onPredicted = (engine, tokens) => {
      // onPicked inserts first, then predicts: the same pick
      const list = this.hold ? this.held : this.outgoing;
      const last = list.at(-1);
      if (last && last[0] === engine && last[2] === 0) {
        last[2] = tokens;
        if (!this.hold) targets.watchdog.predictedFrom(engine, tokens);
        return true;
      }
      return this.add([engine, [], tokens]);
    };
  }

  /** true: the index (or watchdog) does not learn it now — it is held, and learned at `commit` */
  private add(p: Pick): boolean {
    if (this.hold) {
      this.held.push(p);
      return true;
    }
    this.queue(p);
    return false;
  }

  private queue(p: Pick): void {
    if (this.outgoing.length === 0) this.onPending();
    if (this.outgoing.length >= MAX_PICKS_PER_BATCH) this.outgoing.shift();
    this.outgoing.push(p);
  }

  /** The picks of the decision just made (hold mode): to commit once it stands, or drop. */
  takeHeld(): Pick[] {
    const h = this.held;
    if (h.length > 0) this.held = [];
    return h;
  }

  /** Learns held picks here and sends them to the others. */
  commit(picks: readonly Pick[]): void {
    for (const p of picks) {
      this.learn(p);
      this.queue(p);
    }
  }

  private learn(p: Pick): void {
    const [engine, ids, tokens] = p;
    if (ids.length > 0)
      this.targets.prefix.insertFrom(
        ids.length > MAX_IDS_PER_PICK ? ids.slice(0, MAX_IDS_PER_PICK) : ids,
        engine,
      );
    if (tokens > 0) this.targets.watchdog.predictedFrom(engine, tokens);
  }

  /** The picks made here since the last call. */
  take(): Pick[] {
    const out = this.outgoing;
    this.outgoing = [];
    return out;
  }

  /** Learns others' picks (never sent on again). */
  apply(picks: readonly Pick[]): void {
    let n = 0;
    for (const p of picks) {
      if (++n > MAX_PICKS_PER_BATCH) break;
      this.learn(p);
    }
  }

  close(): void {
    this.targets.prefix.onInsert = undefined;
    this.targets.watchdog.onPredicted = undefined;
  }
}
