// The router's CacheOracle for the prefix, kv and hybrid policies. Per engine it answers from the exact
// KV-event index when the engine's events flow and its hashes can be reproduced (block size and hash
// algorithm from vllm:cache_config_info, vLLM version from /version, hash seed from config, the model's
// tokenizer), and from the approximate prefix index otherwise — saying which, and why, in metrics and
// logs. It also owns the KV-event subscriptions (one per engine, following the registry) and the
// silent-miss watchdog.
import { Counter, Gauge, type Registry as PromRegistry } from "prom-client";
import { computeBlockHashes } from "../../engine/hashing.js";
import { KvEventSubscriber } from "../../kvevents/subscriber.js";
import { logger } from "../../obs/log.js";
import {
  PrefixOracle,
  RequestMemo,
  type CacheOracle,
  type CachePrediction,
  type CacheSource,
  type EngineView,
  type RequestView,
} from "../../routing/index.js";
import type { RouterConfig } from "../config.js";
import { UpstreamHttpError, type Upstream, type Registry } from "../registry.js";
import { KvBlockIndex } from "./block-index.js";
import type { BackendKvEvents } from "./config.js";
import { requestTokenizerFor, type RequestTokenizer } from "./tokenizers.js";
import { HitWatchdog, parsePrefixCacheHits } from "./watchdog.js";

const log = logger("router.cache");

export type CacheMode = "prefix" | "kv" | "hybrid";

interface EngineKv {
  url: string;
  endpoint: BackendKvEvents | undefined;
  sub: KvEventSubscriber | undefined;
  /** at least one batch delivered since (re)subscribing */
  flowing: boolean;
  version: string | undefined;
  versionAsked: boolean;
  /** why the engine is routed by prefix instead of KV events (null: it is not) */
  fallback: string | null;
  healthy: boolean;
}

interface Prepared {
  model: string;
  tokens: number[] | null;
  /** block size → hashes of the blocks an engine could report as hits */
  hashes: Map<number, bigint[]>;
}

