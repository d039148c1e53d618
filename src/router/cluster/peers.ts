// Active-active router replicas: every replica publishes, every `peers.interval`, its in-flight
// counts per engine (absolute, all its workers together) and the routing picks it made since its
// last report, on a ZMQ PUB socket; it subscribes to every other replica's (static endpoints, or the
// addresses of a headless Service's DNS name). Another replica's load is added into the engines'
// views like another worker's, at most one interval (plus the network) old, and forgotten when the
// replica falls silent for `peers.expireAfter`; its picks feed the prefix index and the watchdog.
// ZMQ drops what a slow subscriber cannot take (high-water mark): a report is a snapshot, the next one
// replaces it. A report is checked and bounded before it counts: at most `peers.maxMessageBytes`
// (libzmq cuts off a peer that sends more), and counts beyond what one engine can plausibly hold are
// cut to it and counted (a replica claiming 2^53 requests on an engine would take it out of rotation).
// With `peers.secret` (or `secretFile`) every report carries an HMAC-SHA256 of its bytes under the
// replicas' shared secret, and one without a valid signature is dropped and counted: only a replica
// holding the secret can tell the others where a stored response lives and whose it is. Reports are
// signed, not encrypted.
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { lookup } from "node:dns/promises";
import { hostname } from "node:os";
import { Publisher, Subscriber } from "zeromq";
import { CONTROL_MAX_MESSAGE_BYTES, watchDisconnects, zmqGuardCounts } from "../../kvevents/zmq-guard.js";
import { logger } from "../../obs/log.js";
import { DEFAULT_MAX_REPORTED_IN_FLIGHT, type PeersConfig } from "../config/cluster.js";
import type { LoadCounts, Pick } from "./protocol.js";
import type { ResponseLink } from "../dataplane/response-affinity.js";
import { BindError, InputFileError, InvalidConfigError } from "../../errors/index.js";

const log = logger("router.peers");

const TOPIC = "switchyard.router.v1";
/** replicas remembered at once; reports from more are ignored */
const MAX_PEERS = 256;
const MAX_ROWS = 4096;
const MAX_PICKS = 4096;
const MAX_IDS = 4096;

/** What the peer link reads from and writes to this replica (its primary, or a lone router). */
export interface PeerHub {
  /** this replica's own counts, all its processes together */
  load(): LoadCounts[];
  /** the picks this replica made since the last call */
  takePicks(): Pick[];
  /** a replica's whole table: engines with a count (an engine it leaves out is at 0) */
  peerLoad(source: string, load: LoadCounts[]): void;
  peerGone(source: string): void;
  peerPicks(picks: Pick[]): void;
  /** stored responses' ids this replica learned since the last call (../dataplane/response-affinity.ts) */
  takeResponses?(): ResponseLink[];
  /**
   * another replica's; `signed`: its report carried a valid signature under the shared secret (false
   * without one: with tenancy on, nothing then proves whose a response is)
   */
  peerResponses?(links: ResponseLink[], signed: boolean): void;
}

