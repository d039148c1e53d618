// Exact routing across router workers. Each worker decides on its own copy of the group's in-flight
// counts, which the others' reports keep current within about a millisecond; two workers deciding in
// that millisecond would each see the other's last picks missing and could both pick the same engine
// (measured: 1 burst in 5 of 8 simultaneous requests over 4 engines came out 3/2/2/1 instead of 2/2/2/2).
// So a pick of a load-aware policy is a claim: the worker sends its own counts and the others' as it
// saw them, and waits; the primary applies claims one at a time, confirms one made on the exact
// counts, and answers any other with the current counts, on which the worker decides again. Picks
// are then those of one process deciding the requests in the order the primary saw them. Round-robin
// reads no load and claims nothing. A claim costs one IPC round trip before the request is sent.
import { logger } from "../../obs/log.js";
import type { Registry, SlotArbiter, Upstream } from "../registry.js";
import type { LoadCounts, ToPrimary } from "./protocol.js";
import type { SharedLoad } from "./shared-load.js";
import type { PickExchange } from "./picks.js";

const log = logger("router.worker");

/** a claim unanswered this long stands (the primary is gone or stuck: routing goes on) */
const CLAIM_TIMEOUT_MS = 2_000;
/** refusals in a row after which the next pick stands unconfirmed (a safety valve: never seen) */
const MAX_RETRIES = 8;

interface Waiting {
  settle: (ok: boolean) => void;
  timer: NodeJS.Timeout;
}

export class Claims implements SlotArbiter {
  private seq = 0;
  private readonly waiting = new Map<number, Waiting>();
  private retries = 0;
  /** the last claim whose answer this worker has heard (every report says it: ledger.ts) */
  acked = 0;
  /** confirmed and refused claims, for tests and /metrics readers */
  readonly stats = { confirmed: 0, refused: 0, unconfirmed: 0 };

  constructor(
    private readonly registry: Registry,
    private readonly load: SharedLoad,
    private readonly picks: PickExchange,
    private readonly send: (m: ToPrimary) => void,
    /** false for a policy that reads no load (round-robin): nothing to claim */
    private readonly loadAware: () => boolean,
  ) {}

  confirm(e: Upstream, decideAgain: () => Upstream | Promise<Upstream>): Upstream | Promise<Upstream> {
    const reg = this.registry;
    if (!this.loadAware() || this.retries >= MAX_RETRIES) {
      this.retries = 0;
      reg.takeSlot(e);
      return e;
    }
    const own: LoadCounts[] = [];
    const seen: [string, number][] = [];
    for (const v of reg.snapshot()) {
      const u = reg.engines.get(v.id);
      if (!u) continue;
      own.push(this.load.report(u));
      seen.push([u.url, this.load.others(u.url)]);
    }
    // what the decision learned (prefix blocks, predicted hits) is learned only if the pick stands
    const learned = this.picks.takeHeld();
    // held here while the primary decides: this worker's next picks count it, its reports do not
    e.view.inFlight++;
    this.load.holdTentative(e.url, 1);
    const id = ++this.seq;
    this.send({ t: "claim", id, pick: e.url, own, seen, acked: this.acked });
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
        e.view.inFlight--;
        reg.maybeFinishDrain(e);
        this.retries++;
        resolve(decideAgain());
      };
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        if (id > this.acked) this.acked = id;
        this.stats.unconfirmed++;
        log.warn("a routing claim got no answer from the primary; the pick stands");
        settle(true);
      }, CLAIM_TIMEOUT_MS);
      this.waiting.set(id, { settle, timer });
    });
  }

  /** The primary's answer to claim `id`. */
  answer(id: number, ok: boolean): void {
    if (id > this.acked) this.acked = id;
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    if (ok) this.stats.confirmed++;
    else this.stats.refused++;
    w.settle(ok);
  }

  close(): void {
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.settle(true);
    }
    this.waiting.clear();
  }
}
