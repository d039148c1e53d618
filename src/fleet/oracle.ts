// What the cache-aware policies (`prefix`, `kv`, `hybrid` from src/routing) know in a virtual-time
// fleet. `prefix` runs the routing library's own PrefixOracle on the rendered prompt text, as the live
// router does. `kv` and `hybrid` stand for the router's KV-event index: in a simulation every engine's
// events would flow and its hashes match, so the index would mirror each engine's GPU prefix cache; the
// oracle asks each engine directly (Engine.probePrefix), without the event lag of a live router.
// What each engine's cache holds in all (CachePrediction.heldTokens) is read from it as well, as the
// router counts it from the events. The prompt's chained block ids (CachePrediction.blocks) are the
// approximate index's, as the live router's oracle gives them. What the engine's own CPU tier holds
// beyond its GPU hit is always priced at its load time (CachePrediction.tierTokens), as is the shared
// server's part when the router is told of the server (tier-aware).
import type { Engine } from "../engine/index.js";
import type { SharedCacheServer } from "./remote.js";
import {
  CHARS_PER_TOKEN,
  PrefixOracle,
  type CacheOracle,
  type CachePrediction,
  type CacheSource,
  type EngineView,
  type RequestView,
} from "../routing/index.js";

/** the prompt being routed, set by the fleet before each decision */
export interface ProbePrompt {
  tokens: readonly number[];
  sharedPrefix?: { key: string; tokens: number } | undefined;
}

export class EngineProbeOracle implements CacheOracle {
  current: ProbePrompt | null = null;
  private readonly byId = new Map<string, Engine>();
  /** the prompt's block ids, from the approximate index's rendering (nothing is learned into it) */
  private readonly ids = new PrefixOracle();

  /** the shared server each engine (by id) loads from, when the router is told of them */
  private readonly tierById = new Map<string, SharedCacheServer>();
  /** what each server holds of the prompt being priced, looked up once per server (cleared per prompt) */
  private readonly heldBy = new Map<SharedCacheServer, number>();

  /**
   * `tier`: the shared cache server each engine loads from (by index), when the router is told of them:
   * what it holds of the prompt beyond an engine's GPU hit is priced at its load time
   * (CachePrediction.tierTokens)
   */
  constructor(
    engines: readonly Engine[],
    ids: readonly string[],
    tier: readonly SharedCacheServer[] | null = null,
  ) {
    engines.forEach((e, i) => {
      this.byId.set(ids[i]!, e);
      const server = tier?.[i];
      if (server) this.tierById.set(ids[i]!, server);
    });
  }

  predict(req: RequestView, engines: readonly EngineView[]): CachePrediction {
    const p = this.current;
    const n = engines.length;
    const cachedTokens = new Float64Array(n);
    const source: CacheSource[] = new Array<CacheSource>(n).fill("kv");
    if (!p) return { promptTokens: 0, cachedTokens, source };
    const heldTokens = new Float64Array(n);
    // beyond each engine's GPU hit: what its own CPU tier holds (native offload, LMCache's local CPU),
    // then what the shared server holds beyond that, each at its own load time
    let tierTokens: Float64Array | undefined;
    let tierLoadSeconds: Float64Array | undefined;
    const held = this.heldBy;
    held.clear();
    for (let i = 0; i < n; i++) {
      const e = this.byId.get(engines[i]!.id);
      const server = this.tierById.get(engines[i]!.id);
      let shared = 0;
      if (server) {
        shared = held.get(server) ?? Math.min(server.held(p.tokens), p.tokens.length - 1);
        held.set(server, shared);
      }
      // the GPU hit and the engine's own tier beyond it, the prompt's blocks hashed once for both
      const probe = e?.probePrefix(p.tokens, { sharedPrefix: p.sharedPrefix });
      const gpu = probe?.gpuTokens ?? 0;
      const ownTokens = probe?.tierTokens ?? 0;
      const ownSeconds = probe?.tierSeconds ?? 0;
      cachedTokens[i] = gpu;
      heldTokens[i] = e ? e.heldTokens() : NaN;
      const extra = Math.max(0, shared - gpu - ownTokens);
      if (ownTokens + extra === 0) continue;
      tierTokens ??= new Float64Array(n);
      tierLoadSeconds ??= new Float64Array(n);
      tierTokens[i] = ownTokens + extra;
      tierLoadSeconds[i] = ownSeconds + (extra > 0 ? server!.loadSeconds(extra) : 0);
    }
    const prepared = this.ids.prepare(req);
    // a block's estimated tokens in the prompt's (exact) token units
    const estimate = prepared.chars / CHARS_PER_TOKEN;
    const scale = estimate > 0 ? p.tokens.length / estimate : 0;
    const blocks = { ids: prepared.ids, tokensPerBlock: this.ids.tokensPerBlock * scale };
    return {
      promptTokens: p.tokens.length,
      cachedTokens,
      source,
      blocks,
      heldTokens,
      tierTokens,
      tierLoadSeconds,
    };
  }
}