/** One replica's report, as sent. */
export interface PeerReport {
  v: 1;
  id: string;
  seq: number;
  load: LoadCounts[];
  picks: Pick[];
  /** stored responses' engines; absent from replicas that predate response affinity */
  responses?: ResponseLink[];
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** Prefill tokens one request awaiting its first token may still need: beyond any context window. */
const MAX_PROMPT_TOKENS = 2 ** 21;

/** A report as received: bounded, with how many of its counts had to be cut. */
export interface ReceivedReport extends PeerReport {
  clamped: number;
}

/**
 * One engine's row cut to what an engine can hold: requests in flight to `maxInFlight`, those awaiting
 * a first token to the requests in flight, their prefill to MAX_PROMPT_TOKENS each (the order of
 * SHARED_FIELDS, shared-load.ts). Returns how many values were cut.
 */
function clampRow(row: number[], maxInFlight: number): number {
  let cut = 0;
  const bound = (i: number, max: number) => {
    if (i < row.length && row[i]! > max) {
      row[i] = max;
      cut++;
    }
  };
  bound(1, maxInFlight);
  bound(2, row[1] ?? maxInFlight);
  bound(3, (row[2] ?? 0) * MAX_PROMPT_TOKENS);
  return cut;
}

/** Parses and bounds a report from the network; null when it is not one. */
export function parseReport(
  buf: Buffer,
  maxInFlight = DEFAULT_MAX_REPORTED_IN_FLIGHT,
): ReceivedReport | null {
  let doc: unknown;
  try {
    doc = JSON.parse(buf.toString("utf8"));
  } catch {
    return null;
  }
  if (typeof doc !== "object" || doc === null) return null;
  const r = doc as Record<string, unknown>;
  if (r.v !== 1 || typeof r.id !== "string" || r.id.length === 0 || r.id.length > 200 || !isCount(r.seq))
    return null;
  if (!Array.isArray(r.load) || !Array.isArray(r.picks)) return null;
  const load: LoadCounts[] = [];
  let clamped = 0;
  for (const row of r.load.slice(0, MAX_ROWS)) {
    if (!Array.isArray(row) || typeof row[0] !== "string" || row[0].length > 2048) return null;
    if (!row.slice(1).every(isCount)) return null;
    clamped += clampRow(row as number[], maxInFlight);
    load.push(row as LoadCounts);
  }
  const picks: Pick[] = [];
  for (const p of r.picks.slice(-MAX_PICKS)) {
    if (!Array.isArray(p) || p.length !== 3 || typeof p[0] !== "string" || p[0].length > 2048) return null;
    const ids = p[1] as unknown;
    if (!Array.isArray(ids) || ids.length > MAX_IDS || !ids.every((x) => Number.isSafeInteger(x)))
      return null;
    if (typeof p[2] !== "number" || !(p[2] >= 0)) return null;
    picks.push([p[0], ids as number[], p[2]]);
  }
  // response ids with their engines: a malformed link is skipped, not the report
  const responses: ResponseLink[] = [];
  if (Array.isArray(r.responses))
    for (const l of r.responses.slice(-MAX_PICKS)) {
      // then the response's session ("" when none) and its owner (the tenant, with tenancy on)
      if (
        Array.isArray(l) &&
        l.length >= 3 &&
        l.length <= 5 &&
        l.every((x) => typeof x === "string" && x.length <= 2048)
      )
        responses.push(l as ResponseLink);
    }
  return { v: 1, id: r.id, seq: r.seq, load, picks, responses, clamped };
}

/** The replicas' shared secret from `peers.secret` or `peers.secretFile`; undefined when neither is set. */
export function peerSecret(cfg: {
  secret?: string | undefined;
  secretFile?: string | undefined;
}): Buffer | undefined {
  if (cfg.secret !== undefined) return Buffer.from(cfg.secret, "utf8");
  if (cfg.secretFile === undefined) return undefined;
  let text: string;
  try {
    if (statSync(cfg.secretFile).size > 64 * 1024) throw new InputFileError("over 64 KiB");
    text = readFileSync(cfg.secretFile, "utf8").trim();
  } catch (err) {
    throw new InputFileError(
      `cannot read peers.secretFile ${cfg.secretFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (text.length < 16)
    throw new InvalidConfigError(
      `peers.secretFile ${cfg.secretFile}: the secret needs 16 characters or more`,
    );
  return Buffer.from(text, "utf8");
}

/** A report's signature: HMAC-SHA256 of its bytes under the shared secret. */
export function signReport(secret: Buffer, payload: Buffer | string): Buffer {
  return createHmac("sha256", secret).update(payload).digest();
}

function signedBy(secret: Buffer, payload: Buffer, mac: Buffer | undefined): boolean {
  if (mac === undefined || mac.length !== 32) return false;
  return timingSafeEqual(signReport(secret, payload), mac);
}

export class PeerSync {
  readonly id: string;
  private seq = 0;
  private closed = false;
  private readonly seen = new Map<string, number>();
  private readonly connected = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private loop: Promise<void> = Promise.resolve();
  private watch: Promise<void> = Promise.resolve();
  /**
   * reports received and dropped (malformed, unsigned or badly signed, too many peers), those of them
   * dropped for their signature, counts cut to the bound, for tests and logs
   */
  readonly stats = { sent: 0, received: 0, dropped: 0, unsigned: 0, clamped: 0 };

  private constructor(
    private readonly cfg: PeersConfig,
    private readonly hub: PeerHub,
    private readonly pub: Publisher,
    private readonly sub: Subscriber,
    /** the endpoint bound (a wildcard port resolved) */
    readonly endpoint: string,
    /** the shared secret reports are signed with; undefined: plain reports */
    private readonly secret: Buffer | undefined,
  ) {
    this.id = cfg.id ?? `${hostname()}/${process.pid}`;
  }

  /** Binds this replica's endpoint and connects to the others; null when `peers.bind` is unset. */
  static async start(cfg: PeersConfig, hub: PeerHub): Promise<PeerSync | null> {
    if (!cfg.bind) return null;
    const secret = peerSecret(cfg);
    // a PUB reads only subscriptions: a few bytes each
    const pub = new Publisher({
      linger: 0,
      sendHighWaterMark: 100,
      maxMessageSize: CONTROL_MAX_MESSAGE_BYTES,
    });
    try {
      await pub.bind(cfg.bind);
    } catch (err) {
      pub.close();
      throw new BindError(`cannot bind peers.bind ${cfg.bind}: ${(err as Error).message}`);
    }
    const sub = new Subscriber({ linger: 0, receiveHighWaterMark: 100, maxMessageSize: cfg.maxMessageBytes });
    sub.subscribe(TOPIC);
    const s = new PeerSync(cfg, hub, pub, sub, pub.lastEndpoint ?? cfg.bind, secret);
    for (const ep of cfg.endpoints) s.connect(ep);
    s.loop = s.receive();
    s.watch = watchDisconnects(sub, "peers");
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      s.timers.push(t);
    };
    every(cfg.interval, () => void s.publish());
    every(Math.max(cfg.interval, cfg.expireAfter / 4), () => s.expire());
    if (cfg.dns) {
      void s.resolve();
      every(cfg.resolveInterval, () => void s.resolve());
    }
    log.info(
      { id: s.id, endpoint: s.endpoint, peers: cfg.endpoints, dns: cfg.dns ?? null, signed: !!secret },
      "router peers on",
    );
    return s;
  }

  private connect(ep: string): void {
    if (this.connected.has(ep) || this.closed) return;
    this.connected.add(ep);
    this.sub.connect(ep);
  }

  /** The DNS name's addresses, each on its port: new ones connected, gone ones dropped. */
  private async resolve(): Promise<void> {
    const [host, port] = [
      this.cfg.dns!.slice(0, this.cfg.dns!.lastIndexOf(":")),
      this.cfg.dns!.slice(this.cfg.dns!.lastIndexOf(":") + 1),
    ];
    let addrs: { address: string; family: number }[];
    try {
      addrs = await lookup(host, { all: true });
    } catch (err) {
      log.warn({ dns: this.cfg.dns, err: (err as Error).message }, "cannot resolve the router peers");
      return;
    }
    const want = new Set(
      addrs.map((a) => (a.family === 6 ? `tcp://[${a.address}]:${port}` : `tcp://${a.address}:${port}`)),
    );
    for (const ep of want) this.connect(ep);
    for (const ep of [...this.connected]) {
      if (want.has(ep) || this.cfg.endpoints.includes(ep)) continue;
      this.connected.delete(ep);
      try {
        this.sub.disconnect(ep);
      } catch {
        // already gone
      }
    }
  }

  private async publish(): Promise<void> {
    if (this.closed) return;
    const report: PeerReport = {
      v: 1,
      id: this.id,
      seq: this.seq++,
      load: this.hub.load(),
      picks: this.hub.takePicks().slice(-MAX_PICKS),
    };
    const responses = this.hub.takeResponses?.() ?? [];
    if (responses.length > 0) report.responses = responses.slice(-MAX_PICKS);
    const payload = JSON.stringify(report);
    try {
      await this.pub.send(
        this.secret ? [TOPIC, payload, signReport(this.secret, payload)] : [TOPIC, payload],
      );
      this.stats.sent++;
    } catch (err) {
      if (!this.closed) log.warn({ err: (err as Error).message }, "router peers: report not sent");
    }
  }

  private async receive(): Promise<void> {
    try {
      for await (const [, payload, mac] of this.sub) {
        if (this.closed) break;
        if (!payload) continue;
        if (this.secret && !signedBy(this.secret, payload, mac)) {
          if (this.stats.unsigned === 0)
            log.warn(
              "router peers: a report without a valid signature was dropped (peers.secret differs, or not a replica)",
            );
          this.stats.unsigned++;
          this.stats.dropped++;
          continue;
        }
        const r = parseReport(payload, this.cfg.maxReportedInFlight);
        if (!r) {
          this.stats.dropped++;
          continue;
        }
        if (r.clamped > 0) {
          if (this.stats.clamped === 0)
            log.warn(
              { peer: r.id, maxReportedInFlight: this.cfg.maxReportedInFlight },
              "router peer reported more than an engine can hold: its counts are cut (switchyard_routing_peer_counts_clamped_total)",
            );
          this.stats.clamped += r.clamped;
          zmqGuardCounts.peerCountsClamped += r.clamped;
        }
        if (r.id === this.id) continue;
        if (!this.seen.has(r.id) && this.seen.size >= MAX_PEERS) {
          this.stats.dropped++;
          continue;
        }
        if (!this.seen.has(r.id)) log.info({ peer: r.id }, "router peer joined");
        this.seen.set(r.id, performance.now());
        this.stats.received++;
        this.hub.peerLoad(`p:${r.id}`, r.load);
        if (r.picks.length > 0) this.hub.peerPicks(r.picks);
        if (r.responses && r.responses.length > 0)
          this.hub.peerResponses?.(r.responses, this.secret !== undefined);
      }
    } catch (err) {
      if (!this.closed) log.error({ err: (err as Error).message }, "router peers: receive loop ended");
    }
  }

  private expire(): void {
    const now = performance.now();
    for (const [id, at] of this.seen) {
      if (now - at <= this.cfg.expireAfter) continue;
      this.seen.delete(id);
      this.hub.peerGone(`p:${id}`);
      log.warn({ peer: id, silentMs: Math.round(now - at) }, "router peer silent: its load no longer counts");
    }
  }

  /** Replicas heard from within expireAfter. */
  peers(): string[] {
    return [...this.seen.keys()];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.sub.close();
    this.pub.close();
    await Promise.all([this.loop, this.watch]);
    for (const id of this.seen.keys()) this.hub.peerGone(`p:${id}`);
    this.seen.clear();
  }
}
