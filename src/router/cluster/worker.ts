// A router worker: one of the processes of `switchyard router --workers N`, serving the shared port.
// It runs the whole data plane (the same Router a lone router runs) and links it to the primary:
// - engines, health and scraped load come from the primary (follower.ts); what its traffic says of
//   an engine goes there;
// - its in-flight counts and routing picks go out once per event-loop turn, and every other worker's
//   (and replica's) come in (shared-load.ts, picks.ts): each worker routes on the group's state;
// - /metrics, /admin/drain and /admin/reload are answered for the group, through the primary;
// - the primary's config reloads and shutdowns apply here; a primary that goes away drains this one.
// The worker process's start (the primary's word, then startRouter with this link) is composed in
// ../cli.ts: this folder sits below the router's index, which starts a lone replica's peers here.
import cluster from "node:cluster";
import { logger } from "../../obs/log.js";
import { shutdown, shuttingDown } from "../../obs/lifecycle.js";
import type { Router, RouterGroup } from "../edge/server.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { RegistryFollower } from "./follower.js";
import { PickExchange } from "./picks.js";
import { GroupLimiter } from "./limits.js";
import { Claims } from "./claims.js";
import { WorkerSlotClaims } from "./worker-claims.js";
import type { SlotClaimsFactory } from "../dataplane/slot-claims.js";
import { Outbox } from "./outbox.js";
import { ConnectionBalance } from "./conn-balance.js";
import { isToWorker, type ToPrimary, type ToWorker } from "./protocol.js";
import { SharedLoad, queuedPrefillOf } from "./shared-load.js";
import { PeerError } from "../../errors/index.js";

const log = logger("router.worker");

/**
 * A change is sent at once when the last report is at least this old, and with the rest of the
 * event-loop turn otherwise: at the request rates of LLM traffic every decision reaches the other
 * workers before their next one (two workers deciding on stale counts pile requests onto one engine:
 * measured as a lower prefix hit rate and a worse TTFT p99), while at tens of thousands of tiny
 * requests a second one report per turn carries many.
 */
const IMMEDIATE_GAP_MS = 1;
/**
 * When no decision of any worker reads the counts (round-robin, no per-engine in-flight cap), they
 * are reported this often instead: they only feed /metrics, status and the replicas' reports, all
 * read at human or `peers.interval` time scales, and a report per turn was the largest share of a
 * worker's cost beyond serving (measured: the primary's relaying alone 7–10 µs per tiny request).
 */
const RELAXED_REPORT_MS = 100;
/** how often engines that sent bytes are reported (probes time out in seconds) */
const PROGRESS_EVERY_MS = 250;
/** a change in this worker's client connections is reported this long after it (a burst as one) */
const CONNS_REPORT_DELAY_MS = 5;
/** and no sooner than this after the last report: clients that connect per request cost no more */
const CONNS_REPORT_GAP_MS = 25;
/** a request to the primary that gets no answer in this long fails */
const ASK_TIMEOUT_MS = 10_000;

export type StartMessage = Extract<ToWorker, { t: "start" }>;

/** a worker whose primary is gone is shutting down: what it would say is moot, and never an error */
const ignore = () => undefined;

/** what this worker says in one turn, written once (outbox.ts) */
const outbox = new Outbox<ToPrimary>((m) => {
  if (process.connected) process.send!(m, undefined, undefined, ignore);
});

function send(m: ToPrimary): void {
  outbox.send(m);
}

/** one message from the primary, or each of a turn's (outbox.ts) */
function eachOf(m: ToWorker, fn: (one: ToWorker) => void): void {
  if (m.t !== "many") return fn(m);
  for (const one of m.ms) fn(one);
}

// process-wide: a worker process has one IPC channel to its primary; what arrived after the start
// message and before the link was made (one IPC read can carry many), and who listened for it
const ipc = {
  early: undefined as ToWorker[] | undefined,
  earlyListener: undefined as ((m: unknown) => void) | undefined,
};

/** Says hello to the primary and waits for its start message (config, slot). */
export function awaitStart(): Promise<StartMessage> {
  return new Promise((resolve) => {
    ipc.earlyListener = (msg: unknown) => {
      if (!isToWorker(msg)) return;
      eachOf(msg, (m) => {
        if (ipc.early) ipc.early.push(m);
        else if (m.t === "start") {
          ipc.early = [];
          resolve(m);
        }
      });
    };
    process.on("message", ipc.earlyListener);
    send({ t: "hello" });
  });
}

