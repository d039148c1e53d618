// Collector mode: one SUB socket that binds, and any number of engines whose publishers connect to it
// (vLLM connects when its endpoint has no wildcard; llm-d deploys every engine that way). A message's
// engine is named by its topic, `kv@<engine address>@<model>` (llm-d's convention), and each attached
// engine gets its own PublisherStream; messages from engines nobody attached are counted and dropped,
// and sizes are capped (zmq-guard.ts), since anyone who reaches the bound socket can write to it. With
// CURVE keys only admitted publishers connect, and an engine attached with its key takes only messages
// signed with it. The seam: attach(engine, callbacks); the collector knows nothing about indexes or
// routers. See docs/kv-events.md, "Collector mode".
import { Subscriber } from "zeromq";
import { logger } from "../obs/log.js";
import { timingSafeEqual } from "node:crypto";
import { curveServerOptions, sharedMacKey, TOPIC_MAC_BYTES, topicMac, type CurveKeys } from "./curve.js";
import { connectableEndpoint } from "./endpoint.js";
import {
  newStreamStats,
  PublisherStream,
  readSeq,
  type StreamOptions,
  type StreamStats,
} from "./sequencer.js";
import { registerZap, type ZapRegistration } from "./zap.js";
import { DEFAULT_MAX_MESSAGE_BYTES, observeFromNow, oversized, watchDisconnects } from "./zmq-guard.js";
import { BindError, InvalidConfigError } from "../errors/index.js";

/** Why a message was dropped (malformed and oversized ones are not counted as received). */
export type CollectorDrop =
  "malformed" | "oversized" | "topic" | "unknown-engine" | "ambiguous-engine" | "forged";

export interface CollectorStats {
  received: number;
  dropped: Record<CollectorDrop, number>;
  /** connections refused by the CURVE handshake: a key not on the allow-list, or no CURVE at all */
  authFailures: number;
}

export interface CollectedEngine {
  /** the caller's name for the engine (the router: its URL) */
  id: string;
  /** addresses its topic may carry: host:port, and the bare host */
  addresses: readonly string[];
  /**
   * the engine's CURVE public key: its messages must then carry the signature only the holder of
   * that key's secret can make (curve.ts topicMac); others under its topic are dropped as forged
   */
  publicKey?: string | undefined;
}

/** Topic prefix of llm-d's convention, `kv@<address>@<model>`. */
export const COLLECTOR_TOPIC_PREFIX = "kv@";

/** The engine address of a `kv@<address>@<model>` topic, or null when the topic is not in that form. */
export function topicAddress(topic: string): string | null {
  if (!topic.startsWith(COLLECTOR_TOPIC_PREFIX)) return null;
  const end = topic.indexOf("@", COLLECTOR_TOPIC_PREFIX.length);
  const address = topic.slice(COLLECTOR_TOPIC_PREFIX.length, end < 0 ? undefined : end);
  return address === "" ? null : address;
}

/** host:port and host of an engine base URL, as its topic would name it (IPv6 hosts without brackets too). */
export function urlAddresses(url: string): string[] {
  const u = new URL(url);
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  const host = u.hostname;
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  const out = [`${host}:${port}`, host];
  if (bare !== host) out.push(`${bare}:${port}`, bare);
  return out;
}

interface Attached {
  engine: CollectedEngine;
  stream: PublisherStream;
  stats: StreamStats;
  /** the key its messages are signed with; null: unsigned messages are taken */
  macKey: Buffer | null;
}

/**
 * The unknown topics remembered, so that each is logged once: at most this many, and this many bytes
 * in all (the oldest forgotten first). Any host that reaches the bound socket chooses its topics, and a
 * topic frame may be as large as a message, so both bounds are needed.
 */
export const UNKNOWN_TOPICS_MAX = 64;
export const UNKNOWN_TOPICS_BYTES = 8 * 1024;
/**
 * A topic is read (and remembered, and logged) by its first bytes only: an engine address is a host
 * and port, and a whole multi-MiB topic frame would otherwise be decoded per message.
 */
export const TOPIC_READ_BYTES = 512;
/** dropped-topic warnings at most per minute: a forgotten topic seen again is logged again */
const WARNINGS_PER_MINUTE = 64;

/** Topics seen, the oldest forgotten first past a count or a byte total. */
class RecentTopics {
  private readonly topics = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {}

