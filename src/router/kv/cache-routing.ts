// The router's CacheOracle for the prefix, kv and hybrid policies. Per engine it answers from the exact
// KV-event index when the engine's events flow and its hashes can be reproduced (block size and hash
// algorithm from vllm:cache_config_info, vLLM version from /version, hash seed from config, the model's
// tokenizer; an engine that has computed no prompt has published nothing, and its empty index is right:
// subscriptions.ts), and from the approximate prefix index otherwise — saying which, and why, in
// metrics and logs. Where the events come from is KvSubscriptions' business (subscriptions.ts); the
// metrics are in metrics.ts; the silent-miss watchdog (watchdog.ts) reads the registry's own /metrics
// scrapes.
//
// For `predictive` a prefix is priced by where it is (CachePrediction.tierTokens / tierLoadSeconds):
// the engine's GPU blocks are free (cachedTokens), the blocks its own offload tier holds beyond them
// (vLLM's native offload; or, for an engine wired to a cache server, LMCache's local CPU tier, whose
// events name LMCache chunks) load over its host link, and the LMCache chunks a shared cache server it
// loads from holds beyond both (tier-index.ts) load over its link to that server; each at bytes (the
// model's KV bytes per token) / bandwidth, not a fixed credit. The other policies keep cachedTokens
// with the offload credit.
import type { Registry as PromRegistry } from "prom-client";
import { computeBlockHashes, type BlockHashOptions } from "../../protocol/block-hashing.js";
import {
  engineHashSeed,
  extraKeyStyleFor,
  PINNED_HASH_SEED,
  type ExtraKeyStyle,
} from "../../protocol/vllm-releases.js";
import { logger } from "../../obs/log.js";
import { nextTurn, waitingSlices, type Cancellable } from "../../eventloop/turns.js";
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
import { kvBytesPerToken } from "../../models/kv-shape.js";
import { resolveGpu, resolveModel } from "../../models/profiles.js";
import type { ModelProfile } from "../../models/types.js";
import { chunkHashes, chunkHashesInto } from "../../protocol/lmcache-chunks.js";
import type { RouterConfig } from "../config/config.js";
import type { Registry } from "../engines/registry.js";
import type { Upstream } from "../engines/upstream.js";
import { KvIndex } from "./kv-index.js";
import { createCacheMetrics, type CacheMetrics } from "./metrics.js";
import { KvSubscriptions } from "./subscriptions.js";
import { requestTokenizerFor, type RequestTokenizer } from "./tokenizers.js";
import { SharedTiers } from "./tier-index.js";
import { HitWatchdog, judgeEngines, parsePrefixCacheHits } from "./watchdog.js";

/** engines remembered per configuration by the per-engine memos (a fleet larger than this starts them over) */
const MAX_ENGINE_MEMOS = 4096;

export { kvSourceFor, type KvSource } from "./subscriptions.js";

const log = logger("router.cache");

/** an offload tier's link when neither the config nor a GPU profile says: PCIe Gen4 x16 in practice (25 GB/s) */
export const DEFAULT_OFFLOAD_BANDWIDTH_GBPS = 200;

/**
 * Blocks hashed per turn of the event loop ahead of a decision: 1,024 blocks of 16 tokens cost 2.3–3 ms
 * of sha256 over CBOR on a quiet 2-core host. A prompt of at most this many blocks (16k tokens) is
 * hashed inside the decision, in one piece: slices of 256 blocks cost the prompts of
 * bench/routing/compare.ts (9–16k tokens) 5–7% of their TTFT p50 (each slice waits a turn), so only
 * prompts whose hashing would hold the loop far longer (128k tokens: 18 ms in one piece) are sliced.
 */
const HASH_SLICE_BLOCKS = 1024;
/**
 * Slices that keep the request's place in the line (oldest work first): 8 × 1,024 blocks, 128k tokens
 * at 16 per block; the rest of a larger prompt re-enters the line as new work, as the tokenizer's does
 */
const HASH_OLDEST_FIRST_SLICES = 8;
/** prompt tokens per slice of a shared tier's LMCache chunk hashes: as many as a slice of blocks holds */
const CHUNK_SLICE_TOKENS = HASH_SLICE_BLOCKS * 16;
/** the largest offload block a prompt is hashed at (LMCache's chunks: 256 tokens by default) */
const MAX_OFFLOAD_BLOCK_TOKENS = 8192;

export type CacheMode = "prefix" | "kv" | "hybrid";

