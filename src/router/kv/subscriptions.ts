// Where each engine's KV events come from, following the registry: a SUB socket connected to the
// engine's publisher (connect mode), or the router's one bound collector that engines publish to
// (collector mode, `routing.kvEvents.bind`). Per engine it tracks whether the events can be used for
// routing — and why not: no source, a hash the router cannot reproduce, a vLLM too old, no events yet,
// events held until the publisher confirms them — and drops what the index holds for an engine whose
// view can no longer be trusted (cache reset, restart, lost events, ejection, removal): a restart or a
// loss only once the publisher's own stream confirms it, never on one message's word (sequencer.ts).
// With `routing.kvEvents.curve` every socket it opens is CURVE (a subscription believes only the
// publisher holding the server key's secret; the collector lets in only the listed publishers); without
// it, an endpoint beyond this host is taken in plain and said once, unless `plain: true` says it is meant.
import { KvEventCollector, urlAddresses } from "../../kvevents/collector.js";
import {
  curveClientFor,
  endpointIsLocal,
  engineKeyFor,
  loadCurveKeys,
  withEnginePublishers,
  type CurveClient,
  type CurveKeys,
} from "../../kvevents/curve.js";
import type { StreamOptions } from "../../kvevents/sequencer.js";
import { KvEventSubscriber } from "../../kvevents/subscriber.js";
import { versionAtLeast } from "../../kvevents/versions.js";
import { logger } from "../../obs/log.js";
import type { PrefixOracle } from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import type { Registry } from "../engines/registry.js";
import type { Upstream } from "../engines/upstream.js";
import { UpstreamHttpError } from "../engines/engine-get.js";
import type { BackendKvEvents } from "../config/kv.js";
import type { KvIndex } from "./kv-index.js";
import { MAX_SOURCES_BYTES, parseKvEventSources } from "./event-sources.js";

const log = logger("router.cache");

/** an engine that did not answer /kv_event_sources is asked again after this long */
const SOURCES_RETRY_MS = 30_000;
/** endpoints warned about (plain beyond this host, CURVE without a server key) at most, then silent */
const MAX_WARNED_ENDPOINTS = 1024;

/** Where one engine's events come from. */
export type KvSource =
  /** `ranks`: the publishers of the engine's other data-parallel ranks (its /kv_event_sources) */
  | ({ mode: "connect"; ranks?: BackendKvEvents[] } & BackendKvEvents)
  /** the engine publishes to our collector; replay (its ROUTER endpoint) if it has one */
  | { mode: "collect"; replay: string | undefined };

/** scrapes in a row with computed prompts and no KV event before an engine's silence is warned of */
const QUIET_SCRAPES = 3;

export interface EngineKv {
  url: string;
  source: KvSource | undefined;
  /** connect mode: our SUB socket to the engine */
  sub: KvEventSubscriber | undefined;
  /** collect mode: attached to the collector */
  collecting: boolean;
  /** at least one batch delivered since (re)subscribing */
  flowing: boolean;
  /** a publisher socket of the engine failed the CURVE handshake since (re)subscribing */
  refused: boolean;
  version: string | undefined;
  versionAsked: boolean;
  /** why the engine is routed by prefix instead of KV events (null: it is not) */
  fallback: string | null;
  healthy: boolean;
  /** streams (one per data-parallel rank) holding batches until their publisher confirms a jump or a restart */
  unconfirmed: number;
  /** configured (backend, discovery entry, derive rule, collector), read from the engine, or none */
  origin: "explicit" | "discovered" | "none";
  /** SUB sockets to the engine's other data-parallel ranks (discovered sources) */
  rankSubs: KvEventSubscriber[];
  /** when to ask the engine's /kv_event_sources (performance.now(); Infinity: not again) */
  sourcesAskAt: number;
  /** scrapes in a row that showed computed prompts and no event yet (warned once at QUIET_SCRAPES) */
  quietScrapes: number;
}

