// What the cache-aware policies (`prefix`, `kv`, `hybrid` from src/routing) know in a virtual-time
// fleet. `prefix` runs the routing library's own PrefixOracle on the rendered prompt text, as the live
// router does. `kv` and `hybrid` stand for the router's KV-event index: in a simulation every engine's
// events would flow and its hashes match, so the index would mirror each engine's GPU prefix cache; the
// oracle asks each engine directly (Engine.probeCachedTokens), without the event lag of a live router.
import type { Engine } from "../engine/index.js";
import type { CacheOracle, CachePrediction, CacheSource, EngineView, RequestView } from "../routing/index.js";

/** the prompt being routed, set by the fleet before each decision */
export interface ProbePrompt {
  tokens: readonly number[];
  sharedPrefix?: { key: string; tokens: number } | undefined;
}

export class EngineProbeOracle implements CacheOracle {
  current: ProbePrompt | null = null;
  private readonly byId = new Map<string, Engine>();

  constructor(engines: readonly Engine[], ids: readonly string[]) {
    engines.forEach((e, i) => this.byId.set(ids[i]!, e));
  }

  predict(_req: RequestView, engines: readonly EngineView[]): CachePrediction {
    const p = this.current;
    const cachedTokens = new Float64Array(engines.length);
    const source: CacheSource[] = new Array<CacheSource>(engines.length).fill("kv");
    if (!p) return { promptTokens: 0, cachedTokens, source };
    for (let i = 0; i < engines.length; i++) {
      const e = this.byId.get(engines[i]!.id);
      cachedTokens[i] = e ? e.probeCachedTokens(p.tokens, { sharedPrefix: p.sharedPrefix }) : 0;
    }
    return { promptTokens: p.tokens.length, cachedTokens, source };
  }
}
