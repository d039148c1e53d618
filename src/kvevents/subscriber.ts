// The router's side of an engine's KV events: SUB to its PUB endpoint, decode, and deliver batches in
// sequence order exactly once. Missing sequence numbers are fetched through the engine's replay socket
// when it has one; what cannot be recovered is reported as a gap so the caller can distrust (or drop)
// what it knows about that engine's cache.
import { Subscriber } from "zeromq";
import { logger } from "../obs/log.js";
import { decodeBatch, DecodeError, type DecodeStats } from "./codec.js";
import type { KvEventBatch } from "./events.js";
import { ReplayClient } from "./replay.js";

export interface KvEventSubscriberOptions {
  /** the engine's PUB endpoint (connect), or a local endpoint to bind when engines connect to us */
  endpoint: string;
  bind?: boolean;
  /** ZMQ prefix filter on the topic frame ("" = everything) */
  topic?: string;
  /** the engine's replay ROUTER endpoint; without it gaps are reported at once */
  replayEndpoint?: string | null;
  /** batches, in seq order, each exactly once */
  onBatch: (seq: number, batch: KvEventBatch) => void;
  /** seqs from..to (inclusive) will never be delivered */
  onGap?: (from: number, to: number) => void;
  /** the publisher's seq went backwards: a new engine process, whose cache starts empty */
  onRestart?: (seq: number) => void;
  /**
   * Expect this seq first (0: everything the engine published before we joined). With a replay endpoint
   * the subscriber asks for it at start; without one, a later first seq is reported as a gap.
   * Unset: the first seq received is where delivery starts.
   */
  initialSeq?: number;
  /** out-of-order batches held while a gap is being filled; beyond it the gap is given up */
  maxPending?: number;
  /** longest silence from the replay server before a request is given up */
  replayTimeoutMs?: number;
  /** ZMQ receive high-water mark (messages) */
  hwm?: number;
  /** names this engine in logs */
  label?: string;
}

export interface SubscriberStats {
  received: number;
  delivered: number;
  replayed: number;
  replayRequests: number;
  /** gap ranges reported, and the seqs in them */
  gaps: number;
  missed: number;
  restarts: number;
  decodeErrors: number;
  malformedFrames: number;
  unknownEvents: number;
  disconnects: number;
}

export class KvEventSubscriber {
  readonly stats: SubscriberStats = {
    received: 0,
    delivered: 0,
    replayed: 0,
    replayRequests: 0,
    gaps: 0,
    missed: 0,
    restarts: 0,
    decodeErrors: 0,
    malformedFrames: 0,
    unknownEvents: 0,
    disconnects: 0,
  };
  private readonly log;
  private readonly sub: Subscriber;
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
  private readonly loops: Promise<void>[] = [];

  private constructor(private readonly opts: KvEventSubscriberOptions) {
    this.log = logger("kvevents").child({ engine: opts.label ?? opts.endpoint });
    this.maxPending = opts.maxPending ?? 10000;
    this.next = opts.initialSeq ?? null;
    this.sub = new Subscriber({
      receiveHighWaterMark: opts.hwm ?? 100000,
      reconnectInterval: 100,
      reconnectMaxInterval: 5000,
      linger: 0,
    });
    this.replay = opts.replayEndpoint
      ? new ReplayClient(opts.replayEndpoint, { timeoutMs: opts.replayTimeoutMs ?? 2000 })
      : null;
  }

  static async create(opts: KvEventSubscriberOptions): Promise<KvEventSubscriber> {
    const s = new KvEventSubscriber(opts);
    s.sub.subscribe(opts.topic ?? "");
    if (opts.bind) await s.sub.bind(opts.endpoint);
    else s.sub.connect(opts.endpoint);
    s.loops.push(s.receiveLoop(), s.watchConnection());
    // Joining with an expected start: catch up on what the engine published before we came.
    if (opts.initialSeq !== undefined && s.replay) s.startReplay();
    return s;
  }

  /** the seq the subscriber will deliver next (null before the first batch) */
  get nextSeq(): number | null {
    return this.next;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.replayGen++;
    this.sub.close();
    this.replay?.close();
    await Promise.allSettled(this.loops);
    this.pending.clear();
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.sub) {
        if (this.closed) return;
        this.onFrames(frames);
      }
    } catch (err) {
      if (!this.closed) this.log.error({ err }, "KV event subscriber stopped");
    }
  }

  private async watchConnection(): Promise<void> {
    try {
      for await (const ev of this.sub.events) {
        if (ev.type === "disconnect") {
          this.stats.disconnects++;
          this.log.warn("KV event publisher disconnected; ZMQ reconnects, missed batches show up as a gap");
        } else if (ev.type === "connect") this.log.debug("KV event publisher connected");
      }
    } catch (_err) {
      // the event stream ends with the socket
    }
  }

  private onFrames(frames: Buffer[]): void {
    // [topic, seq u64 BE, payload]
    if (frames.length !== 3 || frames[1]!.length !== 8) {
      this.stats.malformedFrames++;
      return;
    }
    const big = frames[1]!.readBigUInt64BE(0);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
      this.stats.malformedFrames++;
      return;
    }
    this.stats.received++;
    this.onLive(Number(big), this.decode(frames[2]!));
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