/**
 * Where the engine at `url` publishes: its configured `kvEvents` (connect); else, in collector mode, the
 * collector (with a replay endpoint from discovery or the derive rule); else the endpoint discovery
 * found (pod annotation, file entry); else the derive rule.
 */
export function kvSourceFor(
  url: string,
  cfg: RouterConfig,
  discovered?: { endpoint: string; replay?: string | undefined; topic?: string | undefined },
): KvSource | undefined {
  const i = cfg.backends.findIndex((b) => b.url === url);
  const b = i >= 0 ? cfg.backends[i] : undefined;
  const explicit = (b as { kvEvents?: BackendKvEvents } | undefined)?.kvEvents;
  if (explicit) return { mode: "connect", ...explicit };
  const kv = cfg.routing.kvEvents;
  const d = kv.derive;
  const off = d?.byIndex ? i : 0;
  const host = new URL(url).hostname;
  const derivedReplay =
    d && d.replayPort !== undefined && !(d.byIndex && i < 0)
      ? `tcp://${host}:${d.replayPort + off}`
      : undefined;
  if (kv.bind) return { mode: "collect", replay: discovered?.replay ?? derivedReplay };
  // engines found by Kubernetes or file discovery carry their endpoint (pod annotation / file entry)
  if (discovered) {
    return {
      mode: "connect",
      endpoint: discovered.endpoint,
      replay: discovered.replay,
      topic: discovered.topic ?? kv.topic,
    };
  }
  if (!d || (d.byIndex && i < 0)) return undefined;
  return {
    mode: "connect",
    endpoint: `tcp://${host}:${d.port + off}`,
    replay: derivedReplay,
    topic: kv.topic,
  };
}

export interface SubscriptionsDeps {
  registry: Registry;
  kv: KvIndex;
  prefix: PrefixOracle;
  mode: () => "prefix" | "kv" | "hybrid";
  /** an engine's index entries were dropped (for the purge counter) */
  purged: (url: string, reason: string) => void;
}

export class KvSubscriptions {
  readonly states = new Map<string, EngineKv>();
  private collectorP: Promise<KvEventCollector | null> | null = null;
  private collectorNow: KvEventCollector | null = null;
  private bound: string | undefined;
  private closed = false;
  private running: Promise<void> | null = null;
  private again = false;
  private bindFailureLogged: string | undefined;
  /** engines whose /kv_event_sources could not be read, said once each */
  private readonly sourcesFailedOnce = new Set<string>();
  /** the router's CURVE keys (routing.kvEvents.curve), null: plain */
  private curve: CurveKeys | null = null;
  /** the keys as last loaded, to see a rotation (in memory only) */
  private curveSeen = "null";
  private readonly warned = new Set<string>();

  constructor(
    private readonly d: SubscriptionsDeps,
    private cfg: RouterConfig,
  ) {
    const files = cfg.routing.kvEvents.curve;
    this.curve = files ? loadCurveKeys(files) : null;
    this.curveSeen = fingerprint(this.curve);
  }

  /**
   * Re-reads the key files (a reload after a rotated Secret); true when the keys changed. A file that
   * cannot be read now keeps the keys in use: the config's own check would have refused the reload,
   * so this is a file changed in between.
   */
  private reloadCurve(cfg: RouterConfig): boolean {
    const files = cfg.routing.kvEvents.curve;
    let next: CurveKeys | null;
    try {
      next = files ? loadCurveKeys(files) : null;
    } catch (err) {
      log.error({ err: (err as Error).message }, "KV-event CURVE keys not reloaded; keeping the keys in use");
      return false;
    }
    const seen = fingerprint(next);
    if (seen === this.curveSeen) return false;
    this.curve = next;
    this.curveSeen = seen;
    return true;
  }

  /** Says a thing about an endpoint once (bounded: a fleet of ten thousand engines says the first thousand). */
  private warnOnce(key: string, fn: () => void): void {
    if (this.warned.has(key) || this.warned.size >= MAX_WARNED_ENDPOINTS) return;
    this.warned.add(key);
    fn();
  }

