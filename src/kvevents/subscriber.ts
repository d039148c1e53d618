// The router's side of one engine's KV events: SUB to its PUB endpoint, decode, and deliver batches in
// sequence order exactly once (the ordering, replay and gap rules are the PublisherStream's). What
// cannot be recovered is reported as a gap so the caller can distrust (or drop) what it knows about
// that engine's cache.
import { Subscriber } from "zeromq";
import { logger, type Logger } from "../obs/log.js";
import {
  newStreamStats,
  PublisherStream,
  readSeq,
  type StreamOptions,
  type StreamStats,
} from "./sequencer.js";

export interface KvEventSubscriberOptions extends StreamOptions {
  /** the engine's PUB endpoint (connect), or a local endpoint to bind when engines connect to us */
  endpoint: string;
  bind?: boolean;
  /** ZMQ prefix filter on the topic frame ("" = everything) */
  topic?: string;
  /** ZMQ receive high-water mark (messages) */
  hwm?: number;
  /** names this engine in logs */
  label?: string;
}

export interface SubscriberStats extends StreamStats {
  received: number;
  malformedFrames: number;
  disconnects: number;
}

export class KvEventSubscriber {
  readonly stats: SubscriberStats = { ...newStreamStats(), received: 0, malformedFrames: 0, disconnects: 0 };
  private readonly log: Logger;
  private readonly sub: Subscriber;
  private stream: PublisherStream | undefined;
  private closed = false;
  private readonly loops: Promise<void>[] = [];

  private constructor(opts: KvEventSubscriberOptions) {
    this.log = logger("kvevents").child({ engine: opts.label ?? opts.endpoint });
    this.sub = new Subscriber({
      receiveHighWaterMark: opts.hwm ?? 100000,
      reconnectInterval: 100,
      reconnectMaxInterval: 5000,
      linger: 0,
    });
  }

  static async create(opts: KvEventSubscriberOptions): Promise<KvEventSubscriber> {
    const s = new KvEventSubscriber(opts);
    s.sub.subscribe(opts.topic ?? "");
    if (opts.bind) await s.sub.bind(opts.endpoint);
    else s.sub.connect(opts.endpoint);
    s.stream = new PublisherStream(opts, s.stats, s.log);
    s.loops.push(s.receiveLoop(), s.watchConnection());
    return s;
  }

  /** the seq the subscriber will deliver next (null before the first batch) */
  get nextSeq(): number | null {
    return this.stream?.nextSeq ?? null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stream?.close();
    this.sub.close();
    await Promise.allSettled(this.loops);
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.sub) {
        if (this.closed) return;
        // [topic, seq u64 BE, payload]
        const seq = frames.length === 3 ? readSeq(frames[1]) : null;
        if (seq === null) {
          this.stats.malformedFrames++;
          continue;
        }
        this.stats.received++;
        this.stream!.receive(seq, frames[2]!);
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
}
