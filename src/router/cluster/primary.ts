// The primary of `switchyard router --workers N`: N worker processes serve one port (node:cluster
// hands each accepted connection to the next worker), and this process keeps what they share:
// - the control plane (control-plane.ts): discovery, probes, scrapes and health, for all of them;
// - the shared routing state: each worker's in-flight counts and routing picks go to every other
//   worker (and to other replicas, peers.ts, whose reports come back the same way);
// - the group's face: /metrics aggregated from every process, /admin/drain and /admin/reload for
//   all, config-file reloads applied everywhere, the KV-event collector bound once (kv-relay.ts);
// - the lifecycle: a worker that dies is replaced; the first signal drains every worker, the
//   second exits.
import cluster, { type Worker } from "node:cluster";
import { logger } from "../../obs/log.js";
import { onShutdown, shutdownNeedsMs } from "../../obs/lifecycle.js";
import {
  loadConfig,
  mergeConfig,
  readConfigFile,
  type RouterConfig,
  type RouterConfigInput,
} from "../config/config.js";
import { workersOwnSockets } from "../edge/accept.js";
import { watchConfigFile } from "../config/watch.js";
import { aggregateMetrics } from "./aggregate.js";
import { ControlPlane } from "./control-plane.js";
import { loadCurveKeys, withEnginePublishers } from "../../kvevents/curve.js";
import { KvEventRelay, workerKvEndpoint } from "./kv-relay.js";
import { PeerSync } from "./peers.js";
import { LimitKeeper } from "./limits.js";
import { WorkerLedger, countedEveryPick } from "./ledger.js";
import { Outbox } from "./outbox.js";
import { usableCores, workerCount, workerExecArgv } from "./worker-count.js";
import { ConnectionCensus } from "./conn-balance.js";
import { isToPrimary, type LoadCounts, type Pick, type ToPrimary, type ToWorker } from "./protocol.js";
import type { ResponseLink } from "../dataplane/response-affinity.js";

const log = logger("router.primary");
const ignore = () => undefined;

/** a worker's metrics that take longer than this are left out of the page */
const METRICS_WAIT_MS = 3_000;
/** restarts faster than this apart count as a crash loop */
const RESTART_WINDOW_MS = 60_000;

export interface PrimaryOptions {
  /** flags, as a partial config (the file's values stay where flags are silent) */
  flags: RouterConfigInput;
  configFile: string | undefined;
  workers: number;
}

/** The config workers run: the same input, with what differs per process adjusted. */
function workerInput(input: Record<string, unknown>, slot: number, relay: boolean): Record<string, unknown> {
  const out = structuredClone(input);
  // tenant limits need nothing here: without Redis the primary keeps the replica's budget
  // (limits.ts); with Redis each worker counts there, and falls back to the replica's share while it
  // is unreachable (onError: open)
  // collector mode: the primary binds the engines' address; each worker binds a private one
  const kv = (out.routing as { kvEvents?: Record<string, unknown> } | undefined)?.kvEvents;
  if (relay && kv) kv.bind = workerKvEndpoint(slot);
  // the primary publishes to the other replicas
  delete out.peers;
  return out;
}

interface Slot {
  worker: Worker | undefined;
  restarts: number[];
  /** the replacement of a worker that exited, once its back-off has passed */
  restartTimer?: NodeJS.Timeout;
  /** its in-flight counts as the group sees them (its reports and its confirmed claims) */
  ledger: WorkerLedger;
  /** what is said to its worker this turn, written once (outbox.ts) */
  outbox: Outbox<ToWorker> | undefined;
  /** the client connections its worker last reported (conn-balance.ts) */
  conns: number;
}