  /** A plain KV-event endpoint beyond this host, without `routing.kvEvents.plain`: said once. */
  private warnPlain(endpoint: string, what: string): void {
    if (this.cfg.routing.kvEvents.plain || endpointIsLocal(endpoint)) return;
    this.warnOnce(`plain ${endpoint}`, () =>
      log.warn(
        { endpoint },
        `${what} without authentication: any process that reaches it can publish KV events as an engine and steer routing. ` +
          "Keep it on a private network (vLLM's publisher cannot do CURVE) and set routing.kvEvents.plain: true to say so, " +
          "or give Switchyard's publishers and the router CURVE keys (routing.kvEvents.curve)",
      ),
    );
  }

  /**
   * How to reach one publisher: CURVE with its server key, plain (no keys, or a backend marked plain),
   * or undefined when the router has keys but none for this publisher (it is not subscribed to: taking
   * it in plain would undo the keys).
   */
  private clientSecurity(
    endpoint: string,
    src: { serverKey?: string | undefined; plain?: boolean | undefined },
    url: string,
  ): CurveClient | null | undefined {
    const keys = this.curve;
    // the engine's own key (its backend's kvEvents.serverKey, or engines.keys) binds its events to
    // the holder of that engine's secret; the shared server key only where neither names one
    const choice = curveClientFor(keys, src, keys ? engineKeyFor(keys, url) : undefined);
    if (choice.mode === "curve") return choice.curve;
    if (choice.mode === "plain") {
      if (!src.plain) this.warnPlain(endpoint, `KV events from ${endpoint} are taken`);
      return null;
    }
    this.warnOnce(`nokey ${endpoint}`, () =>
      log.error(
        { endpoint, keys: keys?.source },
        "not subscribed to KV events: the router has CURVE keys but no server key for this publisher (its line in engines.keys, the backend's kvEvents.serverKey, or server.key; kvEvents.plain for an engine that cannot do CURVE)",
      ),
    );
    return undefined;
  }

  /** the router's CURVE keys (routing.kvEvents.curve), null: plain; a new object whenever they change */
  get curveKeys(): CurveKeys | null {
    return this.curve;
  }

  /** the bound collector, once bound (collector mode only) */
  get collector(): KvEventCollector | null {
    return this.collectorNow;
  }

  setConfig(cfg: RouterConfig): void {
    this.cfg = cfg;
    // new keys: every socket is made again with them
    if (this.reloadCurve(cfg)) {
      for (const st of this.states.values()) void this.unsubscribe(st);
      void this.dropCollector();
    }
    // an engine whose source changed (a new endpoint, collector mode on or off) is subscribed afresh
    for (const st of this.states.values()) {
      const e = this.d.registry.engines.get(st.url);
      const next = kvSourceFor(st.url, cfg, e?.spec.kvEvents);
      // what the engine said of itself stands until the configuration names a source
      if (next === undefined && st.origin === "discovered") continue;
      if (JSON.stringify(next) === JSON.stringify(st.source)) continue;
      st.source = next;
      st.origin = next ? "explicit" : "none";
      st.sourcesAskAt = 0;
      void this.unsubscribe(st);
    }
    // a moved bind endpoint takes a new socket; engines re-attach on the next reconcile
    if (cfg.routing.kvEvents.bind !== this.bound) void this.dropCollector();
  }

