// The router's CacheOracle for the prefix, kv and hybrid policies. Per engine it answers from the exact
// KV-event index when the engine's events flow and its hashes can be reproduced (block size and hash
// algorithm from vllm:cache_config_info, vLLM version from /version, hash seed from config, the model's
// tokenizer; an engine that has computed no prompt has published nothing, and its empty index is right:
// fallback.ts), and from the approximate prefix index otherwise — saying which, and why, in
// metrics and logs. Where the events come from is KvSubscriptions' business (subscriptions.ts); the
// metrics are in metrics.ts; the silent-miss watchdog (watchdog.ts) reads the registry's own /metrics
// scrapes. A prompt is hashed as each engine hashes it (prompt-hashes.ts); `predictive` prices a prefix
// by the tier it is in (tier-pricing.ts), the other policies keep cachedTokens with the offload credit.
import type { Registry as PromRegistry } from "prom-client";
import { logger } from "../../obs/log.js";
import type { Cancellable } from "../../eventloop/turns.js";
import {
  PrefixOracle,
  policyReadsKv,
  policyReadsPrefixOnly,
  RequestMemo,
  type CacheOracle,
  type CachePrediction,
  type CacheSource,
  type EngineView,
  type LoraRequestView,
  type RequestView,
} from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import { KvIndex } from "./kv-index.js";
import { createCacheMetrics, DecisionCounts, type CacheMetrics } from "./metrics.js";
import {
  CHUNK_SLICE_TOKENS,
  HASH_SLICE_BLOCKS,
  hashedBlocks,
  PromptHasher,
  type HashScheme,
  type PreparedPrompt,
} from "./prompt-hashes.js";
import { promptChars, promptView, type PromptAnswer } from "./prompt-work.js";
import { PromptThread, PROMPT_THREAD_MAX_CHARS, PROMPT_THREAD_MIN_CHARS } from "./prompt-thread.js";
import { formatRouteNote, type RouteNote } from "./route-note.js";
import { KvSubscriptions } from "./subscriptions.js";
import { requestTokenizerFor, type RequestTokenizer } from "./tokenizers.js";
import { SharedTiers } from "./tier-index.js";
import { TierPricing } from "./tier-pricing.js";
import { HitWatchdog, judgeEngines, parsePrefixCacheHits } from "./watchdog.js";

const log = logger("router.cache");

/** base models a process loads the tokenizer of when an engine lists them, before their first request */
const PRELOAD_MODELS = 4;

/** the largest offload block a prompt is hashed at (LMCache's chunks: 256 tokens by default) */
const MAX_OFFLOAD_BLOCK_TOKENS = 8192;

export type CacheMode = "prefix" | "kv" | "hybrid";

export class CacheRouting implements CacheOracle {
  mode: CacheMode = "hybrid";
  policyName = "hybrid";
  /** the policy reads the KV-event index (kv, hybrid, predictive): long prompts are hashed ahead */
  private readsKv = true;
  readonly prefix: PrefixOracle;
  /** the KV-event index, one per KV-cache group */
  readonly kv: KvIndex;
  readonly watchdog: HitWatchdog;
  readonly subs: KvSubscriptions;
  /** per model: its tokenizer, and the parent or root it was loaded by (the prompt thread loads the same) */
  private readonly tokenizers = new Map<string, { tk: RequestTokenizer | null; root: string | undefined }>();
  /** long prompts worked out off the event loop under sustained load (routing.promptThread) */
  readonly thread: PromptThread;
  /** how each engine hashes a prompt, and the prompt's hashes */
  private readonly hasher: PromptHasher;
  /** what `predictive` pays to load a prefix from a tier */
  private readonly pricing: TierPricing;
  /** the shared cache servers the engines load from (routing.cacheServers) */
  readonly tiers: SharedTiers;
  private readonly prepared = new RequestMemo<PreparedPrompt>("cache-routing.prepared");
  private readonly notes = new RequestMemo<RouteNote>("cache-routing.note");
  private timers: NodeJS.Timeout[] = [];
  private cfg: RouterConfig;
  private readonly m: CacheMetrics;
  private readonly decisions: DecisionCounts;
  private readonly onScrape = (e: EngineRecord, text: string): void => this.scraped(e, text);
  /** an engine came into rotation (or its models changed): subscribe at once, not at the next tick */
  private readonly onCapacity = (): void => void this.subs.reconcile();
  /** an engine listed its models: their tokenizers are loaded before their first request */
  private readonly onModels = (e: EngineRecord): void => this.preloadTokenizers(e);
  /** base models whose tokenizer was loaded when an engine listed them (at most PRELOAD_MODELS) */
  private preloaded = 0;