export class Primary {
  private input: Record<string, unknown>;
  private cfg: RouterConfig;
  private readonly cp: ControlPlane;
  private readonly slots: Slot[] = [];
  private stopping = false;
  private listening: ((url: string) => void) | undefined;
  private url: string | undefined;
  private readonly listeningSlots = new Set<number>();
  /** when the group's connection total goes out (conn-balance.ts) */
  private readonly census = new ConnectionCensus();
  private censusTimer: NodeJS.Timeout | undefined;
  private relay: KvEventRelay | undefined;
  private peers: PeerSync | null = null;
  /** picks of this replica's workers since the last peer report */
  private peerPicks: Pick[] = [];
  /** response ids this replica's workers learned since the last peer report */
  private peerResponses: ResponseLink[] = [];
  private unwatch: (() => void) | undefined;
  private readonly waiting = new Map<number, { got: unknown[][]; need: number; done: () => void }>();
  private metricsSeq = 0;
  private readonly limits = new LimitKeeper();
  /** workers bind their own sockets on the port (../edge/accept.ts) */
  private ownSockets = false;

  constructor(private readonly o: PrimaryOptions) {
    this.input = this.readInput();
    this.cfg = loadConfig(this.input, undefined);
    this.cp = new ControlPlane(this.cfg, (m) => this.broadcast(m));
    this.tenancyOptions();
  }

  private tenancyOptions(): void {
    const t = this.cfg.tenancy;
    if (t) this.limits.setOptions({ idleEvictAfter: t.idleEvictAfter, maxStates: t.maxTenantStates });
  }

  private readInput(): Record<string, unknown> {
    const base = this.o.configFile ? readConfigFile(this.o.configFile) : {};
    const flags = { ...this.o.flags };
    return mergeConfig(base, flags as Record<string, unknown>);
  }

  get config(): RouterConfig {
    return this.cfg;
  }

  /** Starts the control plane and the workers; resolves with the URL once the first one listens. */
  async start(): Promise<string> {
    // before anything runs: a taken port fails here as it would for a lone router
    this.ownSockets = await workersOwnSockets(this.cfg.port, this.cfg.host);
    await this.cp.start();
    const { bind, maxMessageBytes, curve } = this.cfg.routing.kvEvents;
    if (bind) {
      const targets = Array.from({ length: this.o.workers }, (_, i) => workerKvEndpoint(i));
      // the keys as at start: a reload re-keys the workers' sockets, not this one
      const keys = curve ? withEnginePublishers(loadCurveKeys(curve)) : null;
      this.relay = await KvEventRelay.start(bind, targets, maxMessageBytes, keys);
    }
    this.peers = await PeerSync.start(this.cfg.peers, {
      load: () => this.cp.load.group((s) => s.startsWith("w")),
      takePicks: () => {
        const p = this.peerPicks;
        this.peerPicks = [];
        return p;
      },
      peerLoad: (source, report) => {
        const load = this.cp.load.replace(source, report);
        this.broadcast({ t: "load", source, load });
      },
      peerGone: (source) => {
        this.cp.load.drop(source);
        this.broadcast({ t: "gone", source });
      },
      peerPicks: (picks) => this.broadcast({ t: "picks", picks }),
      takeResponses: () => {
        const r = this.peerResponses;
        this.peerResponses = [];
        return r;
      },
      peerResponses: (links, signed) =>
        this.broadcast(signed ? { t: "responses", links } : { t: "responses", links, unsigned: true }),
    });
    const execArgv = workerExecArgv(
      process.execArgv,
      process.env,
      usableCores(),
      this.o.workers,
      this.cfg.policy,
    );
    // only a size the primary chose: one the operator gave is theirs, and already on its command line
    const pool = execArgv.find((a) => a.startsWith("--v8-pool-size=") && !process.execArgv.includes(a));
    if (pool)
      log.info({ v8PoolSize: Number(pool.split("=")[1]) }, "each worker keeps fewer V8 background threads");
    cluster.setupPrimary({ serialization: "advanced", execArgv });
    const url = new Promise<string>((resolve) => (this.listening = resolve));
    for (let i = 0; i < this.o.workers; i++) {
      this.slots.push({
        worker: undefined,
        restarts: [],
        ledger: new WorkerLedger(),
        outbox: undefined,
        conns: 0,
      });
      this.fork(i);
    }
    if (this.o.configFile) this.unwatch = watchConfigFile(this.o.configFile, () => void this.reload());
    return await url;
  }

