// vLLM's ZmqEventPublisher: one multipart message per scheduler step on a PUB socket, plus a ROUTER
// socket that replays recent steps to subscribers that missed some.
//
// publish() is called from the sim's engine loop and never waits: it encodes, numbers and enqueues the
// batch, and a single async pump drains the queue into the socket (zeromq.js allows one send in flight).
// Sequence numbers are given at publish time, so a batch dropped from a full send queue shows up as a gap
// downstream instead of vanishing silently, and it stays replayable.
//
// With CURVE keys (curve.ts; vLLM has no such option) a bound PUB and the replay ROUTER are CURVE
// servers: a subscriber that holds their public key knows the events are this publisher's, and the
// ZAP allow-list (zap.ts) says which subscribers may read them. A PUB that connects out to a collector
// is a CURVE client of the collector's key.
import { Publisher, Router } from "zeromq";
import { logger } from "../obs/log.js";
import { encodeBatch } from "./codec.js";
import type { KvEventsConfig } from "./config.js";
import { connectableEndpoint, endpointBinds, offsetEndpoint, wildcardOnHost } from "./endpoint.js";
import type { KvEventBatch, KvEventLayout } from "./events.js";
import { curveClientOptions, curveServerOptions, sharedMacKey, topicMac, type CurveKeys } from "./curve.js";
import { BoundedQueue } from "./ring.js";
import { registerZap, type ZapRegistration } from "./zap.js";
import { CONTROL_MAX_MESSAGE_BYTES } from "./zmq-guard.js";
import { BindError, InvalidConfigError } from "../errors/index.js";

/** The seq of the frame that ends a replay answer. */
export const REPLAY_END_SEQ = 0xffffffffffffffffn;

export interface KvEventPublisher {
  /** Queues one scheduler step's events; returns at once. */
  publish(batch: KvEventBatch): void;
  close(): Promise<void>;
}

/** publisher: "null" — events are produced and dropped, as in vLLM. */
export class NullEventPublisher implements KvEventPublisher {
  publish(_batch: KvEventBatch): void {}
  async close(): Promise<void> {}
}

export interface PublisherOptions {
  dataParallelRank?: number | null;
  /** event layout on the wire: "map" (vLLM ≥ 0.24, the default) or "array" (older releases) */
  layout?: KvEventLayout;
  /**
   * the address the server listens on: wildcard endpoints bind there instead of on every interface
   * (endpoint.ts, wildcardOnHost); unset, as in vLLM, they bind everywhere
   */
  bindHost?: string;
  /** CURVE keys: server on what binds (with the subscribers' keys as allow-list), client of `serverKey` when connecting */
  curve?: CurveKeys | null;
}

export interface PublisherStats {
  /** batches given to publish() */
  published: number;
  /** batches handed to the PUB socket */
  sent: number;
  /** batches dropped because the send queue was full (a slow socket or a stalled event loop) */
  dropped: number;
  replayRequests: number;
  /** batches sent in replay answers */
  replayed: number;
}

interface Outgoing {
  seq: bigint;
  payload: Buffer;
}

function seqFrame(seq: bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(seq);
  return b;
}

const EMPTY = Buffer.alloc(0);
const REPLAY_SEND_TIMEOUT_MS = 5000;
const END_FRAME = seqFrame(REPLAY_END_SEQ);

export class ZmqEventPublisher implements KvEventPublisher {
  readonly stats: PublisherStats = { published: 0, sent: 0, dropped: 0, replayRequests: 0, replayed: 0 };
  private readonly log = logger("kvevents");
  private readonly topic: Buffer;
  private readonly queue: BoundedQueue<Outgoing>;
  /** the last bufferSteps batches, oldest first; seqs are contiguous, ending at nextSeq - 1 */
  private readonly replayBuffer: BoundedQueue<Buffer>;
  private nextSeq = 0n;
  private pumping = false;
  private pumpDone: Promise<void> = Promise.resolve();
  private closed = false;
  private replayLoop: Promise<void> = Promise.resolve();

