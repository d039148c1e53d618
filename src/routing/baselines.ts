// Peers' routing designs as baselines, named after the router they come from, so one run of the fleet
// simulator (or of the live router) compares them with ours on the same engines and arrivals.
//
// `vllm-router-cache-aware`: vllm-router's default policy (`--policy cache_aware`, 0.1.x, inherited from
// the SGLang router), as its source describes it:
//   - load is the router's in-flight requests per engine; the fleet is imbalanced when
//     max − min > balance_abs_threshold (64) AND max > balance_rel_threshold (1.5) × min: then the least
//     loaded engine, whatever it holds;
//   - else the best prefix match of an approximate per-engine tree of the requests' text (learned from the
//     router's own picks, never from the engines): match rate = matched / prompt length; above
//     cache_threshold (0.3) the engine with the best match, otherwise the least loaded;
//   - ties go to the first engine in list order (Rust's min_by_key), not round-robin's way.
// The tree here is the `prefix` policy's character-block index (prefix-index.ts), the same kind of
// approximation at 64-character granularity instead of single characters: for prompts thousands of
// characters long the match rates differ by at most one block.
//
// `llm-d-sticky`: llm-d's "sticky until saturated" token-aware routing (its blog post of that name,
// 2026-08-17), as the post describes it:
//   - affinity first: a request goes where its KV is — the engine its session was last sent to (the
//     session header), or, for a request that carries no session, the engines holding its longest
//     prefix (the approximate index above, as llm-d's prefix-cache scorer); a session's first request
//     goes by load;
//   - until that engine is saturated, measured in tokens, not requests: for prefill-bound work the
//     tokens of the requests in flight on it (the router's own: their prompts, the KV they hold). The
//     post calibrates the threshold per model and accelerator; its Qwen3-32B TP 2 / H100 runs used
//     35 × 8,192 = 286,720 tokens, about one engine's KV cache there;
//   - then token-aware balancing: the engine with the fewest in-flight tokens, counting this request's
//     own uncached part there. The engine picked becomes the session's engine.
// It reads the engines' KV events where they flow (llm-d's precise prefix-cache mode), so prompt and
// cached token counts are the tokenizer's, not estimates from characters.
// Not modelled: the post's decode-bound (active requests) and latency-predictor load signals, which it
// picks for other workload kinds. The router counts requests in flight per engine, not which finished, so
// the in-flight tokens drop oldest-first as the count drops (requests of one shape finish about in the
// order sent). The session table is bounded (least recently used sessions forgotten).
import { LruMap } from "../collections/lru-map.js";
import { standardFilters } from "./filters.js";
import { RequestMemo } from "./memo.js";
import type { CacheOracle, CachePrediction, EngineView, Picker, Policy, Scorer } from "./types.js";

export interface VllmRouterCacheAwareOptions {
  /** minimum prefix match rate for the best-match engine (vllm-router's --cache-threshold) */
  cacheThreshold?: number;
  /** in-flight spread above which the fleet counts as imbalanced (--balance-abs-threshold) … */
  balanceAbs?: number;
  /** … when the busiest also has more than this multiple of the least busy's (--balance-rel-threshold) */
  balanceRel?: number;
}

/** vllm-router 0.1.17's command-line defaults */
export const VLLM_ROUTER_CACHE_AWARE_DEFAULTS: Required<VllmRouterCacheAwareOptions> = {
  cacheThreshold: 0.3,
  balanceAbs: 64,
  balanceRel: 1.5,
};

/** the first engine with the highest score: vllm-router breaks ties by list order */
const firstMaxPicker: Picker = (_req, engines, scores) => {
  let best = -1;
  for (let i = 0; i < engines.length; i++) if (best < 0 || scores[i]! > scores[best]!) best = i;
  return best < 0 ? undefined : engines[best];
};

export function createVllmRouterCacheAwarePolicy(
  name: string,
  oracle: CacheOracle,
  options: VllmRouterCacheAwareOptions = {},
): Policy {
  const o = { ...VLLM_ROUTER_CACHE_AWARE_DEFAULTS, ...options };
  const last = new RequestMemo<{ engines: readonly EngineView[]; pred: CachePrediction; reason: string }>(
    "vllm-router-cache-aware.scored",
  );
  const scorer: Scorer = {
    name: "vllm-router-cache-aware",
    weight: 1,
    score(req, engines, out) {
      let min = Infinity;
      let max = 0;
      for (const e of engines) {
        min = Math.min(min, e.inFlight);
        max = Math.max(max, e.inFlight);
      }
      const pred = oracle.predict(req, engines);
      let reason = "least-load";
      if (!(max - min > o.balanceAbs && max > min * o.balanceRel)) {
        let best = 0;
        for (let i = 0; i < engines.length; i++) best = Math.max(best, pred.cachedTokens[i]!);
        if (pred.promptTokens > 0 && best / pred.promptTokens > o.cacheThreshold) {
          for (let i = 0; i < engines.length; i++) out[i] = pred.cachedTokens[i]!;
          last.set(req, { engines, pred, reason: `${pred.source[0] ?? "prefix"}-hit` });
          return;
        }
      } else reason = "imbalance";
      for (let i = 0; i < engines.length; i++) out[i] = -engines[i]!.inFlight;
      last.set(req, { engines, pred, reason });
    },
  };
  return {
    name,
    filters: standardFilters,
    scorers: [scorer],
    picker: firstMaxPicker,
    onPicked(req, engine) {
      const s = last.get(req);
      const i = s ? s.engines.indexOf(engine) : -1;
      if (!s || i < 0) return;
      oracle.onPicked?.(req, engine, s.pred.cachedTokens[i]!, s.pred.source[i] ?? "none", s.reason);
    },
  };
}

