// The router's side of one engine's KV events: SUB to its PUB endpoint, decode, and deliver batches in
// sequence order exactly once (the ordering, replay and gap rules are the PublisherStream's). What
// cannot be recovered is reported as a gap so the caller can distrust (or drop) what it knows about
// that engine's cache. Messages are capped in size (zmq-guard.ts). With CURVE keys (curve.ts) the SUB is
// a CURVE client of the publisher's public key: only a publisher holding the matching secret key gets a
// connection, so nothing from another process reaches the stream, whatever topic it writes.
import { Subscriber } from "zeromq";
import { curveClientOptions, curveServerOptions, type CurveClient } from "./curve.js";
import { logger, type Logger } from "../obs/log.js";
import {
  newStreamStats,
  PublisherStream,
  readSeq,
  type StreamOptions,
  type StreamStats,
} from "./sequencer.js";
import { registerZap, type ZapRegistration } from "./zap.js";
import { DEFAULT_MAX_MESSAGE_BYTES, observeFromNow, oversized, watchDisconnects } from "./zmq-guard.js";

/** How long a dropped connection may take to come back by itself before it is made again. */
const RECONNECT_CHECK_MS = 1000;

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
  /** the largest message taken; a larger frame costs the publisher its connection (zmq-guard.ts) */
  maxMessageBytes?: number;
  /**
   * CURVE: connecting, believe only the holder of `serverKey`'s secret key (the replay socket too);
   * bound, be the server of `keys` and let in `keys.clientKeys` only
   */
  curve?: CurveClient | null;
  /** hears each failed CURVE handshake as it happens: nothing the publisher sends will be taken */
  onAuthFailure?: () => void;
}

export interface SubscriberStats extends StreamStats {
  received: number;
  malformedFrames: number;
  /** messages over maxMessageBytes that libzmq could not refuse (many frames), dropped */
  oversized: number;
  disconnects: number;
  /** connections that failed the CURVE handshake (a publisher without the expected key, or plain) */
  authFailures: number;
}

export class KvEventSubscriber {
  readonly stats: SubscriberStats = {
    ...newStreamStats(),
    received: 0,
    malformedFrames: 0,
    oversized: 0,
    disconnects: 0,
    authFailures: 0,
  };
  private readonly log: Logger;
  private readonly sub: Subscriber;
  private readonly maxBytes: number;
  /** the endpoint connected to (null: bound, the publishers come to us) */
  private readonly endpoint: string | null;
  private stream: PublisherStream | undefined;
  private closed = false;
  private readonly loops: Promise<void>[] = [];
  private zap: ZapRegistration | null = null;
  private readonly onAuthFailure: (() => void) | undefined;

  private constructor(opts: KvEventSubscriberOptions) {
    this.onAuthFailure = opts.onAuthFailure;
    this.log = logger("kvevents").child({ engine: opts.label ?? opts.endpoint });
    this.maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.endpoint = opts.bind ? null : opts.endpoint;
    const c = opts.curve;
    this.sub = new Subscriber({
      receiveHighWaterMark: opts.hwm ?? 100000,
      reconnectInterval: 100,
      reconnectMaxInterval: 5000,
      linger: 0,
      maxMessageSize: this.maxBytes,
      ...(!c ? {} : opts.bind ? curveServerOptions(c.keys) : curveClientOptions(c.keys, c.serverKey)),
    });
  }

  static async create(opts: KvEventSubscriberOptions): Promise<KvEventSubscriber> {
    const s = new KvEventSubscriber(opts);
    s.sub.subscribe(opts.topic ?? "");
    observeFromNow(s.sub);
    try {
      if (opts.bind && opts.curve) {
        s.zap = await registerZap("kv-subscriber", opts.curve.keys.clientKeys);
        s.sub.zapDomain = s.zap.domain;
      }
      if (opts.bind) await s.sub.bind(opts.endpoint);
      else s.sub.connect(opts.endpoint);
    } catch (err) {
      s.sub.close();
      await s.zap?.release();
      throw err;
    }
    const replayCurve = opts.replayCurve ?? (opts.bind ? null : opts.curve);
    s.stream = new PublisherStream({ ...opts, replayCurve }, s.stats, s.log);
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
    await this.zap?.release();
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.sub) {
        if (this.closed) return;
        if (oversized(frames, this.maxBytes, "kv-subscriber")) {
          this.stats.oversized++;
          continue;
        }
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

  /**
   * Counts disconnects. libzmq reconnects after a publisher goes away, but not after it cut one off
   * for an oversized frame (a protocol error ends that connection for good): a connection not back
   * within RECONNECT_CHECK_MS is made again here.
   */
  private async watchConnection(): Promise<void> {
    let connected = true;
    let check: NodeJS.Timeout | undefined;
    let failedHandshake = false;
    await watchDisconnects(this.sub, "kv-subscriber", {
      connect: () => {
        connected = true;
      },
      authFailure: (why) => {
        this.stats.authFailures++;
        failedHandshake = true;
        // retried every second: said on the first failure and every 60th
        if (this.stats.authFailures === 1 || this.stats.authFailures % 60 === 0)
          this.log.error(
            { why, failures: this.stats.authFailures },
            "KV event publisher failed the CURVE handshake: it does not hold the secret key of the configured server key (or publishes without CURVE); nothing it sends is taken",
          );
        this.onAuthFailure?.();
      },
      disconnect: () => {
        connected = false;
        this.stats.disconnects++;
        if (!failedHandshake)
          this.log.warn(
            "KV event publisher disconnected (gone, or cut off for a message over the size cap); missed batches show up as a gap",
          );
        failedHandshake = false;
        const ep = this.endpoint;
        if (ep === null) return;
        clearTimeout(check);
        check = setTimeout(() => {
          if (connected || this.closed) return;
          try {
            this.sub.disconnect(ep);
          } catch {
            // libzmq already dropped the endpoint
          }
          this.sub.connect(ep);
        }, RECONNECT_CHECK_MS);
        check.unref();
      },
    });
    clearTimeout(check);
  }
}