export class WorkerLink implements RouterGroup {
  readonly label: string;
  readonly load: SharedLoad;
  private readonly follower: RegistryFollower;
  private readonly picks: PickExchange;
  private readonly limits = new GroupLimiter(send);
  private readonly claims: Claims;
  /** the data plane's SlotClaims in this worker: its picks are claims (worker-claims.ts; wired in ../cli.ts) */
  readonly slotClaims: SlotClaimsFactory;
  private flushScheduled = false;
  private lastFlush = -Infinity;
  /** the `acked` of the last report sent (claims.ts) */
  private ackedSent = 0;
  private readonly asks = new Map<number, (m: { text?: string; error?: string }) => void>();
  private askSeq = 0;
  private readonly progressSeen = new Map<string, number>();
  private readonly progressTimer: NodeJS.Timeout;
  /** this worker's share of the group's client connections (conn-balance.ts) */
  readonly balance: ConnectionBalance;
  private connsSent = 0;
  private connsReportDue = false;
  private connsReportedAt = -Infinity;
  /** applies a config the primary sent (set by the starter: it owns the keys watcher) */
  applyConfig: ((config: Record<string, unknown>) => void) | undefined;
  private readonly onMessage = (m: unknown) => {
    if (isToWorker(m)) eachOf(m, (one) => this.handle(one));
  };

  constructor(
    private readonly router: Router,
    start: StartMessage,
  ) {
    this.label = `worker ${start.slot + 1}/${start.workers}`;
    const reg = router.registry;
    this.follower = new RegistryFollower(reg, send, (e, hits) => router.cache.hitsScraped(e, hits));
    this.load = new SharedLoad(
      reg,
      queuedPrefillOf(() => router.routingPolicy),
    );
    // picks are held until they stand: a claimed one by its answer, any other at its slot
    this.picks = new PickExchange(
      { prefix: router.cache.prefix.index, watchdog: router.cache.watchdog },
      this.schedule,
      true,
    );
    reg.onSlot = () => {
      this.picks.commit(this.picks.takeHeld());
      this.schedule();
    };
    const { claims, claimWait } = router.metrics;
    this.claims = new Claims(
      reg,
      this.load,
      this.picks,
      send,
      this.policyReadsLoad,
      () => router.routingPolicy,
      (result, waitedS) => {
        claims.inc({ result });
        claimWait.child(result).observe(waitedS);
      },
    );
    this.slotClaims = (host) => new WorkerSlotClaims(this.claims, reg, host);
    // a follow-up may reach another worker: the id goes out at once (not with the next load report),
    // before the answer that carries it reaches the client
    router.affinity.sharing = true;
    router.affinity.onLearned = () => send({ t: "sync", responses: router.affinity.take() });
    router.tenancy.shareLocalLimits(this.limits);
    this.balance = new ConnectionBalance();
    const rebalanced = router.metrics.connectionsRebalanced.child();
    router.closeForBalance = () => {
      if (!this.balance.closeThis()) return false;
      rebalanced.value++;
      return true;
    };
    router.onConnectionsChanged = this.reportConnectionsSoon;
    this.progressTimer = setInterval(() => this.reportProgress(), PROGRESS_EVERY_MS);
    this.progressTimer.unref();
    if (ipc.earlyListener) process.off("message", ipc.earlyListener);
    process.on("message", this.onMessage);
    for (const m of ipc.early ?? []) this.handle(m);
    ipc.early = undefined;
    cluster.worker?.on("disconnect", () => {
      // the primary is gone: drain and exit; if a drain is already under way (the primary's second
      // signal ends it by exiting), exit now
      if (shuttingDown()) process.exit(130);
      log.warn("the router's primary process is gone: draining this worker");
      void shutdown("primary gone");
    });
  }

  /** This worker's own in-flight on the engine (the view carries the group's). */
  ownInFlight(e: EngineRecord): number {
    return this.load.own(e);
  }

  /** round-robin reads no load: its picks claim nothing (claims.ts) */
  private readonly policyReadsLoad = (): boolean => this.router.routingPolicy.name !== "round-robin";

  private readonly schedule = (): void => {
    // no decision reads the group's counts: neither the policy's pick nor a per-engine cap
    const relaxed = !this.policyReadsLoad() && this.router.config.admission.maxInFlightPerEngine === 0;
    if (!relaxed && performance.now() - this.lastFlush >= IMMEDIATE_GAP_MS) return this.send();
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    if (relaxed) setTimeout(this.flush, RELAXED_REPORT_MS).unref();
    else setImmediate(this.flush);
  };

  private readonly flush = (): void => {
    this.flushScheduled = false;
    this.send();
  };