  private constructor(
    private readonly pub: Publisher,
    private readonly router: Router | null,
    cfg: KvEventsConfig,
    /** where the PUB socket is bound or connected (a bound wildcard resolved to its real port) */
    readonly endpoint: string,
    /** where the replay ROUTER listens, or null */
    readonly replayEndpoint: string | null,
    /** how events are written: the layout of the vLLM release being imitated */
    readonly layout: KvEventLayout,
    private readonly zap: ZapRegistration | null,
    /** connecting out with CURVE: each message is signed for the collector (curve.ts sharedMacKey) */
    private readonly macKey: Buffer | null = null,
  ) {
    this.topic = Buffer.from(cfg.topic, "utf8");
    this.queue = new BoundedQueue(cfg.maxQueueSize);
    this.replayBuffer = new BoundedQueue(cfg.bufferSteps);
    if (router) this.replayLoop = this.serveReplay(router);
  }

  static async create(cfg: KvEventsConfig, opts: PublisherOptions = {}): Promise<ZmqEventPublisher> {
    const rank = opts.dataParallelRank ?? null;
    const endpoint = offsetEndpoint(cfg.endpoint, rank);
    const binds = endpointBinds(endpoint);
    const here = binds ? wildcardOnHost(endpoint, opts.bindHost) : { endpoint, ipv6: false };
    const curve = opts.curve ?? null;
    if (curve && !binds && !curve.serverKey)
      throw new InvalidConfigError(
        `KV-event endpoint ${endpoint} connects out: with CURVE keys (${curve.source}) it needs the collector's public key (server.key)`,
      );
    // a server socket registers its allow-list before it binds: a CURVE server without a ZAP handler lets anyone in
    const zap =
      curve && (binds || cfg.replayEndpoint) ? await registerZap("kv-publisher", curve.clientKeys) : null;
    const pubSecurity = !curve
      ? {}
      : binds
        ? { ...curveServerOptions(curve), zapDomain: zap!.domain }
        : curveClientOptions(curve, curve.serverKey!);
    // Linger bounds close(): unsent frames are given up to a second, never forever. A PUB reads only
    // subscriptions: a few bytes each.
    const pub = new Publisher({
      sendHighWaterMark: cfg.hwm,
      linger: 1000,
      ipv6: here.ipv6,
      maxMessageSize: CONTROL_MAX_MESSAGE_BYTES,
      ...pubSecurity,
    });
    let router: Router | null = null;
    try {
      let bound: string;
      if (binds) {
        await bindOrSay(pub, here.endpoint, "KV-event PUB");
        bound = connectableEndpoint(pub.lastEndpoint ?? here.endpoint);
      } else {
        pub.connect(endpoint);
        bound = endpoint;
      }
      let replayBound: string | null = null;
      if (cfg.replayEndpoint) {
        const replayEp = wildcardOnHost(offsetEndpoint(cfg.replayEndpoint, rank), opts.bindHost);
        // mandatory: a replay answer waits for the client to read instead of being dropped at the HWM
        // (a silently truncated answer would look like batches the publisher no longer has); the send
        // timeout stops a client that never reads from holding the server. Requests are 2 frames.
        router = new Router({
          mandatory: true,
          sendTimeout: REPLAY_SEND_TIMEOUT_MS,
          linger: 0,
          ipv6: replayEp.ipv6,
          maxMessageSize: CONTROL_MAX_MESSAGE_BYTES,
          ...(curve ? { ...curveServerOptions(curve), zapDomain: zap!.domain } : {}),
        });
        // The replay socket always binds: subscribers come to it.
        await bindOrSay(router, replayEp.endpoint, "KV-event replay");
        replayBound = connectableEndpoint(router.lastEndpoint ?? replayEp.endpoint);
      }
      const macKey = curve && !binds ? sharedMacKey(curve.secretKey, curve.serverKey!) : null;
      const p = new ZmqEventPublisher(
        pub,
        router,
        cfg,
        bound,
        replayBound,
        opts.layout ?? "map",
        zap,
        macKey,
      );
      p.log.info(
        {
          endpoint: bound,
          replayEndpoint: replayBound,
          topic: cfg.topic,
          layout: p.layout,
          security: curve ? `curve (${curve.source})` : "none",
        },
        "KV events publisher ready",
      );
      return p;
    } catch (err) {
      pub.close();
      router?.close();
      await zap?.release();
      throw err;
    }
  }

  /** subscribers (and replay clients) refused by the CURVE allow-list */
  get deniedClients(): number {
    return this.zap?.denied ?? 0;
  }