  /** Binds the collector (collector mode); throws when the endpoint cannot be bound. */
  async ensureCollector(): Promise<KvEventCollector | null> {
    const ep = this.cfg.routing.kvEvents.bind;
    if (!ep || this.closed) return null;
    if (!this.collectorP) {
      this.bound = ep;
      const maxMessageBytes = this.cfg.routing.kvEvents.maxMessageBytes;
      if (!this.curve) this.warnPlain(ep, `the KV-event collector at ${ep} takes messages`);
      // ipc is reached through the file system, not the network: a router worker's private endpoint,
      // fed by its primary's relay (which holds the keys), stays plain
      const keys = ep.startsWith("ipc://") || ep.startsWith("inproc://") ? null : this.curve;
      // the publishers let in: clients.keys and every engine's own key (engines.keys)
      const curve = keys && withEnginePublishers(keys);
      // behind a relay (ipc) the socket is plain, yet engines' signatures are checked with the router's keys
      this.collectorP = KvEventCollector.bind(ep, { maxMessageBytes, curve, identity: this.curve }).then(
        (c) => {
          if (this.closed || this.bound !== ep) {
            void c.close();
            return null;
          }
          this.collectorNow = c;
          return c;
        },
      );
      this.collectorP.catch(() => {
        this.collectorP = null;
      });
    }
    return this.collectorP;
  }

