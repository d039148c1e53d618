// `llm-d-sticky`: llm-d's "sticky until saturated" token-aware routing (its blog post of that name,
// 2026-08-17), as the post describes it:
//   - affinity first: a request goes where its KV is — the engine its session was last sent to (the
//     session header), or, for a request that carries no session, the engines holding its longest
//     prefix (the approximate index above, as llm-d's prefix-cache scorer); a session's first request
//     goes by load;
//   - until that engine is saturated, measured in tokens, not requests: for prefill-bound work its
//     queued prefill, the uncached prompt tokens of the router's requests there that have no first
//     token yet. The post calibrates the threshold per model and accelerator; its Qwen3-32B TP 2 / H100
//     runs used 35 × 8,192 = 286,720 tokens (35 of vLLM's default 8,192-token prefill chunks);
//   - then token-aware balancing: the engine with the fewest tokens in flight (the prompts of the
//     router's requests there), counting this request's own uncached part there. The engine picked
//     becomes the session's engine.
// An earlier reading held the tokens in flight against the threshold too (`saturationLoad:
// "in-flight-prompts"`, kept for comparison): four running 72k contexts saturate an engine then, and
// sessions were released while their engine was only decoding.
// It reads the engines' KV events where they flow (llm-d's precise prefix-cache mode), so prompt and
// cached token counts are the tokenizer's, not estimates from characters.
// Not modelled: the post's decode-bound (active requests) and latency-predictor load signals, which it
// picks for other workload kinds. A request's queued tokens leave the count at its first token (or its
// end, or its abandonment), and an engine with no request awaiting a first token has none. The router
// counts requests in flight per engine, not which finished, so the tokens in flight drop oldest-first as
// the count drops. The session table is bounded (least recently used sessions forgotten).
import { LruMap } from "../../collections/lru-map.js";
import { standardFilters } from "../filters.js";
import { RequestMemo } from "../memo.js";
import type {
  CacheOracle,
  CachePrediction,
  EngineView,
  Picker,
  Policy,
  RequestView,
  Scorer,
} from "../types.js";

export interface LlmdStickyOptions {
  /** queued prefill tokens at which an engine counts as saturated and affinity is released */
  saturationTokens?: number;
  /** sessions whose engine is remembered; the least recently used are forgotten beyond it */
  maxSessions?: number;
  /**
   * what is held against the threshold: the queued prefill (uncached tokens awaiting a first token), or
   * the whole prompts of every request in flight (an earlier reading, for comparison)
   */
  saturationLoad?: "queued-prefill" | "in-flight-prompts";
}

/** the published threshold (35 × vLLM's default 8,192-token prefill chunk) and a session table cap */
export const LLM_D_STICKY_DEFAULTS: Required<LlmdStickyOptions> = {
  saturationTokens: 35 * 8192,
  maxSessions: 65_536,
  saturationLoad: "queued-prefill",
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
  /** what saturation is measured in (queued prefill by default) and what balancing is (tokens in flight) */
  const flight: EngineTokens = new InFlightTokens();
  const held: EngineTokens = o.saturationLoad === "in-flight-prompts" ? flight : new QueuedPrefill();
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
        out[i] = held.of(engines[i]!);
        minLoad = Math.min(minLoad, flight.of(engines[i]!) + uncached[i]!);
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
        const load = flight.of(e) + uncached[i]!;
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
      if (held !== flight) held.add(req, engine, s.pred.promptTokens, s.uncached[i]!);
      flight.add(req, engine, s.pred.promptTokens, s.uncached[i]!);
      if (req.sessionKey) {
        homes.set(req.sessionKey, engine.id);
        if (homes.size > o.maxSessions) homes.shift();
      }
      oracle.onPicked?.(req, engine, s.pred.cachedTokens[i]!, s.pred.source[i] ?? "none", s.reason);
    },
    onUnpicked: (req) => held.release(req),
    onFirstToken: (req) => held.release(req),
    onDone: (req) => held.release(req),
    onAbandoned: (req) => held.release(req),
  };
}

/** the tokens each engine holds against the saturation threshold */
interface EngineTokens {
  of(e: EngineView): number;
  add(req: RequestView, e: EngineView, promptTokens: number, uncachedTokens: number): void;
  /** the request's tokens no longer wait (its first token came, it ended, or its pick was taken back) */
  release(req: RequestView): void;
}

/**
 * Per engine, the uncached prompt tokens of the router's requests there with no first token yet. An
 * engine on which nothing awaits a first token holds none, whatever a lost callback left counted.
 */
class QueuedPrefill implements EngineTokens {
  private readonly byEngine = new Map<string, number>();
  private readonly mine = new RequestMemo<{ engine: string; tokens: number }>("llm-d-sticky.queued");

  of(e: EngineView): number {
    if (e.awaitingFirstToken === 0) {
      this.byEngine.delete(e.id);
      return 0;
    }
    return this.byEngine.get(e.id) ?? 0;
  }

  add(req: RequestView, e: EngineView, _promptTokens: number, uncachedTokens: number): void {
    this.release(req);
    if (!this.byEngine.has(e.id) && this.byEngine.size >= MAX_ENGINES)
      this.byEngine.delete(this.byEngine.keys().next().value!);
    this.byEngine.set(e.id, (this.byEngine.get(e.id) ?? 0) + uncachedTokens);
    this.mine.set(req, { engine: e.id, tokens: uncachedTokens });
  }

  release(req: RequestView): void {
    const m = this.mine.get(req);
    if (!m || m.tokens === 0) return;
    const left = (this.byEngine.get(m.engine) ?? 0) - m.tokens;
    if (left > 0) this.byEngine.set(m.engine, left);
    else this.byEngine.delete(m.engine);
    m.tokens = 0;
  }
}

/** engines remembered at most, and entries per engine (a caller that never lowers its counts) */
const MAX_ENGINES = 4096;
const MAX_ENTRIES = 65_536;

/**
 * Per engine, the prompt tokens of the router's requests in flight there, oldest first, trimmed to the
 * caller's in-flight count (EngineView.inFlight) as it drops.
 */
class InFlightTokens implements EngineTokens {
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

  release(): void {}

  add(_req: RequestView, e: EngineView, tokens: number): void {
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