  publish(batch: KvEventBatch): void {
    if (this.closed) return;
    const payload = encodeBatch(batch, this.layout);
    const seq = this.nextSeq++;
    this.stats.published++;
    this.replayBuffer.push(payload);
    if (this.queue.push({ seq, payload })) {
      this.stats.dropped++;
      if (this.stats.dropped === 1 || this.stats.dropped % 10000 === 0)
        this.log.warn(
          { dropped: this.stats.dropped },
          "KV event send queue full: dropping the oldest batches",
        );
    }
    if (!this.pumping) {
      this.pumping = true;
      this.pumpDone = this.pump();
    }
  }

  /** Sequence number the next published batch gets. */
  get nextSequence(): bigint {
    return this.nextSeq;
  }

  /** Resolves when every batch published so far has been handed to the socket. */
  async flush(): Promise<void> {
    await this.pumpDone;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Give queued batches a bounded chance to leave, then close; linger caps the rest.
    await Promise.race([this.pumpDone, new Promise((r) => setTimeout(r, 1000).unref())]);
    this.queue.clear();
    this.pub.close();
    this.router?.close();
    await this.replayLoop;
    await this.zap?.release();
  }

  private async pump(): Promise<void> {
    try {
      for (let item = this.queue.shift(); item; item = this.queue.shift()) {
        if (this.pub.closed) return;
        const seq = seqFrame(item.seq);
        await this.pub.send(
          this.macKey
            ? [this.topic, seq, item.payload, topicMac(this.macKey, this.topic, seq, item.payload)]
            : [this.topic, seq, item.payload],
        );
        this.stats.sent++;
      }
    } catch (err) {
      if (!this.closed) this.log.error({ err }, "KV event send failed");
    } finally {
      this.pumping = false;
    }
  }

  /** Payload of `seq` if it is still buffered. */
  private buffered(seq: bigint): Buffer | undefined {
    const first = this.nextSeq - BigInt(this.replayBuffer.size);
    if (seq < first || seq >= this.nextSeq) return undefined;
    return this.replayBuffer.at(Number(seq - first));
  }

  /** One request at a time: [identity, b"", start_seq u64 BE] → [identity, b"", seq, payload]* then the end frame. */
  private async serveReplay(router: Router): Promise<void> {
    try {
      for await (const frames of router) {
        if (this.closed) return;
        const seqBuf = frames[frames.length - 1]!;
        if (frames.length < 2 || seqBuf.length !== 8) {
          this.log.warn({ frames: frames.length }, "ignoring a malformed replay request");
          continue;
        }
        this.stats.replayRequests++;
        try {
          await this.answerReplay(router, frames[0]!, seqBuf.readBigUInt64BE(0));
        } catch (err) {
          // the client went away or stopped reading: its answer is abandoned, the server goes on
          if (this.closed) return;
          this.log.warn({ err: (err as Error).message }, "KV event replay answer abandoned");
        }
      }
    } catch (err) {
      if (!this.closed) this.log.error({ err }, "KV event replay server stopped");
    }
  }

  private async answerReplay(router: Router, identity: Buffer, start: bigint): Promise<void> {
    const end = this.nextSeq;
    const first = end - BigInt(this.replayBuffer.size);
    for (let s = start > first ? start : first; s < end; s++) {
      const payload = this.buffered(s);
      if (!payload) continue; // evicted while we were answering
      await router.send([identity, EMPTY, seqFrame(s), payload]);
      this.stats.replayed++;
      if (this.closed) return;
    }
    await router.send([identity, EMPTY, END_FRAME, EMPTY]);
  }
}

/** Binds, or throws an error naming the socket and the endpoint (libzmq's own names neither). */
async function bindOrSay(sock: Publisher | Router, endpoint: string, what: string): Promise<void> {
  try {
    await sock.bind(endpoint);
  } catch (err) {
    throw new BindError(`cannot bind the ${what} socket to ${endpoint}: ${(err as Error).message}`);
  }
}

/** The publisher --kv-events-config asks for. */
export async function createEventPublisher(
  cfg: KvEventsConfig,
  opts: PublisherOptions = {},
): Promise<KvEventPublisher> {
  if (!cfg.enabled || cfg.publisher === "null") return new NullEventPublisher();
  return ZmqEventPublisher.create(cfg, opts);
}
