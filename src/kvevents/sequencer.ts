// One publisher's batches, put back in order: what a subscriber does with the (seq, payload) frames of
// one engine, whichever socket they came in on. Batches are delivered in sequence order exactly once;
// missing seqs are fetched through the engine's replay socket when it has one; what cannot be
// recovered is reported as a gap, and a seq going backwards as a restart. A KvEventSubscriber runs one
// of these behind its SUB socket; a KvEventCollector runs one per engine behind its single bound socket.
import type { Logger } from "pino";
import type { CurveClient } from "./curve.js";
import { decodeBatch, DecodeError, type DecodeStats } from "./codec.js";
import type { KvEventBatch } from "./events.js";
import { ReplayClient } from "./replay.js";
import { zmqGuardCounts } from "./zmq-guard.js";

export interface StreamCallbacks {
  /** batches, in seq order, each exactly once */
  onBatch: (seq: number, batch: KvEventBatch) => void;
  /** seqs from..to (inclusive) will never be delivered */
  onGap?: (from: number, to: number) => void;
  /** the publisher's seq went backwards: a new engine process, whose cache starts empty */
  onRestart?: (seq: number) => void;
  /**
   * true while batches are held on one message's word (a jump, a seq going back, an undecodable
   * batch) until the publisher confirms or refutes them; false once it has
   */
  onStale?: (stale: boolean) => void;
}

export interface StreamOptions extends StreamCallbacks {
  /** the engine's replay ROUTER endpoint; without it gaps are reported at once */
  replayEndpoint?: string | null;
  /**
   * Expect this seq first (0: everything the engine published before we joined). With a replay endpoint
   * the stream asks for it at start; without one, a later first seq is reported as a gap.
   * Unset: the first seq received is where delivery starts.
   */
  initialSeq?: number;
  /** out-of-order batches held while a gap is being filled; beyond it the gap is given up */
  maxPending?: number;
  /** longest silence from the replay server before a request is given up */
  replayTimeoutMs?: number;
  /** the largest replay answer message taken (zmq-guard.ts) */
  maxMessageBytes?: number;
  /** CURVE keys for the replay socket: the answers are believed only from the holder of `serverKey`'s secret */
  replayCurve?: CurveClient | null;
}

/** What a stream counts (a subscriber adds its socket's counters to the same object). */
export interface StreamStats {
  delivered: number;
  replayed: number;
  replayRequests: number;
  /** gap ranges reported, and the seqs in them */
  gaps: number;
  missed: number;
  restarts: number;
  /** batches held on one message's word and dropped when the publisher's own stream refuted them */
  refuted: number;
  decodeErrors: number;
  unknownEvents: number;
}

export function newStreamStats(): StreamStats {
  return {
    delivered: 0,
    replayed: 0,
    replayRequests: 0,
    gaps: 0,
    missed: 0,
    restarts: 0,
    refuted: 0,
    decodeErrors: 0,
    unknownEvents: 0,
  };
}

export class PublisherStream {
  private readonly replay: ReplayClient | null;
  private readonly decodeStats: DecodeStats = { unknownEvents: 0 };
  private readonly maxPending: number;
  /** next seq to deliver; null until the first batch (or initialSeq) fixes it */
  private next: number | null;
  /** the last seq received live: a live stream from one publisher only goes up */
  private lastLive: number | null = null;
  /** batches ahead of `next`; null marks a seq that arrived but could not be decoded */
  private readonly pending = new Map<number, KvEventBatch | null>();
  /** a live seq below what was delivered, held until the next live one says whether it was a restart */
  private candidate: { seq: number; batch: KvEventBatch | null } | null = null;
  /** bumped to orphan an in-flight replay (restart, overflow, close) */
  private replayGen = 0;
  private replaying = false;
  /** the last replay went unanswered: what is held waits for the live stream to confirm it */
  private replayFailed = false;
  /** what the caller was last told by onStale */
  private staleSaid = false;
  private closed = false;

  constructor(
    private readonly opts: StreamOptions,
    readonly stats: StreamStats,
    private readonly log: Logger,
  ) {
    this.maxPending = opts.maxPending ?? 10000;
    this.next = opts.initialSeq ?? null;
    this.replay = opts.replayEndpoint
      ? new ReplayClient(opts.replayEndpoint, {
          timeoutMs: opts.replayTimeoutMs ?? 2000,
          maxMessageBytes: opts.maxMessageBytes,
          curve: opts.replayCurve,
        })
      : null;
    // Joining with an expected start: catch up on what the engine published before we came.
    if (opts.initialSeq !== undefined && this.replay) this.startReplay();
  }