  private fork(slot: number): void {
    const w = cluster.fork({ SWITCHYARD_ROUTER_WORKER: String(slot) });
    const s = this.slots[slot]!;
    s.worker = w;
    s.outbox = new Outbox<ToWorker>((m) => {
      // a worker that just died cannot be told anything: its exit is handled in onExit
      if (w.isConnected()) w.send(m, undefined, undefined, ignore);
    });
    w.on("message", (m: unknown) => {
      if (!isToPrimary(m)) return;
      if (m.t !== "many") return this.onWorker(slot, w, m);
      for (const one of m.ms) this.onWorker(slot, w, one);
    });
    w.on("exit", (code, signal) => this.onExit(slot, w, code, signal));
  }

  private send(w: Worker | undefined, m: ToWorker): void {
    if (!w) return;
    const s = this.slots.find((x) => x.worker === w);
    if (s?.outbox) s.outbox.send(m);
    else if (w.isConnected()) w.send(m, undefined, undefined, ignore);
  }

  /** a count changed: the total goes out once the counts settle (conn-balance.ts) */
  private readonly armCensus = (): void => {
    const due = this.census.due;
    if (due === undefined || this.censusTimer !== undefined) return;
    this.censusTimer = setTimeout(this.censusDue, Math.max(0, due - performance.now()));
    this.censusTimer.unref();
  };

  private readonly censusDue = (): void => {
    this.censusTimer = undefined;
    if (this.census.take(performance.now())) this.broadcastConns();
    // a change came meanwhile: its own settle time
    else this.armCensus();
  };