  /** true when `topic` was not remembered (it is now) */
  add(topic: string): boolean {
    if (this.topics.has(topic)) return false;
    const bytes = Buffer.byteLength(topic);
    this.topics.set(topic, bytes);
    this.total += bytes;
    while (this.topics.size > this.maxCount || this.total > this.maxBytes) {
      const [oldest, n] = this.topics.entries().next().value as [string, number];
      this.topics.delete(oldest);
      this.total -= n;
    }
    return true;
  }

  get size(): number {
    return this.topics.size;
  }

  get bytes(): number {
    return this.total;
  }
}

/** a key no signature is made with: an engine whose messages cannot be checked gets none through */
const NO_KEY = Buffer.alloc(0);

/** Whether a message's fourth frame is its signature under `key`. */
function signedBy(key: Buffer, frames: Buffer[]): boolean {
  const sig = frames[3];
  if (key.length === 0 || !sig || sig.length !== TOPIC_MAC_BYTES) return false;
  return timingSafeEqual(sig, topicMac(key, frames[0]!, frames[1]!, frames[2]!));
}

export class KvEventCollector {
  readonly stats: CollectorStats = {
    received: 0,
    dropped: {
      malformed: 0,
      oversized: 0,
      topic: 0,
      "unknown-engine": 0,
      "ambiguous-engine": 0,
      forged: 0,
    },
    authFailures: 0,
  };
  private readonly log = logger("kvevents.collector");
  private readonly byId = new Map<string, Attached>();
  /** address → engine id; null when two attached engines share a bare host */
  private readonly byAddress = new Map<string, string | null>();
  private readonly seenTopics = new RecentTopics(UNKNOWN_TOPICS_MAX, UNKNOWN_TOPICS_BYTES);
  private warnings = { minute: 0, count: 0 };
  private closed = false;
  private loop: Promise<void> = Promise.resolve();
  private watch: Promise<void> = Promise.resolve();

  private constructor(
    private readonly sub: Subscriber,
    /** the endpoint bound (a wildcard port resolved) */
    readonly endpoint: string,
    private readonly maxBytes: number,
    private readonly zap: ZapRegistration | null,
    /** whose secret key checks engines' signatures: the collector's CURVE keys, or the router's behind a relay */
    private readonly identity: CurveKeys | null,
  ) {}

  /**
   * Binds `endpoint` (e.g. `tcp://*:5557`); engines connect their PUB sockets to it. A message over
   * `maxMessageBytes` is dropped (one frame over it costs its sender the connection: zmq-guard.ts).
   * With `curve`, only publishers whose public key is in `curve.clientKeys` can connect.
   */
  static async bind(
    endpoint: string,
    opts: {
      hwm?: number;
      maxMessageBytes?: number;
      curve?: CurveKeys | null;
      /** the keys engines sign for when the socket itself is plain (a worker's, behind the relay) */
      identity?: CurveKeys | null;
    } = {},
  ): Promise<KvEventCollector> {
    const maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const curve = opts.curve ?? null;
    // CURVE without an allow-list proves the collector to publishers, not publishers to the collector
    if (curve && !curve.clientKeys?.length)
      throw new InvalidConfigError(
        `the KV-event collector's CURVE keys (${curve.source}) name no publisher: list the engines' public keys in clients.keys`,
      );
    const zap = curve ? await registerZap("kv-collector", curve.clientKeys) : null;
    const sub = new Subscriber({
      receiveHighWaterMark: opts.hwm ?? 100000,
      linger: 0,
      maxMessageSize: maxBytes,
      ...(curve ? { ...curveServerOptions(curve), zapDomain: zap!.domain } : {}),
    });
    sub.subscribe("");
    observeFromNow(sub);
    try {
      await sub.bind(endpoint);
    } catch (err) {
      sub.close();
      await zap?.release();
      throw new BindError(`cannot bind the KV-event collector to ${endpoint}: ${(err as Error).message}`);
    }
    const c = new KvEventCollector(
      sub,
      connectableEndpoint(sub.lastEndpoint ?? endpoint),
      maxBytes,
      zap,
      curve ?? opts.identity ?? null,
    );
    c.loop = c.receiveLoop();
    c.watch = watchDisconnects(sub, "kv-collector", {
      authFailure: () => {
        c.stats.authFailures++;
      },
    });
    c.log.info(
      {
        endpoint: c.endpoint,
        security: curve ? `curve (${curve.source}), ${curve.clientKeys!.length} publisher key(s)` : "none",
      },
      "KV-event collector bound: engines publish to it",
    );
    return c;
  }

