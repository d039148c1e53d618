// Stable homes for shared prefixes. A prefix that no engine holds (never sent, or evicted everywhere)
// would otherwise land wherever the queue is shortest at that moment, and evict another tenant's prefix
// there; over time every tenant visits every engine and each engine's cache holds a little of everyone
// (the thrash a KV-tight fleet shows as a low hit rate). Instead, a prompt whose leading text was seen
// before gets a ranking of the engines by weighted rendezvous hashing of that text: its home first, then
// where it spills when the home's queue is long. The cache-aware policies credit the ranking's head as if
// it held part of the prompt, so a shared prefix keeps returning to the same few engines and every router
// replica agrees on them; a prompt seen for the first time (no reuse to protect) goes by load alone.
import { LruMap } from "../collections/lru-map.js";
import { hash32 } from "./hash.js";
import { RequestMemo } from "./memo.js";
import { renderForPrefix } from "./prefix-index.js";
import type { EngineView, RequestView } from "./types.js";

/** leading characters that name a prompt's prefix (about 256 tokens), at most half the prompt */
export const HOME_KEY_CHARS = 1024;
/** credit of the k-th ranked engine, as a fraction of the prompt: HOME_CREDIT / 2^k */
export const HOME_CREDIT = Number(process.env.HC ?? 0.5);
/** engines of the ranking that get any credit */
export const HOME_RANKS = Number(process.env.HR ?? 3);
/** leading keys remembered (LRU) */
const MAX_KEYS = 65_536;

interface Key {
  hash: number;
  /** the engine this prefix was first sent to, when it was seen before */
  home: string | undefined;
}

export class PrefixHomes {
  private readonly homes = new LruMap<number, string>();
  private readonly keys = new RequestMemo<Key | null>("homes.key");

  /**
   * Fractions of the prompt each candidate is credited with as the home of its prefix (HOME_CREDIT for
   * the home, 0 for the rest), into `out`; false (and `out` untouched) for a prefix with no home yet.
   */
  credit(req: RequestView, engines: readonly EngineView[], out: Float64Array): boolean {
    const k = this.keyOf(req);
    if (!k?.home) return false;
    out.fill(0);
    let found = false;
    for (let i = 0; i < engines.length; i++)
      if (engines[i]!.id === k.home) {
        out[i] = HOME_CREDIT;
        found = true;
      }
    return found;
  }

  /** the request was routed to `engine`: a prefix without a home (or whose home is gone) makes it home */
  learn(req: RequestView, engine: EngineView, candidates: readonly EngineView[]): void {
    const k = this.keyOf(req);
    if (!k) return;
    if (k.home !== undefined && candidates.some((e) => e.id === k.home)) return;
    if (this.homes.size >= MAX_KEYS) this.homes.shift();
    this.homes.set(k.hash, engine.id);
  }

  private keyOf(req: RequestView): Key | null {
    let k = this.keys.get(req);
    if (k !== undefined) return k;
    const text = renderForPrefix(req);
    const n = Math.min(HOME_KEY_CHARS, Math.floor(text.length / 2));
    if (n < 64) k = null;
    else {
      const hash = hash32(text.slice(0, n), hash32(req.model));
      k = { hash, home: this.homes.use(hash) };
    }
    this.keys.set(req, k);
    return k;
  }
}