  constructor(
    private readonly registry: EngineRegistry,
    cfg: RouterConfig,
    prom: PromRegistry,
  ) {
    this.cfg = cfg;
    this.prefix = new PrefixOracle({
      blockChars: cfg.routing.prefix.blockChars,
      maxBlocks: cfg.routing.prefix.maxBlocks,
    });
    this.kv = new KvIndex({
      maxBlocks: cfg.routing.kvIndex.maxBlocks,
      offloadCredit: cfg.routing.kvIndex.offloadCredit,
    });
    this.watchdog = new HitWatchdog({
      windowMs: cfg.routing.watchdog.window,
      tolerance: cfg.routing.watchdog.tolerance,
      minTokens: cfg.routing.watchdog.minTokens,
      sustainMs: cfg.routing.watchdog.sustain,
    });
    this.tiers = new SharedTiers(
      () => this.cfg.routing.kvEvents.maxMessageBytes,
      () => this.cfg.routing.kvEvents.plain,
      // the router's keys as its engine subscriptions hold them (loaded, and reloaded, there)
      () => this.subs.curveKeys,
    );
    this.subs = new KvSubscriptions(
      {
        registry,
        kv: this.kv,
        prefix: this.prefix,
        mode: () => this.mode,
        purged: (url, reason) => {
          this.m.purges.inc({ engine: url, reason });
          if (reason === "removed") this.watchdog.forget(url);
        },
      },
      cfg,
    );
    this.hasher = new PromptHasher(
      (url) => registry.engines.get(url)?.load.cacheConfig,
      () => this.subs.states.values(),
    );
    this.hasher.setHashSeed(cfg.routing.hashSeed);
    this.thread = new PromptThread(cfg.routing.tokenizers);
    this.pricing = new TierPricing({
      registry,
      kv: this.kv,
      tiers: this.tiers,
      hasher: this.hasher,
      config: () => this.cfg,
    });
    this.m = createCacheMetrics(prom, {
      prefix: this.prefix,
      kv: this.kv,
      tiers: this.tiers,
      mode: () => this.mode,
      collector: () => this.subs.collector,
      longPrompts: () => this.thread.stats,
      engines: () =>
        [...this.subs.states.values()].map((st) => ({
          url: st.url,
          fallback: st.fallback,
          hasSource: st.source !== undefined,
        })),
    });
    this.decisions = new DecisionCounts(this.m);
    this.setPolicy(cfg.policy);
  }

  setPolicy(name: string): void {
    this.policyName = name;
    this.mode = policyReadsPrefixOnly(name) ? "prefix" : name === "kv" ? "kv" : "hybrid";
    this.readsKv = policyReadsKv(name);
  }

  setConfig(cfg: RouterConfig): void {
    this.cfg = cfg;
    this.hasher.setHashSeed(cfg.routing.hashSeed);
    this.setPolicy(cfg.policy);
    this.tokenizers.clear();
    this.thread.configure(cfg.routing.tokenizers);
    this.pricing.clear();
    this.subs.setConfig(cfg);
    void this.subs.reconcile();
    void this.tiers.apply(cfg.routing.cacheServers);
  }