  /**
   * The group's client connections, and how many workers can take new ones: a worker that is starting
   * (or restarting after a crash) takes none, so the others share the connections as if it were not there
   */
  private broadcastConns(): void {
    let total = 0;
    let accepting = 0;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i]!;
      total += s.conns;
      if (s.worker && this.listeningSlots.has(i)) accepting++;
    }
    this.broadcast({ t: "conns", total, workers: accepting });
  }

  private broadcast(m: ToWorker, except?: number): void {
    for (let i = 0; i < this.slots.length; i++) if (i !== except) this.slots[i]!.outbox?.send(m);
  }

  private onWorker(slot: number, w: Worker, m: ToPrimary): void {
    const source = `w${slot}`;
    switch (m.t) {
      case "hello": {
        // a signal came while it started: it has nothing to drain
        if (this.stopping) return void w.kill("SIGTERM");
        this.send(w, {
          t: "start",
          slot,
          workers: this.o.workers,
          config: workerInput(this.input, slot, this.relay !== undefined),
          ...(this.o.configFile ? { configFile: this.o.configFile } : {}),
          ...(this.ownSockets ? { ownSockets: true } : {}),
        });
        for (const s of this.cp.snapshot()) this.send(w, s);
        for (const other of this.cp.load.sources()) {
          if (other !== source) this.send(w, { t: "load", source: other, load: this.cp.load.table(other) });
        }
        return;
      }
      case "listening": {
        const host = m.family === "IPv6" ? `[${m.address}]` : m.address;
        const shown = host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host;
        this.url ??= `http://${shown}:${m.port}`;
        this.listeningSlots.add(slot);
        // the group listens once every worker does (each takes its share of connections from then)
        if (this.listeningSlots.size === this.o.workers) {
          this.listening?.(this.url);
          this.listening = undefined;
        }
        return;
      }
      case "sync":
        if (m.load || m.acked !== undefined)
          this.publishLoad(slot, this.slots[slot]!.ledger.report(m.load ?? [], m.acked ?? 0));
        if (m.picks) {
          this.broadcast({ t: "picks", picks: m.picks }, slot);
          if (this.peers) for (const p of m.picks) this.peerPicks.push(p);
          if (this.peerPicks.length > 4096) this.peerPicks.splice(0, this.peerPicks.length - 4096);
        }
        // stored responses' homes: every other worker learns them at once, other replicas at the next report
        if (m.responses) {
          this.broadcast({ t: "responses", links: m.responses }, slot);
          if (this.peers) for (const l of m.responses) this.peerResponses.push(l);
          if (this.peerResponses.length > 4096)
            this.peerResponses.splice(0, this.peerResponses.length - 4096);
        }
        if (m.progress) for (const url of m.progress) this.cp.progress(url);
        return;
      case "fail":
        return this.cp.failure(m.url, m.what);
      case "shutdown":
        return this.cp.shuttingDown(m.url);
      case "ok":
        return this.cp.success(m.url);
      case "metrics-json": {
        const wait = this.waiting.get(m.id);
        if (!wait) return;
        wait.got.push(m.data);
        if (wait.got.length >= wait.need) wait.done();
        return;
      }
      case "ask":
        return void this.answer(w, m.id, m.what);
      case "claims":
        return this.claims(slot, w, m);
      case "conns":
        this.slots[slot]!.conns = m.n;
        this.census.changed(performance.now());
        return this.armCensus();
      case "limit-admit":
      case "limit-reserve":
      case "limit-record":
      case "limit-release": {
        const a = this.limits.handle(slot, m);
        if (a) this.send(w, a);
        return;
      }
    }
  }

  /**
   * A worker's picks (claims.ts): its own counts are the truth and apply at once; a pick stands if
   * no count of the others' is above what it read on the engines it depends on (each judged on its
   * own: see claims.ts); for a refused one the worker gets the current counts first, and decides again.
   */
  private claims(slot: number, w: Worker, m: Extract<ToPrimary, { t: "claims" }>): void {
    const source = `w${slot}`;
    const load = this.cp.load;
    const ledger = this.slots[slot]!.ledger;
    this.publishLoad(slot, ledger.report(m.own, m.acked));
    const results: [number, boolean][] = [];
    const stale = new Set<string>();
    // this worker's rows as confirmed picks move them: told to the others once, after the batch (a
    // claim is checked on the others' counts, never on its own worker's)
    const confirmed = new Map<string, LoadCounts>();
    for (const item of m.items) {
      let ok = true;
      for (const seen of item.seen) {
        const url = seen[0];
        const current = load.othersExcept(source, url);
        if (countedEveryPick(seen, current)) continue;
        stale.add(url);
        ok = false;
      }
      if (ok) confirmed.set(item.pick, ledger.confirm(item.id, item.pick));
      results.push([item.id, ok]);
    }
    this.publishLoad(slot, [...confirmed.values()]);
    if (stale.size > 0) {
      // every source the worker may hold counts of, zeros included (a source with none has no rows)
      const sources = new Set(load.sources());
      this.slots.forEach((_, i) => sources.add(`w${i}`));
      for (const p of this.peers?.peers() ?? []) sources.add(`p:${p}`);
      for (const other of sources) {
        if (other === source) continue;
        const have = new Map(load.table(other).map((r) => [r[0], r]));
        const rows = [...stale].map((url) => have.get(url) ?? ([url, 0] as LoadCounts));
        this.send(w, { t: "load", source: other, load: rows });
      }
    }
    this.send(w, { t: "claimed", results });
  }

  private async answer(w: Worker, id: number, what: "metrics" | "reload" | "drain"): Promise<void> {
    try {
      if (what === "drain") {
        this.broadcast({ t: "drain" });
        return this.send(w, { t: "reply", id });
      }
      if (what === "reload") {
        if (!this.o.configFile)
          return this.send(w, { t: "reply", id, error: "this router was started without a config file" });
        const error = this.reload();
        return this.send(w, { t: "reply", id, ...(error !== undefined ? { error } : {}) });
      }
      this.send(w, { t: "reply", id, text: await this.metricsText() });
    } catch (err) {
      this.send(w, { t: "reply", id, error: (err as Error).message });
    }
  }

  /** A worker's counts as the group sees them: kept here, told to the other workers. */
  private publishLoad(slot: number, rows: LoadCounts[]): void {
    if (rows.length === 0) return;
    const source = `w${slot}`;
    this.cp.load.set(source, rows);
    this.broadcast({ t: "load", source, load: rows }, slot);
  }

  /** The group's /metrics: every live worker's registry and this process's, aggregated. */
  async metricsText(): Promise<string> {
    const id = ++this.metricsSeq;
    const live = this.slots.map((s) => s.worker).filter((w): w is Worker => !!w?.isConnected());
    const got: unknown[][] = [];
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, METRICS_WAIT_MS);
      this.waiting.set(id, {
        got,
        need: live.length,
        done: () => {
          clearTimeout(t);
          resolve();
        },
      });
      for (const w of live) this.send(w, { t: "metrics-get", id });
      if (live.length === 0) resolve();
    });
    this.waiting.delete(id);
    if (got.length < live.length)
      log.warn(
        { answered: got.length, workers: live.length },
        "metrics: some workers did not answer in time",
      );
    got.push((await this.cp.metrics.registry.getMetricsAsJSON()) as unknown[]);
    return (await aggregateMetrics(got)).text;
  }

  /** Re-reads the config file; applies it here and in every worker. Returns why it was refused. */
  private reload(): string | undefined {
    let input: Record<string, unknown>;
    let cfg: RouterConfig;
    try {
      input = this.readInput();
      cfg = loadConfig(input, undefined);
    } catch (err) {
      log.error({ err: (err as Error).message }, "config reload failed; keeping the previous configuration");
      return (err as Error).message;
    }
    if (cfg.workers !== this.cfg.workers || workerCount(cfg).workers !== this.o.workers)
      log.warn(
        { workers: this.o.workers },
        "a new worker count needs a restart; keeping the current workers",
      );
    this.input = input;
    this.cfg = cfg;
    this.tenancyOptions();
    this.cp.reconfigure(cfg);
    for (let i = 0; i < this.slots.length; i++) {
      this.send(this.slots[i]!.worker, {
        t: "config",
        config: workerInput(input, i, this.relay !== undefined),
      });
    }
    log.info(
      { backends: cfg.backends.length, policy: cfg.policy, workers: this.o.workers },
      "configuration applied",
    );
    return undefined;
  }

  private onExit(slot: number, w: Worker, code: number | null, signal: string | null): void {
    const s = this.slots[slot]!;
    if (s.worker !== w) return;
    s.worker = undefined;
    s.outbox = undefined;
    const source = `w${slot}`;
    this.cp.load.drop(source);
    this.broadcast({ t: "gone", source });
    s.ledger = new WorkerLedger();
    s.conns = 0;
    this.listeningSlots.delete(slot);
    this.broadcastConns();
    this.limits.releaseAll(slot);
    if (this.stopping) return;
    const now = Date.now();
    s.restarts = s.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
    s.restarts.push(now);
    // a crash loop backs off: 0.5 s, 1 s, 2 s, ... up to 30 s between attempts
    const delay = Math.min(30_000, 500 * 2 ** (s.restarts.length - 1));
    log.error({ worker: slot + 1, code, signal, restartInMs: delay }, "router worker exited; restarting it");
    // kept referenced: a group whose workers all died waits for their replacements, never exits 0
    s.restartTimer = setTimeout(() => {
      s.restartTimer = undefined;
      if (!this.stopping) this.fork(slot);
    }, delay);
  }

  /** First signal: every worker drains and exits, then this process. */
  async close(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    for (const s of this.slots) clearTimeout(s.restartTimer);
    clearTimeout(this.censusTimer);
    const exits = this.slots.map(
      (s) =>
        new Promise<void>((resolve) => {
          const w = s.worker;
          if (!w || w.isDead()) return resolve();
          w.once("exit", () => resolve());
          this.send(w, { t: "shutdown" });
        }),
    );
    await Promise.all(exits);
    await this.peers?.close();
    await this.relay?.close();
    await this.cp.close();
  }
}

/** `switchyard router` with workers: runs until a signal. */
export async function runPrimary(o: PrimaryOptions): Promise<Primary> {
  const p = new Primary(o);
  // before the workers start: a signal while they do still drains and exits cleanly
  onShutdown(() => p.close(), shutdownNeedsMs(p.config.drainTimeout));
  const url = await p.start();
  log.info(
    { url, workers: o.workers, backends: p.config.backends.length, policy: p.config.policy },
    "router listening",
  );
  return p;
}