/** "0.11.0rc2.dev3+g..." → [0, 11, 0]; unparseable → null */
export function parseVersion(v: string): number[] | null {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

export function versionAtLeast(v: string, min: string): boolean {
  const a = parseVersion(v);
  const b = parseVersion(min);
  if (!a || !b) return false;
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}

/** The KV endpoints of the i-th configured backend, explicit or derived from the config rule. */
export function kvEndpointFor(
  url: string,
  cfg: RouterConfig,
  discovered?: { endpoint: string; replay?: string | undefined; topic?: string | undefined },
): BackendKvEvents | undefined {
  const i = cfg.backends.findIndex((b) => b.url === url);
  const b = i >= 0 ? cfg.backends[i] : undefined;
  const explicit = (b as { kvEvents?: BackendKvEvents } | undefined)?.kvEvents;
  if (explicit) return explicit;
  // engines found by Kubernetes or file discovery carry their endpoint (pod annotation / file entry)
  if (discovered) {
    return {
      endpoint: discovered.endpoint,
      replay: discovered.replay,
      topic: discovered.topic ?? cfg.routing.kvEvents.topic,
    };
  }
  const d = cfg.routing.kvEvents.derive;
  if (!d) return undefined;
  if (d.byIndex && i < 0) return undefined;
  const off = d.byIndex ? i : 0;
  const host = new URL(url).hostname;
  return {
    endpoint: `tcp://${host}:${d.port + off}`,
    replay: d.replayPort !== undefined ? `tcp://${host}:${d.replayPort + off}` : undefined,
    topic: cfg.routing.kvEvents.topic,
  };
}

export class CacheRouting implements CacheOracle {
  mode: CacheMode = "hybrid";
  policyName = "hybrid";
  readonly prefix: PrefixOracle;
  readonly kv: KvBlockIndex;
  readonly watchdog: HitWatchdog;
  private readonly states = new Map<string, EngineKv>();
  private readonly tokenizers = new Map<string, RequestTokenizer | null>();
  private readonly loraOf = new Map<string, string | null>();
  private readonly prepared = new RequestMemo<Prepared>("cache-routing.prepared");
  private readonly notes = new RequestMemo<string>("cache-routing.note");
  private timers: NodeJS.Timeout[] = [];
  private cfg: RouterConfig;
  private hashSeed: string;
  private closed = false;
  private readonly m;

  constructor(
    private readonly registry: Registry,
    cfg: RouterConfig,
    prom: PromRegistry,
  ) {
    this.cfg = cfg;
    this.hashSeed = cfg.routing.hashSeed ?? process.env.PYTHONHASHSEED ?? "0";
    this.prefix = new PrefixOracle({
      blockChars: cfg.routing.prefix.blockChars,
      maxBlocks: cfg.routing.prefix.maxBlocks,
    });
    this.kv = new KvBlockIndex({
      maxBlocks: cfg.routing.kvIndex.maxBlocks,
      offloadCredit: cfg.routing.kvIndex.offloadCredit,
    });
    this.watchdog = new HitWatchdog({
      windowMs: cfg.routing.watchdog.window,
      tolerance: cfg.routing.watchdog.tolerance,
      minTokens: cfg.routing.watchdog.minTokens,
    });
    this.m = this.createMetrics(prom);
    this.setPolicy(cfg.policy);
  }

  setPolicy(name: string): void {
    this.policyName = name;
    this.mode = name === "prefix" ? "prefix" : name === "kv" ? "kv" : "hybrid";
  }

  setConfig(cfg: RouterConfig): void {
    this.cfg = cfg;
    this.hashSeed = cfg.routing.hashSeed ?? process.env.PYTHONHASHSEED ?? "0";
    this.setPolicy(cfg.policy);
    this.tokenizers.clear();
    void this.reconcile();
  }

  private createMetrics(prom: PromRegistry) {
    // collect() runs with the gauge as `this`: read our state through these
    const self = {
      prefix: this.prefix,
      kv: this.kv,
      states: this.states,
      get mode() {
        return mode();
      },
    };
    const mode = (): CacheMode => this.mode;
    const decisions = new Counter({
      name: "switchyard_routing_decisions_total",
      help: "cache-aware routing decisions, by policy, the picked engine's prediction source and the reason",
      labelNames: ["policy", "source", "reason"],
      registers: [prom],
    });
    const predicted = new Counter({
      name: "switchyard_routing_predicted_cached_tokens_total",
      help: "prompt tokens the router predicted the picked engine holds, by prediction source",
      labelNames: ["source"],
      registers: [prom],
    });
    const prompt = new Counter({
      name: "switchyard_routing_prompt_tokens_total",
      help: "prompt tokens of cache-aware routed requests (exact with a tokenizer, else estimated), by source",
      labelNames: ["source"],
      registers: [prom],
    });
    new Gauge({
      name: "switchyard_routing_index_entries",
      help: "blocks held by the routing indexes (prefix: character blocks; kv: KV-event block hashes)",
      labelNames: ["index"],
      registers: [prom],
      collect() {
        this.set({ index: "prefix" }, self.prefix.index.size);
        this.set({ index: "kv" }, self.kv.size);
      },
    });
    new Gauge({
      name: "switchyard_routing_index_bytes",
      help: "estimated memory of the routing indexes",
      labelNames: ["index"],
      registers: [prom],
      collect() {
        this.set({ index: "prefix" }, self.prefix.index.approxBytes());
        this.set({ index: "kv" }, self.kv.approxBytes());
      },
    });
    new Gauge({
      name: "switchyard_routing_index_cap_bytes",
      help: "memory the routing indexes may reach at their caps (LRU eviction beyond)",
      labelNames: ["index"],
      registers: [prom],
      collect() {
        this.set({ index: "prefix" }, self.prefix.index.capBytes());
        this.set({ index: "kv" }, self.kv.capBytes());
      },
    });
    const kvMode = new Gauge({
      name: "switchyard_routing_engine_kv_mode",
      help: "1 when the engine is routed from its KV events, 0 when by the approximate prefix index",
      labelNames: ["engine"],
      registers: [prom],
      collect() {
        this.reset();
        for (const st of self.states.values()) this.set({ engine: st.url }, st.fallback === null ? 1 : 0);
      },
    });
    const fallback = new Gauge({
      name: "switchyard_routing_kv_fallback",
      help: "1 for an engine whose KV events cannot be used, labelled with why (it is routed by prefix)",
      labelNames: ["engine", "reason"],
      registers: [prom],
      collect() {
        this.reset();
        for (const st of self.states.values())
          if (st.fallback !== null && (self.mode === "kv" || st.endpoint))
            this.set({ engine: st.url, reason: st.fallback }, 1);
      },
    });
    const purges = new Counter({
      name: "switchyard_routing_kv_purges_total",
      help: "times an engine's index entries were dropped, by reason (cleared, restart, gap, ejected, removed)",
      labelNames: ["engine", "reason"],
      registers: [prom],
    });
    const mismatch = new Gauge({
      name: "switchyard_routing_hit_mismatch",
      help: "1 when predicted and engine-reported prefix-cache hits differ beyond tolerance over the window",
      labelNames: ["engine"],
      registers: [prom],
    });
    const mismatchError = new Gauge({
      name: "switchyard_routing_hit_prediction_error",
      help: "|predicted − reported| / max of the two prefix-cache hit tokens over the watchdog window",
      labelNames: ["engine"],
      registers: [prom],
    });
    const tokenizer = new Gauge({
      name: "switchyard_routing_tokenizer_info",
      help: "the tokenizer the router uses per model for KV routing (source: sim:<family>, hf:<dir>, none)",
      labelNames: ["model", "source"],
      registers: [prom],
    });
    void kvMode;
    void fallback;
    return { decisions, predicted, prompt, purges, mismatch, mismatchError, tokenizer };
  }

  start(): void {
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, Math.max(50, ms));
      t.unref();
      this.timers.push(t);
    };
    every(500, () => void this.reconcile());
    every(this.cfg.routing.watchdog.interval, () => void this.checkWatchdog());
    void this.reconcile();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all([...this.states.values()].map((s) => s.sub?.close()));
    this.states.clear();
  }

  // ---- subscriptions ---------------------------------------------------------------------------

  /** Follows the registry: subscribe new engines, drop what ejected or removed engines held. */
  async reconcile(): Promise<void> {
    if (this.closed) return;
    const seen = new Set<string>();
    for (const e of this.registry.engines.values()) {
      if (e.draining) continue;
      seen.add(e.url);
      let st = this.states.get(e.url);
      if (!st) {
        st = {
          url: e.url,
          endpoint: kvEndpointFor(e.url, this.cfg, e.spec.kvEvents),
          sub: undefined,
          flowing: false,
          version: undefined,
          versionAsked: false,
          fallback: "starting",
          healthy: false,
        };
        this.states.set(e.url, st);
      }
      if (st.healthy && !e.healthy) {
        // ejected: probably restarted or gone; its cache cannot be trusted
        this.purge(st, "ejected");
        await this.unsubscribe(st);
      }
      st.healthy = e.healthy;
      if (e.healthy && !st.sub && st.endpoint && this.mode !== "prefix") await this.subscribe(st);
      if (e.healthy && !st.versionAsked) void this.askVersion(st);
      this.updateFallback(st, e);
    }
    for (const st of [...this.states.values()]) {
      if (seen.has(st.url)) continue;
      this.purge(st, "removed");
      this.kv.forget(st.url);
      this.watchdog.forget(st.url);
      this.states.delete(st.url);
      await this.unsubscribe(st);
    }
  }

  private purge(st: EngineKv, reason: string): void {
    const kv = this.kv.purge(st.url);
    const px = this.prefix.index.purge(st.url);
    this.m.purges.inc({ engine: st.url, reason });
    log.info({ engine: st.url, reason, kvBlocks: kv, prefixBlocks: px }, "routing index entries dropped");
  }

  private async subscribe(st: EngineKv): Promise<void> {
    const ep = st.endpoint!;
    st.flowing = false;
    try {
      st.sub = await KvEventSubscriber.create({
        endpoint: ep.endpoint,
        replayEndpoint: ep.replay ?? null,
        topic: ep.topic ?? this.cfg.routing.kvEvents.topic,
        // rebuild the index from the engine's replay buffer when joining a running engine
        initialSeq: ep.replay ? 0 : undefined,
        label: st.url,
        onBatch: (_seq, batch) => {
          st.flowing = true;
          for (const ev of batch.events) {
            if (ev.type === "AllBlocksCleared") this.purge(st, "cleared");
            else this.kv.apply(st.url, ev);
          }
        },
        onGap: (from, to) => {
          // what the engine stored or evicted meanwhile is unknown: start over from what comes next
          if (from === 0 && this.kv.blocksOf(st.url) === 0) return;
          log.warn({ engine: st.url, from, to }, "KV events lost; dropping the engine's index entries");
          this.purge(st, "gap");
        },
        onRestart: () => this.purge(st, "restart"),
      });
      log.info(
        { engine: st.url, endpoint: ep.endpoint, replay: ep.replay ?? null },
        "subscribed to KV events",
      );
    } catch (err) {
      log.warn({ engine: st.url, err: (err as Error).message }, "cannot subscribe to KV events");
    }
  }

  private async unsubscribe(st: EngineKv): Promise<void> {
    const sub = st.sub;
    st.sub = undefined;
    st.flowing = false;
    await sub?.close();
  }

  private async askVersion(st: EngineKv): Promise<void> {
    st.versionAsked = true;
    // over the engine's own pool: its protocol (h2c) and its API key, like every other probe
    const e = this.registry.engines.get(st.url);
    if (!e) return;
    try {
      const doc = JSON.parse(await this.registry.get(e, "/version", 2000, 64 * 1024)) as {
        version?: unknown;
      };
      st.version = typeof doc.version === "string" ? doc.version : "unknown";
    } catch (err) {
      // an engine that answers but has no /version is "unknown"; one that did not answer is asked again
      if (err instanceof UpstreamHttpError) st.version = "unknown";
      else st.versionAsked = false;
    }
  }

  /** Why this engine cannot be routed by its KV events right now (null: it can). */
  private kvBlocker(st: EngineKv, e: Upstream): string | null {
    if (this.mode === "prefix") return "policy-prefix";
    if (!st.endpoint) return "no-kv-events-endpoint";
    const cc = e.load.cacheConfig;
    if (!cc) return "no-cache-config";
    const algo = cc.prefix_caching_hash_algo;
    if (algo !== "sha256_cbor") return `hash-algo-${algo ?? "unknown"}`;
    if (cc.enable_prefix_caching === "False") return "prefix-caching-off";
    if (!e.view.blockSize) return "no-block-size";
    if (st.version === undefined) return "version-unknown";
    if (!versionAtLeast(st.version, this.cfg.routing.minVllmVersion)) return `version-${st.version}`;
    if (!st.sub) return "not-subscribed";
    if (!st.flowing) return "no-events-yet";
    return null;
  }

  private updateFallback(st: EngineKv, e: Upstream): void {
    const why = this.kvBlocker(st, e);
    if (why === st.fallback) return;
    const was = st.fallback;
    st.fallback = why;
    if (why === null) log.info({ engine: st.url }, "engine routed by its KV events");
    else if (
      was === null ||
      (st.endpoint &&
        !["starting", "no-events-yet", "no-cache-config", "version-unknown", "not-subscribed"].includes(why))
    )
      log.warn(
        { engine: st.url, reason: why },
        "engine routed by the approximate prefix index, not KV events",
      );
  }

  // ---- predictions -----------------------------------------------------------------------------

  private tokenizerFor(model: string): RequestTokenizer | null {
    if (this.tokenizers.has(model)) return this.tokenizers.get(model)!;
    let root: string | undefined;
    let parent: string | null = null;
    for (const e of this.registry.engines.values()) {
      const card = e.modelCards.find((c) => c.id === model);
      if (card) {
        parent = typeof card.parent === "string" ? card.parent : null;
        root = typeof card.root === "string" ? card.root : (parent ?? undefined);
        break;
      }
    }
    let tk: RequestTokenizer | null = null;
    try {
      tk = requestTokenizerFor(model, parent ?? root, this.cfg.routing.tokenizers);
    } catch (err) {
      log.error(
        { model, err: (err as Error).message },
        "cannot load the model's tokenizer; KV routing off for it",
      );
    }
    if (this.tokenizers.size > 4096) this.tokenizers.clear();
    this.tokenizers.set(model, tk);
    this.loraOf.set(model, parent !== null ? model : null);
    this.m.tokenizer.set({ model, source: tk?.source ?? "none" }, 1);
    log.info({ model, tokenizer: tk?.source ?? "none" }, "router tokenizer for KV routing");
    return tk;
  }

  private prepare(req: RequestView): Prepared {
    let p = this.prepared.get(req);
    if (!p) {
      const tk = this.tokenizerFor(req.model);
      p = { model: req.model, tokens: tk ? tk.tokens(req) : null, hashes: new Map() };
      this.prepared.set(req, p);
    }
    return p;
  }

  private hashesFor(req: RequestView, p: Prepared, blockSize: number): bigint[] {
    let h = p.hashes.get(blockSize);
    if (!h) {
      const tokens = p.tokens!;
      // vLLM always computes the prompt's last token: a hit covers at most (len − 1) tokens
      const usable = Math.floor(Math.max(0, tokens.length - 1) / blockSize) * blockSize;
      const salt = req.body?.cache_salt;
      h = computeBlockHashes(tokens.slice(0, usable), {
        blockSize,
        hashSeed: this.hashSeed,
        loraName: this.loraOf.get(req.model) ?? null,
        cacheSalt: typeof salt === "string" ? salt : null,
      }).ids;
      p.hashes.set(blockSize, h);
    }
    return h;
  }

  predict(req: RequestView, engines: readonly EngineView[]): CachePrediction {
    const n = engines.length;
    const cachedTokens = new Float64Array(n);
    const source: CacheSource[] = new Array(n);
    const estimate = this.prefix.predictInto(req, engines, cachedTokens);
    let exact = -1;
    const p = this.mode === "prefix" ? undefined : this.prepare(req);
    for (let i = 0; i < n; i++) {
      source[i] = "prefix";
      if (!p || p.tokens === null) continue;
      const st = this.states.get(engines[i]!.id);
      const bs = engines[i]!.blockSize;
      if (!st || st.fallback !== null || !bs) continue;
      const { credit } = this.kv.match(this.hashesFor(req, p, bs), st.url);
      cachedTokens[i] = credit * bs;
      source[i] = "kv";
      exact = p.tokens.length;
    }
    for (let i = 0; i < n; i++) {
      // an engine failing live traffic must not attract requests by what it (maybe) caches
      if ((this.registry.engines.get(engines[i]!.id)?.passiveFailures ?? 0) > 0) cachedTokens[i] = 0;
    }
    let promptTokens = estimate;
    if (exact >= 0 && estimate > 0) {
      // put the prefix engines' character estimates in the same (exact) token units
      const scale = exact / estimate;
      for (let i = 0; i < n; i++) if (source[i] === "prefix") cachedTokens[i] = cachedTokens[i]! * scale;
      promptTokens = exact;
    } else if (exact >= 0) promptTokens = exact;
    return { promptTokens, cachedTokens, source };
  }

  onPicked(
    req: RequestView,
    engine: EngineView,
    cachedTokens: number,
    source: CacheSource,
    reason: string,
  ): void {
    this.prefix.learn(req, engine.id);
    const p = this.prepared.get(req);
    const promptTokens = p?.tokens ? p.tokens.length : this.prefix.prepare(req).chars / 4;
    this.m.decisions.inc({ policy: this.policyName, source, reason });
    this.m.predicted.inc({ source }, cachedTokens);
    this.m.prompt.inc({ source }, promptTokens);
    if (source === "kv") this.watchdog.predicted(engine.id, cachedTokens);
    const note = `engine=${engine.id}; policy=${this.policyName}; source=${source}; reason=${reason}; predicted_cached_tokens=${Math.round(cachedTokens)}; prompt_tokens=${Math.round(promptTokens)}`;
    this.notes.set(req, note);
    log.debug({ model: req.model, seq: req.seq, note }, "routed");
  }

  /** the last decision for a request, for the x-switchyard-route debug header */
  explain(req: RequestView): string | undefined {
    return this.notes.get(req);
  }

  // ---- watchdog --------------------------------------------------------------------------------

  async checkWatchdog(): Promise<void> {
    await Promise.all(
      [...this.states.values()].map(async (st) => {
        if (!st.healthy || st.fallback !== null) return;
        try {
          const e = this.registry.engines.get(st.url);
          if (!e) return;
          const text = await this.registry.get(
            e,
            "/metrics",
            this.cfg.discovery.metricsTimeout * 2,
            this.cfg.discovery.maxMetricsBytes,
          );
          const hits = parsePrefixCacheHits(text);
          if (hits === null) return;
          this.watchdog.reported(st.url, hits);
        } catch {
          return;
        }
        const was = this.m.mismatch.labels({ engine: st.url });
        const v = this.watchdog.verdict(st.url);
        this.m.mismatchError.set({ engine: st.url }, v.error);
        const before =
          (await this.m.mismatch.get()).values.find((x) => x.labels.engine === st.url)?.value ?? 0;
        was.set(v.mismatch ? 1 : 0);
        if (v.mismatch && before === 0) {
          log.error(
            { engine: st.url, predictedTokens: v.predicted, reportedTokens: v.reported, error: v.error },
            "KV routing is missing silently: the router's predicted prefix-cache hits and the engine's " +
              "vllm:prefix_cache_hits differ beyond tolerance — check the hash seed (PYTHONHASHSEED), the " +
              "tokenizer and chat template, the block size and the hash algorithm",
          );
        } else if (!v.mismatch && before === 1)
          log.info({ engine: st.url }, "predicted and reported hits agree again");
      }),
    );
  }
}