/** A decision as the policy made it (CacheRouting.explain writes it out) */
interface RouteNote {
  engine: string;
  policy: string;
  source: CacheSource;
  reason: string;
  cachedTokens: number;
  promptTokens: number;
  ttftMs: number | undefined;
  bestOtherTtftMs: number | undefined;
  /** prompt tokens beyond the GPU hit priced at a tier's load time, and that time */
  tierTokens: number;
  tierLoadMs: number;
  /** the picked engine as the policy saw it */
  kvUsage: number;
  inFlight: number;
  awaitingFirstToken: number | undefined;
}

/**
 * How one engine's block hashes are made, so a prompt is hashed as that engine hashes it: its block
 * size, the token unit vLLM hashes in (its hash_block_size: the block size, or a divisor of it on
 * hybrid models, where a block's hash is the chained hash at its end), and the NONE_HASH seed and
 * extra-key form of its release (vllm-releases.ts).
 */
interface HashScheme {
  blockSize: number;
  unit: number;
  seed: string;
  style: ExtraKeyStyle;
  /** what a prompt's hashes under this scheme are kept by */
  key: string;
  /** what it was made from: the engine's /version and its cache_config_info labels */
  version: string | undefined;
  cacheConfig: Record<string, string> | undefined;
}

interface Prepared {
  model: string;
  tokens: number[] | null;
  /** hash scheme key → hashes of the blocks an engine could report as hits */
  hashes: Map<string, bigint[]>;
  /** chunk size → the prompt's LMCache chunk hashes (a shared tier's keys) */
  chunks?: Map<number, BigUint64Array>;
  /** the last prediction's tier figures, by engine id (the route note) */
  tier?: { ids: readonly string[]; tokens: Float64Array; seconds: Float64Array };
}