  /** the seq the stream will deliver next (null before the first batch) */
  get nextSeq(): number | null {
    return this.next;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.replayGen++;
    this.replay?.close();
    this.pending.clear();
  }

  /** One live frame of this publisher: [seq, payload]. */
  receive(seq: number, payload: Buffer): void {
    if (this.closed) return;
    this.onLive(seq, this.decode(payload));
    this.sayStale();
  }

  private decode(payload: Buffer): KvEventBatch | null {
    try {
      const b = decodeBatch(payload, this.decodeStats);
      this.stats.unknownEvents = this.decodeStats.unknownEvents;
      return b;
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.stats.decodeErrors++;
      if (this.stats.decodeErrors === 1 || this.stats.decodeErrors % 1000 === 0)
        this.log.warn(
          { err: err.message, decodeErrors: this.stats.decodeErrors },
          "undecodable KV event batch",
        );
      return null;
    }
  }

  /**
   * Nothing is given up on one live message's word: a seq that would mean lost batches (a jump, an
   * undecodable batch) or a restart (a seq going back) is held until the publisher confirms it, by
   * its replay answer or by the live batch after it. A message that is not the publisher's own (one
   * forged, or from a second publisher on the same topic) is refuted the same way and dropped.
   */
  private onLive(seq: number, batch: KvEventBatch | null): void {
    const c = this.candidate;
    if (c) {
      this.candidate = null;
      if (this.next !== null && seq >= this.next) {
        this.refute(1, { seq: c.seq }, "a seq went back, then the publisher went on from where it was");
      } else if (seq === c.seq + 1) {
        this.restart(c.seq);
        this.accept(c.seq, c.batch);
      } else {
        this.refute(1, { seq: c.seq }, "a seq went back, then another came that does not follow it");
        this.candidate = { seq, batch };
        return;
      }
    }
    if (this.lastLive !== null && seq <= this.lastLive) {
      if (this.next !== null && seq < this.next) {
        // already delivered: a new process numbering from 0 (its cache starts empty), or a stray
        // message; the next live seq decides (seq + 1 confirms a restart)
        this.candidate = { seq, batch };
        return;
      }
      // not delivered yet, though higher seqs came first: one publisher sends in order, so those were
      // not its own
      this.refuteFrom(seq);
    }
    this.accept(seq, batch);
  }

  /** A live batch in the publisher's current numbering. */
  private accept(seq: number, batch: KvEventBatch | null): void {
    this.lastLive = seq;
    if (this.next === null) this.next = seq;
    // Replay answers run up to the publisher's newest batch, so they can overtake the live stream.
    if (seq < this.next) return;
    if (seq === this.next && !this.replaying && batch !== null && this.pending.size === 0) {
      this.deliver(seq, batch);
      return;
    }
    this.pending.set(seq, batch);
    if (this.pending.size > this.maxPending) {
      this.log.warn({ pending: this.pending.size }, "too many batches waiting on a gap: giving the gap up");
      this.replayGen++;
      this.replaying = false;
      this.flushWithGaps();
      return;
    }
    if (this.replaying) return;
    if (this.pending.has(this.next)) this.drainPending();
    if (this.pending.size === 0) return;
    if (this.replay && !this.replayFailed) return this.startReplay();
    // No replay to ask: the live batch right after a held one says the stream really went on from there.
    if (this.pending.has(seq - 1)) this.flushWithGaps();
  }

  /** A seq went back and the next one followed it: a new publisher process, numbering from 0. */
  private restart(seq: number): void {
    this.stats.restarts++;
    this.log.warn({ seq, previous: this.lastLive }, "KV event seq went backwards: publisher restarted");
    this.replayGen++;
    this.replaying = false;
    this.replayFailed = false;
    this.pending.clear();
    this.next = 0;
    this.lastLive = null;
    this.safeCall(() => this.opts.onRestart?.(seq));
  }

  /** Held batches from `seq` up are dropped: they came before `seq`, so not from this publisher. */
  private refuteFrom(seq: number): void {
    let n = 0;
    for (const s of [...this.pending.keys()])
      if (s >= seq) {
        this.pending.delete(s);
        n++;
      }
    if (n > 0)
      this.refute(n, { from: seq }, "held KV event batches came before a lower seq: not the publisher's");
  }

  private refute(n: number, where: Record<string, number>, why: string): void {
    this.stats.refuted += n;
    zmqGuardCounts.refuted += n;
    if (this.stats.refuted === n || this.stats.refuted % 1000 < n)
      this.log.warn({ ...where, refuted: this.stats.refuted }, `${why}; dropped, the index is kept`);
  }