  /** Binds the collector when configured (a bind that fails fails the start), then follows the registry. */
  async start(): Promise<void> {
    await this.subs.ensureCollector();
    await this.tiers.apply(this.cfg.routing.cacheServers);
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, Math.max(50, ms));
      t.unref();
      this.timers.push(t);
    };
    every(500, () => void this.subs.reconcile());
    every(this.cfg.routing.watchdog.interval, () => this.checkWatchdog());
    this.registry.on("scraped", this.onScrape);
    this.registry.on("capacity", this.onCapacity);
    this.registry.on("models", this.onModels);
    for (const e of this.registry.engines.values()) this.preloadTokenizers(e);
    void this.subs.reconcile();
  }

  /**
   * The tokenizer of each base model `e` lists, loaded now for a policy that reads prompts as tokens:
   * on the loop, and in the prompt thread where that is on. Each is a second or so for a big
   * vocabulary (Llama 3's). Loaded at a model's first request instead, the loop's held every request
   * in flight that long, and the thread's came later still: a router started under 500 req/s of
   * 4k-token prompts worked every prompt out on its loop for its first seconds, and its p95 over them
   * was 0.3-1.3 s. The thread, if no long prompt comes, stops after its idle time as before. At most
   * PRELOAD_MODELS a process: adapters and further models load theirs at their first request.
   */
  private preloadTokenizers(e: EngineRecord): void {
    if (!this.readsKv) return;
    for (const card of e.modelCards) {
      if (this.preloaded >= PRELOAD_MODELS) return;
      if (typeof card.parent === "string" || this.tokenizers.has(card.id)) continue;
      // a model without a tokenizer costs a lookup, and does not count against the cap
      if (this.tokenizerFor(card.id) === null) continue;
      this.preloaded++;
      if (this.cfg.routing.promptThread) this.thread.warm(card.id, this.tokenizers.get(card.id)!.root);
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.registry.off("scraped", this.onScrape);
    this.registry.off("capacity", this.onCapacity);
    this.registry.off("models", this.onModels);
    await Promise.all([this.subs.close(), this.tiers.close(), this.thread.close()]);
  }

  /** whether an engine is routed from its KV events now */
  kvRouted(url: string): boolean {
    return this.subs.states.get(url)?.fallback === null;
  }

  // ---- predictions -----------------------------------------------------------------------------

  /**
   * `lora`: the registry adapter the model names, for one no engine lists yet (the router loads it on
   * the engine it picks): its base's tokenizer, its name and folder in the block hashes
   */
  private tokenizerFor(model: string, lora?: LoraRequestView): RequestTokenizer | null {
    const known = this.tokenizers.get(model);
    if (known) return known.tk;
    const { root, parent, listed } = this.lineageOf(model, lora);
    let tk: RequestTokenizer | null = null;
    try {
      tk = requestTokenizerFor(model, parent ?? root, this.cfg.routing.tokenizers);
    } catch (err) {
      log.error(
        { model, err: (err as Error).message },
        "cannot load the model's tokenizer; KV routing off for it",
      );
    }
    if (this.tokenizers.size > 4096) {
      // the adapter keys go with the tokenizers: a model's hashes need both or neither
      this.tokenizers.clear();
      this.hasher.loraOf.clear();
    }
    this.tokenizers.set(model, { tk, root: parent ?? root });
    this.pricing.learnModel(model, parent ?? root ?? model);
    const adapter = listed ? parent !== null : lora !== undefined;
    this.hasher.loraOf.set(model, adapter ? { name: model, path: root ?? null } : null);
    this.m.tokenizer.set({ model, source: tk?.source ?? "none" }, 1);
    log.info({ model, tokenizer: tk?.source ?? "none" }, "router tokenizer for KV routing");
    return tk;
  }

  /**
   * Where a model's tokenizer comes from: its card on an engine (an adapter's parent, or its root),
   * else a registry adapter's base and path; `listed`: an engine lists it.
   */
  private lineageOf(
    model: string,
    lora?: LoraRequestView,
  ): { root: string | undefined; parent: string | null; listed: boolean } {
    for (const e of this.registry.engines.values()) {
      const card = e.modelCards.find((c) => c.id === model);
      if (card) {
        const parent = typeof card.parent === "string" ? card.parent : null;
        const root = typeof card.root === "string" ? card.root : (parent ?? undefined);
        return { root, parent, listed: true };
      }
    }
    if (lora) return { root: lora.path, parent: lora.base || null, listed: false };
    return { root: undefined, parent: null, listed: false };
  }

  private prepare(req: RequestView): PreparedPrompt {
    let p = this.prepared.get(req);
    if (!p) {
      const tk = this.tokenizerFor(req.model, req.lora);
      p = { model: req.model, tokens: tk ? tk.tokens(req) : null, hashes: new Map() };
      this.prepared.set(req, p);
    }
    return p;
  }

  /**
   * Hashes a long prompt's blocks before its decision, one slice per turn of the event loop in the
   * line of sliced work (src/eventloop/turns.ts), for each block size the model's KV-routed engines
   * use (and, for `predictive`, the LMCache chunk hashes of the shared cache servers it prices); the
   * decision then finds them done, where hashing 128k tokens in one piece held the loop about
   * 18 ms and every stream and routing claim of the process waited behind it. Undefined (nothing to
   * wait for) when no engine is KV-routed or the prompt fits in one slice: the decision hashes it. A
   * migrated stream's continuation (a new view) is hashed in its decision. Stops between slices once
   * `request.cancelled` (its client gone, its time up), rejecting with WorkCancelled and keeping nothing.
   */
  hashAhead(req: RequestView, since: number, request: Cancellable): Promise<void> | undefined {
    if (!this.readsKv) return undefined;
    if (this.cfg.routing.promptThread && this.prepared.get(req) === undefined) {
      const offThread = this.askThread(req, request);
      // given back (the worker failed, was late, or the tokenizers changed): sliced on the loop
      if (offThread)
        return offThread.then((done) => (done ? undefined : this.hashOnLoop(req, since, request)));
    }
    return this.hashOnLoop(req, since, request);
  }

  /** hashAhead on the event loop: tokenized in the decision, long prompts hashed a slice per turn */
  private hashOnLoop(req: RequestView, since: number, request: Cancellable): Promise<void> | undefined {
    // predict() prepares every request outside prefix mode anyway: nothing is spent here in vain
    const tokens = this.prepare(req).tokens;
    if (tokens === null) return undefined;
    // two passes rather than one list: a short prompt, the common case, allocates nothing here
    let smallest = Infinity;
    for (const st of this.subs.states.values()) {
      const bs = this.kvBlockSize(st, req.model);
      if (bs !== undefined && bs < smallest) smallest = bs;
    }
    const longBlocks = smallest !== Infinity && hashedBlocks(tokens, smallest) > HASH_SLICE_BLOCKS;
    const chunkSizes = tokens.length > CHUNK_SLICE_TOKENS ? this.tierChunkSizes() : [];
    const offloadSizes = tokens.length > CHUNK_SLICE_TOKENS ? this.offloadBlockSizes(req.model) : [];
    if (!longBlocks && chunkSizes.length === 0 && offloadSizes.length === 0) return undefined;
    const schemes = this.schemesFor(req.model, longBlocks, offloadSizes.length > 0);
    return this.hasher.hashInSlices(req, this.prepare(req), tokens, schemes, chunkSizes, since, request);
  }

  /**
   * A long prompt worked out on the prompt thread (prompt-thread.ts), where it takes it: what the
   * decision would compute here (every KV-routed engine's block hashes for the model, and for
   * `predictive` its offload blocks' and the shared tiers' chunks), given to the request's memos.
   */
  private askThread(req: RequestView, request: Cancellable): Promise<boolean> | undefined {
    const chars = promptChars(req);
    if (chars < PROMPT_THREAD_MIN_CHARS || chars > PROMPT_THREAD_MAX_CHARS) return undefined;
    const schemes = this.schemesFor(req.model, true, this.policyName === "predictive");
    if (schemes.length === 0) return undefined;
    if (!this.tokenizers.has(req.model)) {
      // the model's first long prompt: the loop is about to load its own tokenizer (a second or so
      // for a big vocabulary, which it must have for the short prompts and as the fallback), so the
      // thread loads its copy on the other core meanwhile, not after the loop's next WARM_AFTER
      const { root, parent } = this.lineageOf(req.model, req.lora);
      this.thread.warm(req.model, parent ?? root);
    }
    const tk = this.tokenizerFor(req.model, req.lora);
    if (tk === null) return undefined;
    const root = this.tokenizers.get(req.model)!.root;
    if (!this.thread.takes(req.model, root)) return undefined;
    const chunkSizes = this.tierChunkSizes();
    const chunkSeed = chunkSizes.length > 0 ? this.hasher.sharedTierSeed() : "";
    const opts = this.prefix.index.opts;
    return this.thread
      .ask(
        {
          tokenizer: { model: req.model, root },
          view: promptView(req),
          schemes: schemes.map((s) => ({
            key: s.key,
            blockSize: s.blockSize,
            unit: s.unit,
            opts: this.hasher.hashOptions(req, s),
          })),
          chunks: chunkSizes.map((tokens) => ({ tokens, seed: chunkSeed })),
          prefix: { blockChars: opts.blockChars, maxBlocks: opts.maxBlocksPerRequest },
        },
        request,
        chars,
      )
      .then((a) => this.provide(req, a));
  }

  /** the prompt thread's values in the request's memos (none given: the decision works them out) */
  private provide(req: RequestView, a: PromptAnswer | undefined): boolean {
    if (!a) return false;
    if (this.prepared.get(req) !== undefined) return true;
    // the typed arrays as they came (the prefix ids are copied: the prefix index keeps number[])
    const p: PreparedPrompt = { model: req.model, tokens: a.tokens ?? null, hashes: new Map() };
    for (const h of a.hashes ?? []) p.hashes.set(h.key, h.ids);
    if (a.chunks && a.chunks.length > 0) p.chunks = new Map(a.chunks.map((c) => [c.tokens, c.hashes]));
    this.prepared.set(req, p);
    if (a.prefix) this.prefix.provide(req, { ids: plain(a.prefix.ids), chars: a.prefix.chars });
    return true;
  }

  /**
   * The hash schemes of the model's KV-routed engines, each once: their GPU blocks' (`gpu`) and their
   * offload tiers' where those are larger blocks (`offload`).
   */
  private schemesFor(model: string, gpu: boolean, offload: boolean): HashScheme[] {
    const schemes: HashScheme[] = [];
    const add = (s: HashScheme) => {
      if (!schemes.some((o) => o.key === s.key)) schemes.push(s);
    };
    for (const st of this.subs.states.values()) {
      const bs = this.kvBlockSize(st, model);
      if (bs === undefined) continue;
      if (gpu) add(this.hasher.schemeOf(st, bs));
      const ob = offload ? this.offloadBlockOf(st, model) : undefined;
      if (ob !== undefined) add(this.hasher.schemeOf(st, ob));
    }
    return schemes;
  }

  /** the chunk sizes of the shared cache servers `predictive` prices (and their engines' own LMCache tiers) */
  private tierChunkSizes(): number[] {
    const sizes: number[] = [];
    if (this.policyName !== "predictive") return sizes;
    for (const t of this.tiers.all())
      if (!sizes.includes(t.index.chunkTokens)) sizes.push(t.index.chunkTokens);
    return sizes;
  }

  /** the offload block sizes `predictive` matches beside the GPU blocks (predict: LMCache's MP chunks) */
  private offloadBlockSizes(model: string): number[] {
    const sizes: number[] = [];
    if (this.policyName !== "predictive") return sizes;
    for (const st of this.subs.states.values()) {
      const ob = this.offloadBlockOf(st, model);
      if (ob !== undefined && !sizes.includes(ob)) sizes.push(ob);
    }
    return sizes;
  }

  /** an engine's offload block size where it is not its GPU block's (KvIndex.offloadBlockSize) */
  private offloadBlockOf(st: { url: string; fallback: unknown }, model: string): number | undefined {
    const bs = this.kvBlockSize(st, model);
    const ob = this.kv.offloadBlockSize(st.url);
    return bs !== undefined && ob !== undefined && ob !== bs && ob <= MAX_OFFLOAD_BLOCK_TOKENS
      ? ob
      : undefined;
  }

  /** the block size of an engine routed by its KV events (not fallen back) when it serves `model` */
  private kvBlockSize(st: { url: string; fallback: unknown }, model: string): number | undefined {
    if (st.fallback !== null) return undefined;
    const view = this.registry.engines.get(st.url)?.view;
    return view?.blockSize && view.models.has(model) ? view.blockSize : undefined;
  }

  predict(req: RequestView, engines: readonly EngineView[]): CachePrediction {
    const n = engines.length;
    const cachedTokens = new Float64Array(n);
    const source: CacheSource[] = new Array(n);
    const heldTokens = new Float64Array(n).fill(NaN);
    const p = this.mode === "prefix" ? undefined : this.prepare(req);
    // the engines the loop below predicts from their KV events: the prefix index is not asked about them
    let fromKv: Uint8Array | undefined;
    if (p?.tokens)
      for (let i = 0; i < n; i++) {
        const st = this.subs.states.get(engines[i]!.id);
        if (st && st.fallback === null && engines[i]!.blockSize) (fromKv ??= new Uint8Array(n))[i] = 1;
      }
    const estimate = this.prefix.predictInto(req, engines, cachedTokens, fromKv);
    let exact = -1;
    // predictive prices each tier by its load time: that needs the prompt's tokens and the model's KV size
    const shape = p?.tokens && this.policyName === "predictive" ? this.pricing.shapeOf(req.model) : undefined;
    /** per candidate: prompt tokens the engine itself holds in some tier (GPU, then offload), -1 unknown */
    const local = shape ? new Float64Array(n).fill(-1) : undefined;
    for (let i = 0; i < n; i++) {
      source[i] = "prefix";
      if (!p) continue;
      const st = this.subs.states.get(engines[i]!.id);
      const bs = engines[i]!.blockSize;
      if (!st || st.fallback !== null || !bs) continue;
      // what its cache holds in all, from its events, whether or not this prompt's hashes can be made
      heldTokens[i] = this.kv.gpuBlocksOf(st.url) * bs;
      if (p.tokens === null) continue;
      const scheme = this.hasher.schemeOf(st, bs);
      if (local) {
        const m = this.kv.matchTiers(this.hasher.hashesFor(req, p, scheme), st.url);
        cachedTokens[i] = m.gpu * bs;
        local[i] = m.any * bs;
        // an offload tier of larger blocks (LMCache's MP server's chunks): hashed at their size
        const ob = this.offloadBlockOf(st, req.model);
        if (ob !== undefined)
          local[i] = Math.max(
            local[i]!,
            this.kv.matchTiers(this.hasher.hashesFor(req, p, this.hasher.schemeOf(st, ob)), st.url).any * ob,
          );
      } else {
        const { credit } = this.kv.match(this.hasher.hashesFor(req, p, scheme), st.url);
        cachedTokens[i] = credit * bs;
      }
      source[i] = "kv";
      exact = p.tokens.length;
    }
    for (let i = 0; i < n; i++) {
      // an engine failing live traffic must not attract requests by what it (maybe) caches
      if ((this.registry.engines.get(engines[i]!.id)?.passiveFailures ?? 0) > 0) {
        cachedTokens[i] = 0;
        if (local) local[i] = 0;
      }
    }
    let promptTokens = estimate;
    let scale = 1;
    if (exact >= 0 && estimate > 0) {
      // put the prefix engines' character estimates in the same (exact) token units
      scale = exact / estimate;
      for (let i = 0; i < n; i++) if (source[i] === "prefix") cachedTokens[i] = cachedTokens[i]! * scale;
      promptTokens = exact;
    } else if (exact >= 0) promptTokens = exact;
    // the prompt's blocks, so a prompt queued behind another with its prefix is credited for it
    const blocks = { ids: this.prefix.prepare(req).ids, tokensPerBlock: this.prefix.tokensPerBlock * scale };
    const pred: CachePrediction = { promptTokens, cachedTokens, source, blocks, heldTokens };
    if (shape && local) this.pricing.price(p!, engines, pred, local, shape);
    return pred;
  }

  onPicked(
    req: RequestView,
    engine: EngineView,
    cachedTokens: number,
    source: CacheSource,
    reason: string,
    ttftMs?: number,
    bestOtherTtftMs?: number,
  ): void {
    this.prefix.learn(req, engine.id);
    const p = this.prepared.get(req);
    const promptTokens = p?.tokens ? p.tokens.length : this.prefix.prepare(req).chars / 4;
    this.decisions.count(this.policyName, source, reason, cachedTokens, promptTokens);
    if (source === "kv") this.watchdog.predicted(engine.id, cachedTokens);
    const k = p?.tier ? p.tier.ids.indexOf(engine.id) : -1;
    // kept as figures and written out only when asked for (the debug header, the debug line)
    this.notes.set(req, {
      engine: engine.id,
      policy: this.policyName,
      source,
      reason,
      cachedTokens,
      promptTokens,
      ttftMs,
      bestOtherTtftMs,
      tierTokens: k >= 0 ? p!.tier!.tokens[k]! : 0,
      tierLoadMs: k >= 0 ? p!.tier!.seconds[k]! * 1000 : 0,
      kvUsage: engine.kvUsage,
      inFlight: engine.inFlight,
      awaitingFirstToken: engine.awaitingFirstToken,
    });
  }

  /** the last decision for a request, for the x-switchyard-route debug header */
  explain(req: RequestView): string | undefined {
    const note = this.notes.get(req);
    return note ? formatRouteNote(note) : undefined;
  }

  // ---- watchdog --------------------------------------------------------------------------------

  /** The engine's hit counter, from the registry's scrape: only engines routed by KV events are judged. */
  private scraped(e: EngineRecord, text: string): void {
    this.subs.scraped(e);
    const hits = parsePrefixCacheHits(text);
    if (hits !== null) this.hitsScraped(e, hits);
  }

  /** The engine's prefix-cache hit counter as scraped (a router worker hears it from its primary). */
  hitsScraped(e: EngineRecord, hits: number): void {
    const st = this.subs.states.get(e.url);
    if (!st || !st.healthy || st.fallback !== null) return;
    this.watchdog.reported(e.url, hits);
  }

  checkWatchdog(): void {
    const judged: string[] = [];
    for (const st of this.subs.states.values()) if (st.healthy && st.fallback === null) judged.push(st.url);
    judgeEngines(this.watchdog, judged, { mismatch: this.m.mismatch, error: this.m.mismatchError }, log);
  }
}

/** a typed array's values as a plain array (Array.from walks it through its iterator, several times slower) */
function plain<T extends number | bigint>(a: { readonly length: number; readonly [i: number]: T }): T[] {
  const out = new Array<T>(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]!;
  return out;
}