/** The model's KV cache per token: all of it (what a shared server sends), and the profile it is of. */
interface KvShape {
  bytesPerToken: number;
  model: ModelProfile;
}

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
  private readonly tokenizers = new Map<string, RequestTokenizer | null>();
  /** served model → the adapter it names (name and path, as /v1/models says), or null for a base model */
  private readonly loraOf = new Map<string, { name: string; path: string | null } | null>();
  /**
   * per engine and block size: the hash scheme made for it, remade when what it is made of changes
   * (the engine's version or cache config; every scheme is dropped when the configured seed changes)
   */
  private readonly schemes = new Map<string, Map<number, HashScheme>>();
  /** served model → its KV shape (null: no profile, its tiers are not priced) */
  private readonly kvShapes = new Map<string, KvShape | null>();
  /** per engine: bytes/s its offload tier loads at (offloadBandwidth) */
  private readonly offloadBandwidths = new Map<string, number>();
  /** the shared cache servers the engines load from (routing.cacheServers) */
  readonly tiers: SharedTiers;
  private readonly prepared = new RequestMemo<Prepared>("cache-routing.prepared");
  private readonly notes = new RequestMemo<RouteNote>("cache-routing.note");
  private timers: NodeJS.Timeout[] = [];
  private cfg: RouterConfig;
  /** the engines' PYTHONHASHSEED as configured (routing.hashSeed, else $PYTHONHASHSEED); undefined: unset */
  private hashSeed: string | undefined;
  private readonly m: CacheMetrics;
  private readonly onScrape = (e: Upstream, text: string): void => this.scraped(e, text);
  /** an engine came into rotation (or its models changed): subscribe at once, not at the next tick */
  private readonly onCapacity = (): void => void this.subs.reconcile();

  constructor(
    private readonly registry: Registry,
    cfg: RouterConfig,
    prom: PromRegistry,
  ) {
    this.cfg = cfg;
    this.hashSeed = cfg.routing.hashSeed ?? process.env.PYTHONHASHSEED;
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
    this.m = createCacheMetrics(prom, {
      prefix: this.prefix,
      kv: this.kv,
      tiers: this.tiers,
      mode: () => this.mode,
      collector: () => this.subs.collector,
      engines: () =>
        [...this.subs.states.values()].map((st) => ({
          url: st.url,
          fallback: st.fallback,
          hasSource: st.source !== undefined,
        })),
    });
    this.setPolicy(cfg.policy);
  }

  setPolicy(name: string): void {
    this.policyName = name;
    this.mode = policyReadsPrefixOnly(name) ? "prefix" : name === "kv" ? "kv" : "hybrid";
    this.readsKv = policyReadsKv(name);
  }

  setConfig(cfg: RouterConfig): void {
    this.cfg = cfg;
    this.hashSeed = cfg.routing.hashSeed ?? process.env.PYTHONHASHSEED;
    this.setPolicy(cfg.policy);
    this.tokenizers.clear();
    this.schemes.clear();
    this.kvShapes.clear();
    this.offloadBandwidths.clear();
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
    void this.subs.reconcile();
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.registry.off("scraped", this.onScrape);
    this.registry.off("capacity", this.onCapacity);
    await Promise.all([this.subs.close(), this.tiers.close()]);
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
    if (this.tokenizers.has(model)) return this.tokenizers.get(model)!;
    let root: string | undefined;
    let parent: string | null = null;
    let listed = false;
    for (const e of this.registry.engines.values()) {
      const card = e.modelCards.find((c) => c.id === model);
      if (card) {
        parent = typeof card.parent === "string" ? card.parent : null;
        root = typeof card.root === "string" ? card.root : (parent ?? undefined);
        listed = true;
        break;
      }
    }
    if (!listed && lora) {
      parent = lora.base || null;
      root = lora.path;
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
    if (this.tokenizers.size > 4096) {
      this.tokenizers.clear();
      this.loraOf.clear();
    }
    this.tokenizers.set(model, tk);
    if (this.kvShapes.size > 4096) this.kvShapes.clear();
    this.kvShapes.set(model, kvShapeOf(parent ?? root ?? model) ?? kvShapeOf(model));
    const adapter = listed ? parent !== null : lora !== undefined;
    this.loraOf.set(model, adapter ? { name: model, path: root ?? null } : null);
    this.m.tokenizer.set({ model, source: tk?.source ?? "none" }, 1);
    log.info({ model, tokenizer: tk?.source ?? "none" }, "router tokenizer for KV routing");
    return tk;
  }

  private prepare(req: RequestView): Prepared {
    let p = this.prepared.get(req);
    if (!p) {
      const tk = this.tokenizerFor(req.model, req.lora);
      p = { model: req.model, tokens: tk ? tk.tokens(req) : null, hashes: new Map() };
      this.prepared.set(req, p);
    }
    return p;
  }

  /**
   * The hash scheme of a KV-routed engine for blocks of `blockSize` tokens: its release (from its
   * /version) decides the default seed and the extra-key form, its cache_config_info's hash_block_size
   * the unit where that divides the block size.
   */
  private schemeOf(st: { url: string; version: string | undefined }, blockSize: number): HashScheme {
    const cacheConfig = this.registry.engines.get(st.url)?.load.cacheConfig;
    let byEngine = this.schemes.get(st.url);
    const known = byEngine?.get(blockSize);
    // per request and engine: what it is made of is compared, the version not parsed again
    if (known && known.version === st.version && known.cacheConfig === cacheConfig) return known;
    const version = st.version ?? "";
    const seed = engineHashSeed(version, this.hashSeed);
    const style = extraKeyStyleFor(version);
    const unit = hashUnitOf(cacheConfig, blockSize);
    const scheme: HashScheme = {
      blockSize,
      unit,
      seed,
      style,
      key: `${blockSize}/${unit}/${style}/${seed}`,
      version: st.version,
      cacheConfig,
    };
    if (!byEngine) {
      if (this.schemes.size >= MAX_ENGINE_MEMOS) this.schemes.clear();
      byEngine = new Map();
      this.schemes.set(st.url, byEngine);
    }
    // a GPU block size and an offload tier's: two at most, but a cap all the same
    if (byEngine.size >= 4) byEngine.clear();
    byEngine.set(blockSize, scheme);
    return scheme;
  }

  /**
   * The seed of a shared tier's LMCache chunk hashes: LMCache chains from its engines' NONE_HASH, so
   * the configured seed, else what the engines' release defaults to (the first engine whose version
   * is known; a fleet mixing releases across 0.29 must set one), else the pinned seed.
   */
  private sharedTierSeed(): string {
    if (this.hashSeed !== undefined) return this.hashSeed;
    for (const st of this.subs.states.values())
      if (st.version !== undefined && st.version !== "unknown") return engineHashSeed(st.version, undefined);
    return PINNED_HASH_SEED;
  }

  private hashOptions(req: RequestView, s: HashScheme): BlockHashOptions {
    const salt = req.body?.cache_salt;
    const lora = this.loraOf.get(req.model) ?? null;
    return {
      blockSize: s.unit,
      hashSeed: s.seed,
      extraKeyStyle: s.style,
      loraName: lora?.name ?? null,
      loraPath: lora?.path ?? null,
      cacheSalt: typeof salt === "string" ? salt : null,
    };
  }

  private hashesFor(req: RequestView, p: Prepared, s: HashScheme): bigint[] {
    let h = p.hashes.get(s.key);
    if (!h) {
      const tokens = p.tokens!;
      const units = computeBlockHashes(
        tokens.slice(0, hashedBlocks(tokens, s.blockSize) * s.blockSize),
        this.hashOptions(req, s),
      ).ids;
      h = blockEnds(units, s);
      p.hashes.set(s.key, h);
    }
    return h;
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
    const schemes: HashScheme[] = [];
    const add = (s: HashScheme) => {
      if (!schemes.some((o) => o.key === s.key)) schemes.push(s);
    };
    for (const st of this.subs.states.values()) {
      const bs = this.kvBlockSize(st, req.model);
      if (bs === undefined) continue;
      if (longBlocks) add(this.schemeOf(st, bs));
      const ob = offloadSizes.length > 0 ? this.offloadBlockOf(st, req.model) : undefined;
      if (ob !== undefined) add(this.schemeOf(st, ob));
    }
    return this.hashInSlices(req, tokens, schemes, chunkSizes, since, request);
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

  private async hashInSlices(
    req: RequestView,
    tokens: number[],
    schemes: readonly HashScheme[],
    chunkSizes: readonly number[],
    since: number,
    request: Cancellable,
  ): Promise<void> {
    const p = this.prepare(req);
    // a hash seed reloaded meanwhile leaves this request's hashes on the old seed: it misses, once
    let slices = 0;
    const turn = async () => {
      if (slices > 0 || waitingSlices() > 0) {
        // as the tokenizer does: past its first slices a huge prompt takes turns with newer work
        await nextTurn(slices < HASH_OLDEST_FIRST_SLICES ? since : performance.now(), request);
      }
      slices++;
    };
    for (const s of schemes) {
      if (p.hashes.has(s.key)) continue;
      const bs = s.unit;
      const blocks = (hashedBlocks(tokens, s.blockSize) * s.blockSize) / bs;
      const opts = this.hashOptions(req, s);
      const ids: bigint[] = new Array(blocks);
      let parent: Uint8Array | null = null;
      // a slice is so many tokens, whatever the block size (the time goes per token)
      const step = Math.max(1, Math.floor(CHUNK_SLICE_TOKENS / bs));
      for (let b = 0; b < blocks; b += step) {
        await turn();
        const end = Math.min(blocks, b + step);
        const h = computeBlockHashes(tokens.slice(b * bs, end * bs), opts, parent, b);
        for (let i = 0; i < h.ids.length; i++) ids[b + i] = h.ids[i]!;
        parent = h.digests[h.digests.length - 1]!;
      }
      p.hashes.set(s.key, blockEnds(ids, s));
    }
    for (const ct of chunkSizes) {
      if (p.chunks?.has(ct)) continue;
      const scheme = { chunkTokens: ct, hashSeed: this.sharedTierSeed() };
      const out = new BigUint64Array(Math.floor(tokens.length / ct));
      const step = Math.max(1, Math.floor(CHUNK_SLICE_TOKENS / ct));
      for (let c = 0; c < out.length; c += step) {
        await turn();
        chunkHashesInto(tokens, out, c, Math.min(out.length, c + step), scheme);
      }
      (p.chunks ??= new Map()).set(ct, out);
    }
  }

  predict(req: RequestView, engines: readonly EngineView[]): CachePrediction {
    const n = engines.length;
    const cachedTokens = new Float64Array(n);
    const source: CacheSource[] = new Array(n);
    const heldTokens = new Float64Array(n).fill(NaN);
    const estimate = this.prefix.predictInto(req, engines, cachedTokens);
    let exact = -1;
    const p = this.mode === "prefix" ? undefined : this.prepare(req);
    // predictive prices each tier by its load time: that needs the prompt's tokens and the model's KV size
    const shape = p?.tokens && this.policyName === "predictive" ? this.kvShapes.get(req.model) : undefined;
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
      const scheme = this.schemeOf(st, bs);
      if (local) {
        const m = this.kv.matchTiers(this.hashesFor(req, p, scheme), st.url);
        cachedTokens[i] = m.gpu * bs;
        local[i] = m.any * bs;
        // an offload tier of larger blocks (LMCache's MP server's chunks): hashed at their size
        const ob = this.offloadBlockOf(st, req.model);
        if (ob !== undefined)
          local[i] = Math.max(
            local[i]!,
            this.kv.matchTiers(this.hashesFor(req, p, this.schemeOf(st, ob)), st.url).any * ob,
          );
      } else {
        const { credit } = this.kv.match(this.hashesFor(req, p, scheme), st.url);
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
    if (shape && local) this.priceTiers(p!, engines, pred, local, shape);
    return pred;
  }

  /**
   * Fills tierTokens / tierLoadSeconds: per candidate, the prompt tokens beyond its GPU hit that its own
   * offload tier and then the shared cache server it loads from hold, and the seconds they take to load.
   */
  private priceTiers(
    p: Prepared,
    engines: readonly EngineView[],
    pred: CachePrediction,
    local: Float64Array,
    shape: KvShape,
  ): void {
    const n = engines.length;
    const tokens = p.tokens!;
    // vLLM always computes the last prompt token: a tier can give at most the rest
    const loadable = Math.max(0, tokens.length - 1);
    const tierTokens = new Float64Array(n);
    const tierLoadSeconds = new Float64Array(n);
    const pc = this.cfg.predictive;
    let any = false;
    for (let i = 0; i < n; i++) {
      const id = engines[i]!.id;
      // an engine failing live traffic is credited with nothing it (maybe) holds, here either
      if ((this.registry.engines.get(id)?.passiveFailures ?? 0) > 0) continue;
      const gpu = pred.cachedTokens[i]!;
      let own = local[i]! >= 0 ? local[i]! : gpu;
      const server = this.tiers.serverFor(id);
      // an engine loading from a cache server runs LMCache: its own CPU tier's events name LMCache
      // chunks (medium "cpu"), found in its index by the prompt's chunk hashes
      const kvRouted = local[i]! >= 0;
      const hashes =
        server && (kvRouted || server.index.size > 0)
          ? this.chunksOf(p, server.index.chunkTokens)
          : undefined;
      if (server && hashes && kvRouted)
        own = Math.max(
          own,
          Math.min(loadable, this.kv.matchTiers(hashes, id).any * server.index.chunkTokens),
        );
      let extra = 0;
      let seconds = 0;
      if (own > gpu) {
        const tp = pc.engines[id]?.tensorParallelSize ?? pc.tensorParallelSize;
        // each GPU loads its own shard of the heads over its own host link
        const perGpu = kvBytesPerToken(shape.model, tp);
        extra += own - gpu;
        seconds += ((own - gpu) * perGpu) / this.offloadBandwidth(id);
      }
      if (server && hashes && server.index.size > 0) {
        const shared = Math.min(loadable, server.index.match(hashes) * server.index.chunkTokens);
        const beyond = shared - own;
        if (beyond > 0) {
          extra += beyond;
          seconds += (beyond * shape.bytesPerToken) / server.bandwidth;
        }
      }
      if (extra > 0) {
        tierTokens[i] = extra;
        tierLoadSeconds[i] = seconds * pc.timeScale;
        any = true;
      }
    }
    if (!any) {
      p.tier = undefined;
      return;
    }
    pred.tierTokens = tierTokens;
    pred.tierLoadSeconds = tierLoadSeconds;
    p.tier = { ids: engines.map((e) => e.id), tokens: tierTokens, seconds: pred.tierLoadSeconds };
  }

  /** the prompt's LMCache chunk hashes for chunks of `ct` tokens, made once per request */
  private chunksOf(p: Prepared, ct: number): BigUint64Array {
    p.chunks ??= new Map();
    let hashes = p.chunks.get(ct);
    if (!hashes) {
      const tokens = p.tokens!;
      hashes = chunkHashes(tokens, Math.floor(tokens.length / ct), {
        chunkTokens: ct,
        hashSeed: this.sharedTierSeed(),
      });
      p.chunks.set(ct, hashes);
    }
    return hashes;
  }

  /**
   * bytes/s an engine's offload tier loads at: configured, else its GPU profile's host link, else PCIe
   * Gen4; resolved once per engine and configuration, not per decision (bounded as the engine set is)
   */
  private offloadBandwidth(engine: string): number {
    let bw = this.offloadBandwidths.get(engine);
    if (bw === undefined) {
      if (this.offloadBandwidths.size >= MAX_ENGINE_MEMOS) this.offloadBandwidths.clear();
      bw = this.resolveOffloadBandwidth(engine);
      this.offloadBandwidths.set(engine, bw);
    }
    return bw;
  }

  private resolveOffloadBandwidth(engine: string): number {
    const gbps = this.cfg.routing.kvIndex.offloadBandwidthGbps;
    if (gbps !== undefined) return (gbps * 1e9) / 8;
    const gpu = this.cfg.predictive.engines[engine]?.gpu ?? this.cfg.predictive.gpu;
    if (gpu !== undefined) {
      try {
        return resolveGpu(gpu).hostLinkBandwidth;
      } catch {
        // an unknown profile: the default below
      }
    }
    return (DEFAULT_OFFLOAD_BANDWIDTH_GBPS * 1e9) / 8;
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
    this.m.decisions.inc({ policy: this.policyName, source, reason });
    this.m.predicted.inc({ source }, cachedTokens);
    this.m.prompt.inc({ source }, promptTokens);
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
    const n = this.notes.get(req);
    if (!n) return undefined;
    let note = `engine=${n.engine}; policy=${n.policy}; source=${n.source}; reason=${n.reason}; predicted_cached_tokens=${Math.round(n.cachedTokens)}; prompt_tokens=${Math.round(n.promptTokens)}`;
    // the seconds-based cost's view: what it predicted here, and the best it saw elsewhere
    if (n.ttftMs !== undefined) note += `; predicted_ttft_ms=${Math.round(n.ttftMs)}`;
    if (n.bestOtherTtftMs !== undefined && Number.isFinite(n.bestOtherTtftMs))
      note += `; next_best_ttft_ms=${Math.round(n.bestOtherTtftMs)}`;
    // a prefix beyond the GPU hit that a tier (the engine's offload, a shared cache server) loads
    if (n.tierTokens > 0)
      note += `; tier_tokens=${Math.round(n.tierTokens)}; tier_load_ms=${n.tierLoadMs.toFixed(1)}`;
    // the engine as the policy saw it: a prediction read beside the TTFT that came is judged by these
    // (a full KV cache admits a prompt only as running requests finish)
    note += `; kv_usage=${n.kvUsage.toFixed(3)}; in_flight=${n.inFlight}`;
    if (n.awaitingFirstToken !== undefined) note += `; awaiting_first_token=${n.awaitingFirstToken}`;
    return note;
  }

  // ---- watchdog --------------------------------------------------------------------------------

  /** The engine's hit counter, from the registry's scrape: only engines routed by KV events are judged. */
  private scraped(e: Upstream, text: string): void {
    this.subs.scraped(e);
    const hits = parsePrefixCacheHits(text);
    if (hits !== null) this.hitsScraped(e, hits);
  }

  /** The engine's prefix-cache hit counter as scraped (a router worker hears it from its primary). */
  hitsScraped(e: Upstream, hits: number): void {
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

/** the full blocks of a prompt an engine can report as hits: vLLM always computes the last token */
/**
 * The hash unit vLLM 0.32 publishes in cache_config_info's hash_block_size where it is not the block
 * size ("None" on a plain engine): a divisor of the block size, else the block size.
 */
export function hashUnitOf(cacheConfig: Record<string, string> | undefined, blockSize: number): number {
  const unit = Number(cacheConfig?.hash_block_size);
  return Number.isInteger(unit) && unit > 0 && unit < blockSize && blockSize % unit === 0 ? unit : blockSize;
}

/**
 * A block's hash from the hashes of its units: the chained hash at the block's end
 * (vLLM's BlockHashListWithBlockSize); the units' own list where they are the blocks.
 */
function blockEnds(units: bigint[], s: HashScheme): bigint[] {
  if (s.unit === s.blockSize) return units;
  const ratio = s.blockSize / s.unit;
  const out: bigint[] = new Array(Math.floor(units.length / ratio));
  for (let k = 0; k < out.length; k++) out[k] = units[(k + 1) * ratio - 1]!;
  return out;
}

function hashedBlocks(tokens: readonly number[], blockSize: number): number {
  return Math.floor(Math.max(0, tokens.length - 1) / blockSize);
}

/** The model's KV shape from its profile; null for a model the catalogue does not know. */
function kvShapeOf(model: string): KvShape | null {
  try {
    const m = resolveModel(model);
    return { bytesPerToken: kvBytesPerToken(m), model: m };
  } catch {
    return null;
  }
}