export interface LlmdStickyOptions {
  /** queued prefill tokens at which an engine counts as saturated and affinity is released */
  saturationTokens?: number;
  /** sessions whose engine is remembered; the least recently used are forgotten beyond it */
  maxSessions?: number;
}

/** the published threshold (35 × vLLM's default 8,192-token prefill chunk) and a session table cap */
export const LLM_D_STICKY_DEFAULTS: Required<LlmdStickyOptions> = {
  saturationTokens: 35 * 8192,
  maxSessions: 65_536,
};

/** the token load one unit of least-loaded's score stands for: one prefill chunk */
const STICKY_LOAD_UNIT = 8192;

/** `picker`: the library's highest-score picker (exact ties rotate with the request's seq) */
export function createLlmdStickyPolicy(
  name: string,
  oracle: CacheOracle,
  picker: Picker,
  options: LlmdStickyOptions = {},
): Policy {
  const o = { ...LLM_D_STICKY_DEFAULTS, ...options };
  const held = new InFlightTokens();
  const homes = new LruMap<string, string>();
  /** per request: the candidates scored and each one's uncached tokens, for onPicked */
  const last = new RequestMemo<{
    engines: readonly EngineView[];
    pred: CachePrediction;
    uncached: Float64Array;
    reason: string;
  }>("llm-d-sticky.scored");
  const scorer: Scorer = {
    name: "llm-d-sticky",
    weight: 1,
    score(req, engines, out) {
      const pred = oracle.predict(req, engines);
      const n = engines.length;
      const uncached = new Float64Array(n);
      let maxCached = 0;
      for (let i = 0; i < n; i++) maxCached = Math.max(maxCached, pred.cachedTokens[i]!);
      const home = req.sessionKey ? homes.use(req.sessionKey) : undefined;
      const homeHere = home !== undefined && engines.some((e) => e.id === home);
      let minLoad = Infinity;
      for (let i = 0; i < n; i++) {
        uncached[i] = Math.max(0, pred.promptTokens - pred.cachedTokens[i]!);
        const queued = held.of(engines[i]!);
        out[i] = queued;
        minLoad = Math.min(minLoad, queued + uncached[i]!);
      }
      let reason = "least-tokens";
      for (let i = 0; i < n; i++) {
        const e = engines[i]!;
        const queued = out[i]!;
        // a new session has no engine yet: by load (its shared system prompt is on many engines, and
        // following it would pile every new session onto the first engines that served one)
        const affine = homeHere
          ? e.id === home
          : !req.sessionKey &&
            maxCached > 0 &&
            pred.cachedTokens[i]! >= maxCached - (pred.blocks?.tokensPerBlock ?? 0);
        const sticky = affine && queued < o.saturationTokens;
        if (sticky) reason = homeHere ? "session" : `${pred.source[i] ?? "prefix"}-hit`;
        // affinity outweighs any load difference; among equals (and once released) fewest tokens win
        const load = queued + uncached[i]!;
        out[i] = (sticky ? 0.5 : 0) + 0.5 / (1 + (load - minLoad) / STICKY_LOAD_UNIT);
      }
      last.set(req, { engines, pred, uncached, reason });
    },
  };
  return {
    name,
    filters: standardFilters,
    scorers: [scorer],
    picker,
    onPicked(req, engine) {
      const s = last.get(req);
      const i = s ? s.engines.indexOf(engine) : -1;
      if (!s || i < 0) return;
      held.add(engine, s.pred.promptTokens);
      if (req.sessionKey) {
        homes.set(req.sessionKey, engine.id);
        if (homes.size > o.maxSessions) homes.shift();
      }
      oracle.onPicked?.(req, engine, s.pred.cachedTokens[i]!, s.pred.source[i] ?? "none", s.reason);
    },
  };
}

/** engines remembered at most, and entries per engine (a caller that never lowers its counts) */
const MAX_ENGINES = 4096;
const MAX_ENTRIES = 65_536;

/**
 * Per engine, the prompt tokens of the router's requests in flight there, oldest first, trimmed to the
 * caller's in-flight count (EngineView.inFlight) as it drops.
 */
class InFlightTokens {
  private readonly byEngine = new Map<string, { tokens: number[]; head: number; total: number }>();

  of(e: EngineView): number {
    const q = this.byEngine.get(e.id);
    if (!q) return 0;
    while (q.tokens.length - q.head > e.inFlight) q.total -= q.tokens[q.head++]!;
    if (q.head > 64 && q.head * 2 > q.tokens.length) {
      q.tokens.splice(0, q.head);
      q.head = 0;
    }
    return q.total > 0 ? q.total : 0;
  }

  add(e: EngineView, tokens: number): void {
    let q = this.byEngine.get(e.id);
    if (!q) {
      if (this.byEngine.size >= MAX_ENGINES) this.byEngine.delete(this.byEngine.keys().next().value!);
      q = { tokens: [], head: 0, total: 0 };
      this.byEngine.set(e.id, q);
    } else if (q.tokens.length - q.head >= MAX_ENTRIES) q.total -= q.tokens[q.head++]!;
    q.tokens.push(tokens);
    q.total += tokens;
  }
}