  /** the unknown topics remembered (so each is logged once): how many, and their bytes */
  get unknownTopics(): { count: number; bytes: number } {
    return { count: this.seenTopics.size, bytes: this.seenTopics.bytes };
  }

  /** publishers refused by the CURVE allow-list (their handshake never completed) */
  get deniedPublishers(): number {
    return this.zap?.denied ?? 0;
  }

  /** Starts delivering an engine's batches (it may have been publishing, and dropped, before). */
  attach(engine: CollectedEngine, opts: StreamOptions): void {
    if (this.closed) return;
    this.detach(engine.id);
    const stats = newStreamStats();
    const stream = new PublisherStream(opts, stats, this.log.child({ engine: engine.id }));
    let macKey: Buffer | null = null;
    if (engine.publicKey) {
      // without a secret key to check with, nothing under its topic can be believed: all are dropped
      macKey = this.identity ? sharedMacKey(this.identity.secretKey, engine.publicKey) : NO_KEY;
      if (!this.identity)
        this.log.error(
          { engine: engine.id },
          "the engine has a CURVE key but the collector has no keys to check its messages with: its events are dropped",
        );
    }
    this.byId.set(engine.id, { engine, stream, stats, macKey });
    this.reindex();
  }

  detach(id: string): void {
    const a = this.byId.get(id);
    if (!a) return;
    a.stream.close();
    this.byId.delete(id);
    this.reindex();
  }

  attached(id: string): boolean {
    return this.byId.has(id);
  }

  /** the ordering and replay counters of one attached engine */
  streamStats(id: string): StreamStats | undefined {
    return this.byId.get(id)?.stats;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const a of this.byId.values()) a.stream.close();
    this.byId.clear();
    this.byAddress.clear();
    this.sub.close();
    await Promise.all([this.loop, this.watch]);
    await this.zap?.release();
  }

  private reindex(): void {
    this.byAddress.clear();
    for (const { engine } of this.byId.values()) {
      for (const addr of engine.addresses) {
        const had = this.byAddress.get(addr);
        this.byAddress.set(addr, had === undefined || had === engine.id ? engine.id : null);
      }
    }
  }

  private drop(why: CollectorDrop, topic: string): void {
    this.stats.dropped[why]++;
    if (why === "malformed" || why === "oversized" || !this.seenTopics.add(topic)) return;
    const minute = Math.floor(Date.now() / 60_000);
    if (minute !== this.warnings.minute) this.warnings = { minute, count: 0 };
    if (++this.warnings.count > WARNINGS_PER_MINUTE) return;
    const hint =
      why === "topic"
        ? `topics must read ${COLLECTOR_TOPIC_PREFIX}<engine host:port>@<model>`
        : why === "ambiguous-engine"
          ? "two engines share this host: put the port in the topic"
          : why === "forged"
            ? "not signed with the engine's own CURVE key: another publisher wrote this engine's topic"
            : "no engine the router knows has this address (yet): its events are dropped until it is discovered";
    this.log.warn({ topic, reason: why }, `KV events dropped: ${hint}`);
  }

  private async receiveLoop(): Promise<void> {
    try {
      for await (const frames of this.sub) {
        if (this.closed) return;
        if (oversized(frames, this.maxBytes, "kv-collector")) {
          this.drop("oversized", "");
          continue;
        }
        // a fourth frame: the message's signature (publishers with CURVE keys that connect out)
        const seq = frames.length === 3 || frames.length === 4 ? readSeq(frames[1]) : null;
        if (seq === null) {
          this.drop("malformed", "");
          continue;
        }
        this.stats.received++;
        const head = frames[0]!;
        const topic = (head.length > TOPIC_READ_BYTES ? head.subarray(0, TOPIC_READ_BYTES) : head).toString(
          "utf8",
        );
        const address = topicAddress(topic);
        if (address === null) {
          this.drop("topic", topic);
          continue;
        }
        const id = this.byAddress.get(address);
        if (id === undefined) this.drop("unknown-engine", topic);
        else if (id === null) this.drop("ambiguous-engine", topic);
        else {
          const a = this.byId.get(id)!;
          if (a.macKey && !signedBy(a.macKey, frames)) this.drop("forged", topic);
          else a.stream.receive(seq, frames[2]!);
        }
      }
    } catch (err) {
      if (!this.closed) this.log.error({ err }, "KV-event collector stopped");
    }
  }
}
