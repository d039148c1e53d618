// One publisher's batches, put back in order: what a subscriber does with the (seq, payload) frames of
// one engine, whichever socket they came in on. Batches are delivered in sequence order exactly once;
// missing seqs are fetched through the engine's replay socket when it has one; what cannot be
// recovered is reported as a gap, and a seq going backwards as a restart. A KvEventSubscriber runs one
// of these behind its SUB socket; a KvEventCollector runs one per engine behind its single bound socket.
import type { Logger } from "pino";
import { decodeBatch, DecodeError, type DecodeStats } from "./codec.js";
import type { KvEventBatch } from "./events.js";
import { ReplayClient } from "./replay.js";

export interface StreamCallbacks {
  /** batches, in seq order, each exactly once */
  onBatch: (seq: number, batch: KvEventBatch) => void;
  /** seqs from..to (inclusive) will never be delivered */
  onGap?: (from: number, to: number) => void;
  /** the publisher's seq went backwards: a new engine process, whose cache starts empty */
  onRestart?: (seq: number) => void;
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
  /** bumped to orphan an in-flight replay (restart, overflow, close) */
  private replayGen = 0;
  private replaying = false;
  private closed = false;

  constructor(
    private readonly opts: StreamOptions,
    readonly stats: StreamStats,
    private readonly log: Logger,
  ) {
    this.maxPending = opts.maxPending ?? 10000;
    this.next = opts.initialSeq ?? null;
    this.replay = opts.replayEndpoint
      ? new ReplayClient(opts.replayEndpoint, { timeoutMs: opts.replayTimeoutMs ?? 2000 })
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

  private onLive(seq: number, batch: KvEventBatch | null): void {
    if (this.lastLive !== null && seq <= this.lastLive) {
      // One publisher's live stream only goes up: this is a new one (engine restart), numbering from 0.
      this.stats.restarts++;
      this.log.warn({ seq, previous: this.lastLive }, "KV event seq went backwards: publisher restarted");
      this.replayGen++;
      this.replaying = false;
      this.pending.clear();
      this.next = 0;
      this.safeCall(() => this.opts.onRestart?.(seq));
    }
    this.lastLive = seq;
    if (this.next === null) this.next = seq;
    // Replay answers run up to the publisher's newest batch, so they can overtake the live stream.
    if (seq < this.next) return;
    if (seq === this.next && !this.replaying) {
      this.deliver(seq, batch);
      this.drainPending();
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
    if (!this.replaying) {
      if (this.replay) this.startReplay();
      else this.flushWithGaps();
    }
  }

  private startReplay(): void {
    const replay = this.replay!;
    const gen = ++this.replayGen;
    this.replaying = true;
    this.stats.replayRequests++;
    const from = this.next ?? 0;
    const stillCurrent = () => gen === this.replayGen && !this.closed;
    replay
      .fetch(from, (seq, payload) => {
        if (!stillCurrent()) return false;
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
          if (outcome === "timeout") this.log.warn({ from }, "KV event replay timed out");
          this.replaying = false;
          this.flushWithGaps();
        },
        (err: unknown) => {
          if (!stillCurrent()) return;
          this.log.error({ err }, "KV event replay failed");
          this.replaying = false;
          this.flushWithGaps();
        },
      );
  }

  /** Delivers everything pending in order, reporting each hole before it as a gap. */
  private flushWithGaps(): void {
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
      this.pending.delete(seq);
      this.deliver(seq, b);
    }
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
