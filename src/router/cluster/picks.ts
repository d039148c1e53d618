// The routing decisions a router group learns from together: each pick the cache-aware policies make
// inserts the request's prefix blocks into the approximate prefix index (and, when the engine is
// routed by its KV events, adds a prediction to the silent-miss watchdog). A worker or replica that
// learned only from its own picks would send a returning conversation to an engine at random — the
// index must learn every pick of the group. Local picks are collected here and sent once per
// event-loop turn (or per peer interval); others' are applied without being sent on again.
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
  private pending: Pick[] = [];
  /** watchdog predictions wait for the prefix insert of the same pick (CacheRouting makes both) */
  private lastInsert: Pick | undefined;

  constructor(
    private readonly targets: PickTargets,
    /** called when the first pick of a batch arrives (schedule a flush) */
    private readonly onPending: () => void,
  ) {
    targets.prefix.onInsert = (ids, engine) => this.add([engine, ids, 0]);
    targets.watchdog.onPredicted = (engine, tokens) => {
      // onPicked inserts first, then predicts: the same pick
      const last = this.lastInsert;
      if (last && last[0] === engine && last[2] === 0) last[2] = tokens;
      else this.add([engine, [], tokens]);
    };
  }

  private add(p: Pick): void {
    if (this.pending.length === 0) this.onPending();
    if (this.pending.length >= MAX_PICKS_PER_BATCH) this.pending.shift();
    this.pending.push(p);
    this.lastInsert = p;
  }

  /** The picks made here since the last call. */
  take(): Pick[] {
    const out = this.pending;
    this.pending = [];
    this.lastInsert = undefined;
    return out;
  }

  /** Learns others' picks (never sent on again). */
  apply(picks: readonly Pick[]): void {
    const { prefix, watchdog } = this.targets;
    let n = 0;
    for (const p of picks) {
      if (++n > MAX_PICKS_PER_BATCH) break;
      const [engine, ids, tokens] = p;
      if (ids.length > 0)
        prefix.insertFrom(ids.length > MAX_IDS_PER_PICK ? ids.slice(0, MAX_IDS_PER_PICK) : ids, engine);
      if (tokens > 0) watchdog.predictedFrom(engine, tokens);
    }
  }

  close(): void {
    this.targets.prefix.onInsert = undefined;
    this.targets.watchdog.onPredicted = undefined;
  }
}