  private send(): void {
    this.lastFlush = performance.now();
    const load = this.load.changes();
    const picks = this.picks.take();
    // answers heard since the last report: say so even when no count changed (a confirmed pick whose
    // request ended before this report leaves the counts as last reported, and the primary would
    // otherwise keep adding it on top: ledger.ts)
    const acked = this.claims.acked;
    if (load.length === 0 && picks.length === 0 && acked === this.ackedSent) return;
    const m: ToPrimary = { t: "sync" };
    if (load.length > 0 || acked !== this.ackedSent) {
      if (load.length > 0) m.load = load;
      m.acked = acked;
      this.ackedSent = acked;
    }
    if (picks.length > 0) m.picks = picks;
    send(m);
  }

  private reportProgress(): void {
    let progress: string[] | undefined;
    for (const e of this.router.registry.engines.values()) {
      const seen = this.progressSeen.get(e.url) ?? 0;
      if (e.lastByteAt <= seen) continue;
      this.progressSeen.set(e.url, e.lastByteAt);
      (progress ??= []).push(e.url);
    }
    if (progress) send({ t: "sync", progress });
  }

  /**
   * Told of every change of the count (ClientConnections): a burst of connections opening or closing
   * is reported once, a few ms after it began
   */
  private readonly reportConnectionsSoon = (): void => {
    if (this.connsReportDue) return;
    this.connsReportDue = true;
    const gap = this.connsReportedAt + CONNS_REPORT_GAP_MS - performance.now();
    setTimeout(this.reportConnectionsNow, Math.max(CONNS_REPORT_DELAY_MS, gap)).unref();
  };

  /**
   * Sent even when the count is back where it was: connections closed for balance whose clients all
   * came back here leave it unchanged, and only a new total lets this worker close again
   */
  private readonly reportConnectionsNow = (): void => {
    this.connsReportDue = false;
    this.connsSent = this.router.connections.count;
    this.connsReportedAt = performance.now();
    send({ t: "conns", n: this.connsSent });
  };

  private handle(m: ToWorker): void {
    switch (m.t) {
      case "engine":
        return this.follower.status(m.status);
      case "models":
        return this.follower.models(m.url, m.cards);
      case "remove":
        this.progressSeen.delete(m.url);
        return this.follower.remove(m.url);
      case "load":
        return this.load.set(m.source, m.load);
      case "gone":
        return this.load.drop(m.source);
      case "conns":
        // the count in that total (its last report), not the live one: a live count beside a total of
        // older reports took reconnections not yet reported for an excess, and closed them again
        return this.balance.update(this.connsSent, m.total, m.workers, this.router.connections.count);
      case "picks":
        return this.picks.apply(m.picks);
      case "responses":
        return m.unsigned
          ? this.router.affinity.applyFromPeer(m.links, false, this.router.gate.enabled)
          : this.router.affinity.apply(m.links);
      case "config":
        return this.applyConfig?.(m.config);
      case "drain":
        return this.router.startDrain();
      case "shutdown":
        return void shutdown("primary");
      case "exit":
        return process.exit(130);
      case "metrics-get":
        return void this.router.metrics.registry.getMetricsAsJSON().then(
          (data) => send({ t: "metrics-json", id: m.id, data: data as unknown[] }),
          () => send({ t: "metrics-json", id: m.id, data: [] }),
        );
      case "reply": {
        const done = this.asks.get(m.id);
        this.asks.delete(m.id);
        return done?.(m);
      }
      case "limit-answer":
        return this.limits.answer(m);
      case "claimed":
        this.claims.answer(m.results);
        return this.schedule();
      case "start":
      case "many":
        return;
    }
  }

  private ask(what: "metrics" | "reload" | "drain"): Promise<{ text?: string; error?: string }> {
    const id = ++this.askSeq;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.asks.delete(id);
        resolve({ error: `the router's primary process did not answer (${what})` });
      }, ASK_TIMEOUT_MS);
      this.asks.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
      send({ t: "ask", id, what });
    });
  }

  async metrics(): Promise<string> {
    const r = await this.ask("metrics");
    if (r.error !== undefined) throw new PeerError(r.error);
    return r.text ?? "";
  }

  drain(): void {
    this.router.startDrain();
    void this.ask("drain");
  }

  async reload(): Promise<string | undefined> {
    return (await this.ask("reload")).error;
  }

  /** Tells the primary where this worker listens (the first one's answer is the group's URL). */
  listening(address: string, port: number, family: string): void {
    send({ t: "listening", address, port, family });
  }

  close(): void {
    clearInterval(this.progressTimer);
    process.off("message", this.onMessage);
    this.picks.close();
    this.claims.close();
    this.router.registry.onSlot = undefined;
  }
}