  private async dropCollector(): Promise<void> {
    const c = this.collectorNow;
    this.collectorP = null;
    this.collectorNow = null;
    this.bound = undefined;
    for (const st of this.states.values()) st.collecting = false;
    await c?.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.states.values()].map((s) => this.unsubscribe(s)));
    this.states.clear();
    await this.dropCollector();
  }

  /**
   * Follows the registry: subscribe new engines, drop what ejected or removed engines held. Runs one at a
   * time (a subscription is made across awaits); a call during a run makes the run go round once more.
   */
  reconcile(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reconcileOnce();
      } while (this.again && !this.closed);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.closed) return;
    const seen = new Set<string>();
    for (const e of this.d.registry.engines.values()) {
      if (e.draining) continue;
      seen.add(e.url);
      let st = this.states.get(e.url);
      if (!st) {
        const source = kvSourceFor(e.url, this.cfg, e.spec.kvEvents);
        st = {
          url: e.url,
          source,
          origin: source ? "explicit" : "none",
          rankSubs: [],
          sourcesAskAt: 0,
          sub: undefined,
          collecting: false,
          flowing: false,
          refused: false,
          quietScrapes: 0,
          version: undefined,
          versionAsked: false,
          fallback: "starting",
          healthy: false,
          unconfirmed: 0,
        };
        this.states.set(e.url, st);
      }
      if (st.healthy && !e.healthy) {
        // ejected: probably restarted or gone; its cache cannot be trusted
        this.purge(st, "ejected");
        await this.unsubscribe(st);
        // restarted, it may publish elsewhere (a port of 0 binds a new one): asked again when back
        if (st.origin === "discovered") {
          st.source = undefined;
          st.origin = "none";
          st.sourcesAskAt = 0;
        }
      }
      st.healthy = e.healthy;
      if (e.healthy && this.d.mode() !== "prefix") await this.subscribe(st);
      if (e.healthy && !st.versionAsked) void this.askVersion(st);
      // no source configured: the engine says where it publishes (vLLM 0.32's /kv_event_sources)
      if (e.healthy && !st.source && this.d.mode() !== "prefix" && performance.now() >= st.sourcesAskAt)
        void this.askSources(st);
      this.updateFallback(st, e);
    }
    for (const st of [...this.states.values()]) {
      if (seen.has(st.url)) continue;
      this.purge(st, "removed");
      this.d.kv.forget(st.url);
      this.states.delete(st.url);
      await this.unsubscribe(st);
    }
  }

  purge(st: EngineKv, reason: string): void {
    const kv = this.d.kv.purge(st.url);
    const px = this.d.prefix.index.purge(st.url);
    this.d.purged(st.url, reason);
    log.info({ engine: st.url, reason, kvBlocks: kv, prefixBlocks: px }, "routing index entries dropped");
  }

  /** The callbacks that feed one engine's batches to the index, whichever socket they came in on. */
  private streamOptions(
    st: EngineKv,
    replay: string | undefined,
    replayCurve: CurveClient | null = null,
  ): StreamOptions {
    return {
      replayEndpoint: replay ?? null,
      replayCurve,
      maxMessageBytes: this.cfg.routing.kvEvents.maxMessageBytes,
      // rebuild the index from the engine's replay buffer when joining a running engine
      initialSeq: replay ? 0 : undefined,
      onBatch: (_seq, batch) => {
        st.flowing = true;
        for (const ev of batch.events) {
          if (ev.type === "AllBlocksCleared") this.purge(st, "cleared");
          else this.d.kv.apply(st.url, ev);
        }
      },
      onGap: (from, to) => {
        // what the engine stored or evicted meanwhile is unknown: start over from what comes next
        if (from === 0 && this.d.kv.blocksOf(st.url) === 0) return;
        log.warn({ engine: st.url, from, to }, "KV events lost; dropping the engine's index entries");
        this.purge(st, "gap");
      },
      onRestart: () => this.purge(st, "restart"),
      // the index lags the engine while batches wait on the publisher's word: route by prefix meanwhile
      onStale: (stale) => {
        st.unconfirmed += stale ? 1 : -1;
        const e = this.d.registry.engines.get(st.url);
        if (e) this.updateFallback(st, e);
      },
    };
  }

  private async subscribe(st: EngineKv): Promise<void> {
    const src = st.source;
    if (!src) return;
    if (src.mode === "collect") {
      if (st.collecting) return;
      let c: KvEventCollector | null;
      try {
        c = await this.ensureCollector();
      } catch (err) {
        // retried on every reconcile: say it once per endpoint, not twice a second
        const ep = this.cfg.routing.kvEvents.bind;
        if (this.bindFailureLogged !== ep)
          log.error({ err: (err as Error).message }, "KV-event collector not bound; retrying");
        this.bindFailureLogged = ep;
        return;
      }
      if (!c || st.collecting || !this.states.has(st.url)) return;
      st.flowing = false;
      // the engine's replay socket is CURVE like its publisher: believed with the publishers' key
      const replayKey = this.curve ? (engineKeyFor(this.curve, st.url) ?? this.curve.serverKey) : null;
      const replayCurve = this.curve && replayKey ? { keys: this.curve, serverKey: replayKey } : null;
      c.attach(
        {
          id: st.url,
          addresses: urlAddresses(st.url),
          publicKey: this.curve ? engineKeyFor(this.curve, st.url) : undefined,
        },
        this.streamOptions(st, src.replay, replayCurve),
      );
      st.collecting = true;
      log.info({ engine: st.url, collector: c.endpoint, replay: src.replay ?? null }, "collecting KV events");
      return;
    }
    if (st.sub) return;
    const curve = this.clientSecurity(src.endpoint, src, st.url);
    if (curve === undefined) return;
    st.flowing = false;
    st.refused = false;
    try {
      st.sub = await KvEventSubscriber.create({
        endpoint: src.endpoint,
        topic: src.topic ?? this.cfg.routing.kvEvents.topic,
        label: st.url,
        curve,
        onAuthFailure: () => this.refusedBy(st),
        ...this.streamOptions(st, src.replay),
      });
      log.info(
        { engine: st.url, endpoint: src.endpoint, replay: src.replay ?? null, origin: st.origin },
        "subscribed to KV events",
      );
      // the other data-parallel ranks: each its own socket and sequence, all into the engine's entries
      for (const r of src.ranks ?? []) {
        const rankCurve = this.clientSecurity(r.endpoint, { ...r, plain: src.plain }, st.url);
        if (rankCurve === undefined) continue;
        st.rankSubs.push(
          await KvEventSubscriber.create({
            endpoint: r.endpoint,
            topic: r.topic ?? this.cfg.routing.kvEvents.topic,
            label: st.url,
            curve: rankCurve,
            onAuthFailure: () => this.refusedBy(st),
            ...this.streamOptions(st, r.replay),
          }),
        );
        log.info({ engine: st.url, endpoint: r.endpoint, origin: st.origin }, "subscribed to KV events");
      }
    } catch (err) {
      log.warn({ engine: st.url, err: (err as Error).message }, "cannot subscribe to KV events");
    }
  }

  private async unsubscribe(st: EngineKv): Promise<void> {
    const sub = st.sub;
    const ranks = st.rankSubs;
    st.sub = undefined;
    st.rankSubs = [];
    for (const r of ranks) void r.close();
    st.flowing = false;
    st.refused = false;
    st.unconfirmed = 0;
    if (st.collecting) this.collectorNow?.detach(st.url);
    st.collecting = false;
    await sub?.close();
  }

  private async askVersion(st: EngineKv): Promise<void> {
    st.versionAsked = true;
    // over the engine's own pool: its protocol (h2c) and its API key, like every other probe
    const e = this.d.registry.engines.get(st.url);
    if (!e) return;
    try {
      const doc = JSON.parse(await this.d.registry.get(e, "/version", 2000, 64 * 1024)) as {
        version?: unknown;
      };
      st.version = typeof doc.version === "string" ? doc.version : "unknown";
    } catch (err) {
      // an engine that answers but has no /version is "unknown"; one that did not answer is asked again
      if (err instanceof UpstreamHttpError) st.version = "unknown";
      else st.versionAsked = false;
    }
  }

  /**
   * Asks the engine where it publishes (`GET /kv_event_sources`, bounded in size and time) and
   * subscribes there. An engine without the route (older than vLLM 0.32) or with events off stays on
   * the approximate prefix index, said once; one that did not answer is asked again in a while.
   */
  private async askSources(st: EngineKv): Promise<void> {
    const e = this.d.registry.engines.get(st.url);
    if (!e) return;
    st.sourcesAskAt = Infinity;
    let ranks;
    try {
      ranks = parseKvEventSources(
        await this.d.registry.get(e, "/kv_event_sources", 2000, MAX_SOURCES_BYTES),
        st.url,
      );
    } catch (err) {
      const answered = err instanceof UpstreamHttpError || err instanceof SyntaxError;
      if (!answered) st.sourcesAskAt = performance.now() + SOURCES_RETRY_MS;
      const why = err instanceof UpstreamHttpError ? `answered ${err.status}` : (err as Error).message;
      if (answered || !this.sourcesFailedOnce.has(st.url)) {
        if (this.sourcesFailedOnce.size < 4096) this.sourcesFailedOnce.add(st.url);
        log.info(
          { engine: st.url, why },
          "the engine did not say where it publishes KV events (GET /kv_event_sources): approximate prefix index",
        );
      }
      return;
    }
    // the configuration may have named a source meanwhile (a reload), or the engine gone
    if (st.source || this.states.get(st.url) !== st) return;
    if (ranks.length === 0) {
      log.info(
        { engine: st.url },
        "the engine publishes no KV events (/kv_event_sources): approximate prefix index",
      );
      return;
    }
    const [first, ...rest] = ranks;
    st.source = { mode: "connect", endpoint: first!.endpoint, replay: first!.replay, topic: first!.topic };
    if (rest.length > 0)
      st.source.ranks = rest.map(({ endpoint, replay, topic }) => ({ endpoint, replay, topic }));
    st.origin = "discovered";
    log.info(
      { engine: st.url, ranks: ranks.length, endpoint: first!.endpoint },
      "KV-event sources read from the engine",
    );
    void this.reconcile();
  }

  /** Where an engine's KV events come from, for /engines and `switchyard status`. */
  describe(url: string): { origin: "explicit" | "discovered" | "none"; endpoints: string[] } {
    const st = this.states.get(url);
    const src = st?.source;
    if (!st || !src) return { origin: "none", endpoints: [] };
    if (src.mode === "collect")
      return { origin: st.origin, endpoints: [this.cfg.routing.kvEvents.bind ?? ""] };
    return { origin: st.origin, endpoints: [src.endpoint, ...(src.ranks ?? []).map((r) => r.endpoint)] };
  }

  /** Why this engine cannot be routed by its KV events right now (null: it can). */
  private kvBlocker(st: EngineKv, e: Upstream): string | null {
    if (this.d.mode() === "prefix") return "policy-prefix";
    if (!st.source) return "no-kv-events-endpoint";
    const cc = e.load.cacheConfig;
    if (!cc) return "no-cache-config";
    const algo = cc.prefix_caching_hash_algo;
    if (algo !== "sha256_cbor") return `hash-algo-${algo ?? "unknown"}`;
    if (cc.enable_prefix_caching === "False") return "prefix-caching-off";
    if (!e.view.blockSize) return "no-block-size";
    if (st.version === undefined) return "version-unknown";
    if (!versionAtLeast(st.version, this.cfg.routing.minVllmVersion)) return `version-${st.version}`;
    if (!st.sub && !st.collecting) return "not-subscribed";
    // Silence from a publisher whose handshake failed is not an empty cache: nothing it sends is taken
    if (!st.flowing && st.refused) return "handshake-refused";
    // An engine that has computed no prompt has published no event: its silence is an empty cache, and
    // its empty index says so exactly. Counted as unknown, its room did not count and a miss sent there
    // was priced as pushing out its own size, so a fresh engine (started, scaled up, or passed over by
    // the first prompts) drew no new prefix while the others held one (live, 4 engines, agent sessions
    // sharing a 2,000-token prompt at 1.2 req/s: one engine got no prompt for 20 s). Once its own
    // counters show a prompt (vllm:prefix_cache_queries, as last scraped) and no event has come, it is
    // routed by the approximate index.
    if (!st.flowing && e.load.prefixCacheQueries !== 0) return "no-events-yet";
    if (st.unconfirmed > 0) return "events-unconfirmed";
    return null;
  }

  /**
   * An engine's /metrics were just read: whether it is routed by its events may have changed with them
   * (its counters show its first prompt, its cache config arrived), so it is judged now, not at the next
   * reconcile.
   */
  scraped(e: Upstream): void {
    const st = this.states.get(e.url);
    if (!st) return;
    this.updateFallback(st, e);
    // its first events may come a moment after its counters show the prompt, so silence is a fault only
    // once it lasts: then the operator hears of it once (a publisher not configured, a port not reached)
    if (st.fallback !== "no-events-yet") st.quietScrapes = 0;
    else if (++st.quietScrapes === QUIET_SCRAPES)
      log.warn(
        { engine: st.url, reason: st.fallback, scrapes: QUIET_SCRAPES },
        "engine has computed prompts but published no KV event: routed by the approximate prefix index",
      );
  }

  /** A publisher socket of the engine failed the handshake: it is judged at once, not at the next scrape. */
  private refusedBy(st: EngineKv): void {
    st.refused = true;
    const e = this.d.registry.engines.get(st.url);
    if (e && this.states.get(st.url) === st) this.updateFallback(st, e);
  }

  private updateFallback(st: EngineKv, e: Upstream): void {
    const why = this.kvBlocker(st, e);
    if (why === st.fallback) return;
    const was = st.fallback;
    st.fallback = why;
    if (why === null)
      log.info(
        { engine: st.url },
        st.flowing
          ? "engine routed by its KV events"
          : "engine routed by its KV events: none yet, it has computed no prompt (an empty cache)",
      );
    else if (
      // an engine routed while it had computed nothing falls back quietly while its first batch is on
      // its way (its counters may show the prompt a moment before its events come); scraped() warns if
      // the silence lasts
      (was === null && why !== "no-events-yet") ||
      (st.source &&
        ![
          "starting",
          "no-events-yet",
          "no-cache-config",
          "version-unknown",
          "not-subscribed",
          "events-unconfirmed",
        ].includes(why))
    )
      log.warn(
        { engine: st.url, reason: why },
        "engine routed by the approximate prefix index, not KV events",
      );
  }
}

/** The keys as compared across reloads (engines.keys is a Map, which JSON would write as {}). */
function fingerprint(keys: CurveKeys | null): string {
  return JSON.stringify(keys && { ...keys, engineKeys: keys.engineKeys ? [...keys.engineKeys] : null });
}
