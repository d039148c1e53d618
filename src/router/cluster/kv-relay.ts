// Collector mode with router workers: engines publish their KV events to one address
// (`routing.kvEvents.bind`), and only one process may bind it. The primary binds it and passes every
// message on, frames untouched, to each worker, whose own collector binds a private ipc:// endpoint
// instead (workerKvEndpoint): each worker then decodes, sequences, replays and indexes exactly as a
// lone router does, and sees every engine's events. A slow worker loses messages past the high-water
// mark; its collector detects the gap by sequence number and replays or purges (src/kvevents). The
// bound socket is capped in message size like a lone router's collector (src/kvevents/zmq-guard.ts):
// what is too big is dropped here, before any worker sees it. With the router's CURVE keys the bound
// socket lets in only the listed publishers (ZAP, src/kvevents/zap.ts), as a lone router's collector
// does; the workers' ipc endpoints stay plain (reached through the file system, not the network).
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Publisher, Subscriber } from "zeromq";
import { curveServerOptions, type CurveKeys } from "../../kvevents/curve.js";
import { registerZap, type ZapRegistration } from "../../kvevents/zap.js";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  observeFromNow,
  oversized,
  watchDisconnects,
} from "../../kvevents/zmq-guard.js";
import { logger } from "../../obs/log.js";
import { BindError, InvalidConfigError } from "../../errors/index.js";

const log = logger("router.kv-relay");

/** The private endpoint worker `slot` of this primary binds its collector to. */
export function workerKvEndpoint(slot: number, primaryPid = process.pid): string {
  return `ipc://${join(tmpdir(), `switchyard-kv-${primaryPid}-${slot}.sock`)}`;
}

export class KvEventRelay {
  private closed = false;
  private loop: Promise<void> = Promise.resolve();
  private watch: Promise<void> = Promise.resolve();
  relayed = 0;
  /** messages over the cap that libzmq could not refuse (many frames), not relayed */
  oversized = 0;

  private constructor(
    private readonly sub: Subscriber,
    private readonly pub: Publisher,
    readonly endpoint: string,
    private readonly maxBytes: number,
    private readonly zap: ZapRegistration | null,
  ) {}

  /**
   * Binds `bind` (where engines publish) and forwards to each of `targets` (the workers' endpoints)
   * every message up to `maxMessageBytes`.
   */
  static async start(
    bind: string,
    targets: readonly string[],
    maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
    curve: CurveKeys | null = null,
  ): Promise<KvEventRelay> {
    if (curve && !curve.clientKeys?.length)
      throw new InvalidConfigError(
        `the KV-event collector's CURVE keys (${curve.source}) name no publisher: list the engines' public keys in clients.keys`,
      );
    const zap = curve ? await registerZap("kv-relay", curve.clientKeys) : null;
    const sub = new Subscriber({
      receiveHighWaterMark: 100_000,
      linger: 0,
      maxMessageSize: maxMessageBytes,
      ...(curve ? { ...curveServerOptions(curve), zapDomain: zap!.domain } : {}),
    });
    sub.subscribe();
    observeFromNow(sub);
    try {
      await sub.bind(bind);
    } catch (err) {
      sub.close();
      await zap?.release();
      throw new BindError(`cannot bind the KV-event collector to ${bind}: ${(err as Error).message}`);
    }
    const pub = new Publisher({ sendHighWaterMark: 100_000, linger: 0 });
    for (const t of targets) pub.connect(t);
    const r = new KvEventRelay(sub, pub, sub.lastEndpoint ?? bind, maxMessageBytes, zap);
    r.loop = r.run();
    r.watch = watchDisconnects(sub, "kv-relay");
    log.info(
      { endpoint: r.endpoint, workers: targets.length, security: curve ? `curve (${curve.source})` : "none" },
      "KV-event collector bound; relaying to the workers",
    );
    return r;
  }

  private async run(): Promise<void> {
    try {
      for await (const frames of this.sub) {
        if (this.closed) break;
        if (oversized(frames, this.maxBytes, "kv-relay")) {
          this.oversized++;
          continue;
        }
        await this.pub.send(frames);
        this.relayed++;
      }
    } catch (err) {
      if (!this.closed) log.error({ err: (err as Error).message }, "KV-event relay stopped");
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sub.close();
    this.pub.close();
    await Promise.all([this.loop, this.watch]);
    await this.zap?.release();
  }
}
