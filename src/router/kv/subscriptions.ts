// Where each engine's KV events come from, following the registry: a SUB socket connected to the
// engine's publisher (connect mode), or the router's one bound collector that engines publish to
// (collector mode, `routing.kvEvents.bind`), or what the engine's `/kv_event_sources` says. It drops
// what the index holds for an engine whose view can no longer be trusted (cache reset, restart, lost
// events, ejection, removal): a restart or a loss only once the publisher's own stream confirms it,
// never on one message's word (sequencer.ts). Sources are kv-source.ts's, the CURVE keys on every
// socket subscription-keys.ts's, and why an engine is routed by prefix instead fallback.ts's.
import { KvEventCollector, urlAddresses } from "../../kvevents/collector.js";
import { withEnginePublishers, type CurveClient, type CurveKeys } from "../../kvevents/curve.js";
import type { StreamOptions } from "../../kvevents/sequencer.js";
import { KvEventSubscriber } from "../../kvevents/subscriber.js";
import { logger } from "../../obs/log.js";
import type { PrefixOracle } from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { UpstreamHttpError } from "../engines/engine-get.js";
import type { KvIndex } from "./kv-index.js";
import { MAX_SOURCES_BYTES, parseKvEventSources } from "./event-sources.js";
import { noteScrape, updateFallback, type FallbackRules } from "./fallback.js";
import { kvSourceFor, newEngineKv, type EngineKv } from "./kv-source.js";
import { SubscriptionKeys } from "./subscription-keys.js";

const log = logger("router.cache");

/** an engine that did not answer /kv_event_sources is asked again after this long */
const SOURCES_RETRY_MS = 30_000;
export interface SubscriptionsDeps {
  registry: EngineRegistry;
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
  /** the router's CURVE keys (routing.kvEvents.curve) on every socket it opens */
  private readonly keys: SubscriptionKeys;

  constructor(
    private readonly d: SubscriptionsDeps,
    private cfg: RouterConfig,
  ) {
    this.keys = new SubscriptionKeys(cfg, () => this.cfg.routing.kvEvents.plain);
  }

  /** what the fallback judgement reads besides the engine */
  private rules(): FallbackRules {
    return { mode: this.d.mode(), minVllmVersion: this.cfg.routing.minVllmVersion };
  }

  private updateFallback(st: EngineKv, e: EngineRecord): void {
    updateFallback(st, e, this.rules());
  }

  /** the router's CURVE keys (routing.kvEvents.curve), null: plain; a new object whenever they change */
  get curveKeys(): CurveKeys | null {
    return this.keys.keys;
  }

  /** the bound collector, once bound (collector mode only) */
  get collector(): KvEventCollector | null {
    return this.collectorNow;
  }

  setConfig(cfg: RouterConfig): void {
    this.cfg = cfg;
    // new keys: every socket is made again with them
    if (this.keys.reload(cfg)) {
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
      const routerKeys = this.keys.keys;
      if (!routerKeys) this.keys.warnPlain(ep, `the KV-event collector at ${ep} takes messages`);
      // ipc is reached through the file system, not the network: a router worker's private endpoint,
      // fed by its primary's relay (which holds the keys), stays plain
      const keys = ep.startsWith("ipc://") || ep.startsWith("inproc://") ? null : routerKeys;
      // the publishers let in: clients.keys and every engine's own key (engines.keys)
      const curve = keys && withEnginePublishers(keys);
      // behind a relay (ipc) the socket is plain, yet engines' signatures are checked with the router's keys
      this.collectorP = KvEventCollector.bind(ep, { maxMessageBytes, curve, identity: routerKeys }).then(
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
        st = newEngineKv(e.url, source);
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
      const replayCurve = this.keys.replayCurve(st.url);
      c.attach(
        {
          id: st.url,
          addresses: urlAddresses(st.url),
          publicKey: this.keys.engineKey(st.url),
        },
        this.streamOptions(st, src.replay, replayCurve),
      );
      st.collecting = true;
      log.info({ engine: st.url, collector: c.endpoint, replay: src.replay ?? null }, "collecting KV events");
      return;
    }
    if (st.sub) return;
    const curve = this.keys.clientSecurity(src.endpoint, src, st.url);
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
        const rankCurve = this.keys.clientSecurity(r.endpoint, { ...r, plain: src.plain }, st.url);
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

  /**
   * An engine's /metrics were just read: whether it is routed by its events may have changed with them
   * (its counters show its first prompt, its cache config arrived), so it is judged now, not at the next
   * reconcile.
   */
  scraped(e: EngineRecord): void {
    const st = this.states.get(e.url);
    if (!st) return;
    this.updateFallback(st, e);
    noteScrape(st);
  }

  /** A publisher socket of the engine failed the handshake: it is judged at once, not at the next scrape. */
  private refusedBy(st: EngineKv): void {
    st.refused = true;
    const e = this.d.registry.engines.get(st.url);
    if (e && this.states.get(st.url) === st) this.updateFallback(st, e);
  }
}
