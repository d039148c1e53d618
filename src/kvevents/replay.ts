// Client side of vLLM's replay exchange: a DEALER asks a publisher's ROUTER for every buffered batch
// from a start seq; answers stream back until the end frame (seq 0xFFFFFFFFFFFFFFFF, empty payload).
// Answers are capped in size like live messages (zmq-guard.ts), and with CURVE keys taken only from a
// server holding the expected key (curve.ts).
import { Dealer } from "zeromq";
import { curveClientOptions, type CurveClient } from "./curve.js";
import { DEFAULT_MAX_MESSAGE_BYTES, oversized } from "./zmq-guard.js";

export type ReplayOutcome = "done" | "timeout" | "stopped";

export interface ReplayClientOptions {
  /** longest silence between two answer frames before the request is given up */
  timeoutMs?: number;
  /** the largest answer message taken (one batch); a larger one is skipped, a larger frame cut off */
  maxMessageBytes?: number;
  /** CURVE: talk only to a replay server holding the secret key of `serverKey` */
  curve?: CurveClient | null | undefined;
}

const END_SEQ = 0xffffffffffffffffn;

export class ReplayClient {
  private dealer: Dealer;
  private closed = false;
  /** requests run one after another: a DEALER cannot tell two answers apart */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly curve: CurveClient | null;

  constructor(
    readonly endpoint: string,
    opts: ReplayClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.curve = opts.curve ?? null;
    this.dealer = this.open();
  }

  private open(): Dealer {
    const d = new Dealer({
      receiveTimeout: this.timeoutMs,
      sendTimeout: this.timeoutMs,
      linger: 0,
      maxMessageSize: this.maxBytes,
      ...(this.curve ? curveClientOptions(this.curve.keys, this.curve.serverKey) : {}),
    });
    d.connect(this.endpoint);
    return d;
  }

  /**
   * Asks for every buffered batch from `startSeq`. `onBatch` sees them in the order the server sends
   * them (ascending); returning false stops early. A request that times out or stops early leaves
   * answers in flight, so the socket is replaced: stale frames can never reach the next request.
   * Replies are accepted with or without the topic frame: [b"", seq, payload] or [b"", topic, seq, payload]
   * (a DEALER sees no identity frame).
   */
  fetch(startSeq: number, onBatch: (seq: number, payload: Buffer) => boolean | void): Promise<ReplayOutcome> {
    const run = this.queue.then(
      () => this.request(startSeq, onBatch),
      () => this.request(startSeq, onBatch),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async request(
    startSeq: number,
    onBatch: (seq: number, payload: Buffer) => boolean | void,
  ): Promise<ReplayOutcome> {
    if (this.closed) return "stopped";
    let outcome: ReplayOutcome = "timeout";
    try {
      const start = Buffer.allocUnsafe(8);
      start.writeBigUInt64BE(BigInt(startSeq));
      await this.dealer.send([Buffer.alloc(0), start]);
      for (;;) {
        const frames = await this.dealer.receive();
        // a batch skipped here is a batch the publisher no longer has: a gap
        if (frames.length < 3 || oversized(frames, this.maxBytes, "kv-replay")) continue;
        const seqFrame = frames[frames.length - 2]!;
        const payload = frames[frames.length - 1]!;
        if (seqFrame.length !== 8) continue;
        const seq = seqFrame.readBigUInt64BE(0);
        if (seq === END_SEQ) {
          outcome = "done";
          break;
        }
        if (seq > BigInt(Number.MAX_SAFE_INTEGER)) continue;
        if (onBatch(Number(seq), payload) === false) {
          outcome = "stopped";
          break;
        }
      }
    } catch (err) {
      if (this.closed) return "stopped";
      if ((err as { code?: string }).code !== "EAGAIN") throw err;
    } finally {
      if (outcome !== "done" && !this.closed) {
        this.dealer.close();
        this.dealer = this.open();
      }
    }
    return outcome;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dealer.close();
  }
}