  /** Tells the caller when what it knows of the engine's cache waits on a held batch, and when not. */
  private sayStale(): void {
    const stale = this.pending.size > 0 || this.candidate !== null;
    if (stale === this.staleSaid) return;
    this.staleSaid = stale;
    this.safeCall(() => this.opts.onStale?.(stale));
  }

  private startReplay(): void {
    const replay = this.replay!;
    const gen = ++this.replayGen;
    this.replaying = true;
    this.stats.replayRequests++;
    const from = this.next ?? 0;
    // what is held now arrived before the request: the answer, which runs to the publisher's newest
    // batch, must hold each of those seqs, else they were not its own
    let asked = -1;
    for (const s of this.pending.keys()) if (s > asked) asked = s;
    let answered = -1;
    const stillCurrent = () => gen === this.replayGen && !this.closed;
    replay
      .fetch(from, (seq, payload) => {
        if (!stillCurrent()) return false;
        answered = seq;
        const next = this.next!;
        if (seq < next) return true; // already delivered (live or earlier in this answer)
        this.stats.replayed++;
        // Answers come in ascending order: a first seq beyond `next` means the server no longer has those.
        if (seq > next) this.gap(next, seq - 1);
        this.pending.delete(seq);
        this.deliver(seq, this.decode(payload));
        this.drainPending();
        return true;
      })
      .then(
        (outcome) => {
          if (!stillCurrent()) return;
          this.replaying = false;
          if (outcome === "done") {
            let n = 0;
            for (const s of [...this.pending.keys()])
              if (s > answered && s <= asked) {
                this.pending.delete(s);
                n++;
              }
            if (n > 0)
              this.refute(
                n,
                { from, answered },
                "held KV event batches are not in the publisher's replay answer",
              );
            this.drainPending();
            // held batches that came during the answer: ask again (they are in the publisher's buffer
            // now, and what it lacks of them is refuted the same way)
            if (this.pending.size > 0) this.startReplay();
          } else {
            this.log.warn(
              { from, outcome },
              "KV event replay unanswered: held batches wait for the live stream",
            );
            this.unanswered();
          }
          this.sayStale();
        },
        (err: unknown) => {
          if (!stillCurrent()) return;
          this.log.error({ err }, "KV event replay failed");
          this.replaying = false;
          this.unanswered();
          this.sayStale();
        },
      );
  }

  /**
   * The publisher did not answer: the live stream decides instead. A held batch that a live one
   * followed while the request was out is confirmed already.
   */
  private unanswered(): void {
    this.replayFailed = true;
    for (const s of this.pending.keys()) if (this.pending.has(s + 1)) return this.flushWithGaps();
  }

  /** Delivers everything pending in order, reporting each hole before it as a gap. */
  private flushWithGaps(): void {
    this.replayFailed = false;
    if (this.pending.size === 0) return;
    const seqs = [...this.pending.keys()].sort((a, b) => a - b);
    for (const seq of seqs) {
      const next = this.next!;
      if (seq < next) continue;
      if (seq > next) this.gap(next, seq - 1);
      this.deliver(seq, this.pending.get(seq)!);
    }
    this.pending.clear();
  }

  private drainPending(): void {
    while (this.pending.size > 0 && this.pending.has(this.next!)) {
      const seq = this.next!;
      const b = this.pending.get(seq)!;
      // an undecodable batch waits for replay or the live stream to confirm it, like a jump
      if (b === null && (this.replaying || !this.pending.has(seq + 1))) return;
      this.pending.delete(seq);
      this.deliver(seq, b);
    }
    if (this.pending.size === 0) this.replayFailed = false;
  }

  /** Hands one seq to the caller and advances; an undecodable batch is a one-seq gap. */
  private deliver(seq: number, batch: KvEventBatch | null): void {
    this.next = seq + 1;
    if (batch === null) {
      this.gap(seq, seq);
      return;
    }
    this.stats.delivered++;
    this.safeCall(() => this.opts.onBatch(seq, batch));
  }

  private gap(from: number, to: number): void {
    this.next = to + 1;
    this.stats.gaps++;
    this.stats.missed += to - from + 1;
    this.log.warn({ from, to }, "KV event batches lost");
    this.safeCall(() => this.opts.onGap?.(from, to));
  }

  private safeCall(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, "KV event callback threw");
    }
  }
}

/** A frame's seq (8 bytes, big-endian), or null when it is not one or is beyond 2^53. */
export function readSeq(frame: Buffer | undefined): number | null {
  if (!frame || frame.length !== 8) return null;
  const big = frame.readBigUInt64BE(0);
  return big > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(big);
}
