// What `predictive` pays to load a prefix from where it is (CachePrediction.tierTokens /
// tierLoadSeconds): the engine's GPU blocks are free (cachedTokens), the blocks its own offload tier
// holds beyond them (vLLM's native offload; or, for an engine wired to a cache server, LMCache's local
// CPU tier, whose events name LMCache chunks) load over its host link, and the LMCache chunks a shared
// cache server it loads from holds beyond both (tier-index.ts) load over its link to that server; each
// at bytes (the model's KV bytes per token) / bandwidth, not a fixed credit.
import { kvBytesPerToken } from "../../models/kv-shape.js";
import { resolveGpu, resolveModel } from "../../models/profiles.js";
import type { ModelProfile } from "../../models/types.js";
import type { CachePrediction, EngineView } from "../../routing/index.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { KvIndex } from "./kv-index.js";
import { MAX_ENGINE_MEMOS, type PreparedPrompt, type PromptHasher } from "./prompt-hashes.js";
import type { SharedTiers } from "./tier-index.js";

/** an offload tier's link when neither the config nor a GPU profile says: PCIe Gen4 x16 in practice (25 GB/s) */
export const DEFAULT_OFFLOAD_BANDWIDTH_GBPS = 200;

/** The model's KV cache per token: all of it (what a shared server sends), and the profile it is of. */
export interface KvShape {
  bytesPerToken: number;
  model: ModelProfile;
}

export interface TierPricingDeps {
  registry: EngineRegistry;
  kv: KvIndex;
  tiers: SharedTiers;
  hasher: PromptHasher;
  config: () => RouterConfig;
}

export class TierPricing {
  /** served model → its KV shape (null: no profile, its tiers are not priced) */
  private readonly kvShapes = new Map<string, KvShape | null>();
  /** per engine: bytes/s its offload tier loads at (offloadBandwidth) */
  private readonly offloadBandwidths = new Map<string, number>();

  constructor(private readonly deps: TierPricingDeps) {}

  /** A new configuration: shapes and bandwidths are resolved again. */
  clear(): void {
    this.kvShapes.clear();
    this.offloadBandwidths.clear();
  }

  /** Learns a served model's KV shape from its profile (the base model's, for an adapter). */
  learnModel(model: string, profileName: string): void {
    if (this.kvShapes.size > 4096) this.kvShapes.clear();
    this.kvShapes.set(model, kvShapeOf(profileName) ?? kvShapeOf(model));
  }

  /** the served model's KV shape; undefined when not learned, null when it has no profile */
  shapeOf(model: string): KvShape | null | undefined {
    return this.kvShapes.get(model);
  }

  /**
   * Fills tierTokens / tierLoadSeconds: per candidate, the prompt tokens beyond its GPU hit that its own
   * offload tier and then the shared cache server it loads from hold, and the seconds they take to load.
   */
  price(
    p: PreparedPrompt,
    engines: readonly EngineView[],
    pred: CachePrediction,
    local: Float64Array,
    shape: KvShape,
  ): void {
    const { registry, kv, tiers, hasher } = this.deps;
    const n = engines.length;
    const tokens = p.tokens!;
    // vLLM always computes the last prompt token: a tier can give at most the rest
    const loadable = Math.max(0, tokens.length - 1);
    const tierTokens = new Float64Array(n);
    const tierLoadSeconds = new Float64Array(n);
    const pc = this.deps.config().predictive;
    let any = false;
    for (let i = 0; i < n; i++) {
      const id = engines[i]!.id;
      // an engine failing live traffic is credited with nothing it (maybe) holds, here either
      if ((registry.engines.get(id)?.passiveFailures ?? 0) > 0) continue;
      const gpu = pred.cachedTokens[i]!;
      let own = local[i]! >= 0 ? local[i]! : gpu;
      const server = tiers.serverFor(id);
      // an engine loading from a cache server runs LMCache: its own CPU tier's events name LMCache
      // chunks (medium "cpu"), found in its index by the prompt's chunk hashes
      const kvRouted = local[i]! >= 0;
      const hashes =
        server && (kvRouted || server.index.size > 0)
          ? hasher.chunksOf(p, server.index.chunkTokens)
          : undefined;
      if (server && hashes && kvRouted)
        own = Math.max(own, Math.min(loadable, kv.matchTiers(hashes, id).any * server.index.chunkTokens));
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
    const cfg = this.deps.config();
    const gbps = cfg.routing.kvIndex.offloadBandwidthGbps;
    if (gbps !== undefined) return (gbps * 1e9) / 8;
    const gpu = cfg.predictive.engines[engine]?.gpu ?? cfg.predictive.gpu;
    if (gpu !== undefined) {
      try {
        return resolveGpu(gpu).hostLinkBandwidth;
      } catch {
        // an unknown profile: the default below
      }
    }
    return (DEFAULT_OFFLOAD_BANDWIDTH_GBPS * 1e9) / 8;
  }
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
