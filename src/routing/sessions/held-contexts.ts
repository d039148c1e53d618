// The KV that sessions paused between turns will need, per engine, for the predictive policy: an
// agent's context sits in the engine's prefix cache as free blocks while it waits on its tools, and
// placing work there may evict it, so its next turn prefills it all again. That cost, priced as the
// prefill the sessions will redo times the chance they come back (learned from the gaps between turns),
// is what cost/ttft-model.ts adds. Kept from the router's own picks and answers (no I/O, no clock); the
// model and its formula: docs/routing.md#paused-sessions. Bounded: at most `maxSessions` contexts (the
// least recently used forgotten) and `maxEngines` engines.
import { LruMap } from "../../collections/lru-map.js";
import { LinkedList, type Linked } from "../../collections/linked-list.js";

interface Ctx extends Linked<Ctx> {
  /** the session key, and the context's own (key and engine) */
  key: string;
  id: string;
  engine: EngineContexts;
  /** tokens of the session's own on its engine (its latest prompt less what the engine held before it) */
  tokens: number;
  /** the engine's cached tokens of the session's prompt when it arrived there (shared with others) */
  base: number;
  /** its requests in flight (picked, not yet released) */
  active: number;
  /** when it was last picked or released, ms */
  at: number;
}

interface EngineContexts {
  /** its sessions, least recently run first */
  list: LinkedList<Ctx>;
  activeTokens: number;
  pausedTokens: number;
}

export interface HeldContextsOptions {
  maxSessions?: number;
  maxEngines?: number;
  /** the caller reports completions (done): a context pauses then; otherwise at its first token */
  releaseOnDone?: boolean;
}

/** log-spaced gap histogram: bin i holds gaps in [GAP_MIN_MS·r^i, GAP_MIN_MS·r^(i+1)) */
const GAP_MIN_MS = 50;
const GAP_RATIO = 1.25;
const GAP_BINS = 64;
/** once the histogram holds this much weight it is halved: the estimate follows the workload */
const GAP_WEIGHT_CAP = 4096;
/** gaps seen before the histogram speaks for itself; until then a context counts as coming back … */
const MIN_GAPS = 8;
/** … with this chance, within this long */
const PRIOR_RESUME = 0.5;
const PRIOR_HORIZON_MS = 600_000;
/** a context idle this many times the longest gap seen is forgotten (its session ended) */
const HORIZON_FACTOR = 2;

export class HeldContexts {
  private readonly sessions: LruMap<string, Ctx>;
  private readonly engines = new Map<string, EngineContexts>();
  private readonly maxSessions: number;
  private readonly maxEngines: number;
  private readonly gaps = new Float64Array(GAP_BINS);
  /** Σ gaps[i..] (survival numerators), rebuilt when a gap arrives */
  private readonly tail = new Float64Array(GAP_BINS + 1);
  private tailDirty = false;
  private gapWeight = 0;
  private longestGapBin = -1;
  /** sessions that came back after a pause, and ones that were not seen again */
  private returned = 0;
  private ended = 0;
  private readonly releaseOnDone: boolean;

  constructor(options: HeldContextsOptions = {}) {
    this.maxSessions = options.maxSessions ?? 16384;
    this.maxEngines = options.maxEngines ?? 4096;
    this.releaseOnDone = options.releaseOnDone ?? false;
    this.sessions = new LruMap<string, Ctx>();
  }

  /** sessions tracked (tests, diagnostics) */
  get size(): number {
    return this.sessions.size;
  }

  /** paused and in-flight tokens of the router's sessions on an engine (tests, diagnostics) */
  tokensOn(engine: string): { paused: number; active: number } {
    const contexts = this.engines.get(engine);
    return contexts
      ? { paused: contexts.pausedTokens, active: contexts.activeTokens }
      : { paused: 0, active: 0 };
  }

  /**
   * A turn of session `key` went to `engine` at `now`: its prompt of `promptTokens`, of which the engine
   * held `cachedTokens`. A paused context used again counts its gap.
   */
  picked(key: string, engine: string, promptTokens: number, cachedTokens: number, now: number): void {
    const id = idOf(key, engine);
    let context = this.sessions.use(id);
    if (context && context.active === 0) {
      this.noteGap(now - context.at);
      this.returned++;
    }
    if (!context) {
      if (this.sessions.size >= this.maxSessions) {
        const old = this.sessions.shift()!.value;
        this.detach(old);
        this.ended++;
      }
      const contexts = this.engineOf(engine);
      context = {
        key,
        id,
        engine: contexts,
        tokens: 0,
        base: cachedTokens,
        active: 0,
        at: now,
        prev: null,
        next: null,
        list: null,
      };
      this.sessions.set(id, context);
    }
    const engineId = context.engine;
    this.unaccount(context);
    context.tokens = Math.max(context.tokens, promptTokens - Math.min(context.base, promptTokens));
    context.active++;
    context.at = now;
    this.account(context);
    engineId.list.push(context);
  }

  /** the first token of a turn of `key` on `engine` came back: a caller that reports no completions releases here */
  firstToken(key: string, engine: string, now: number): void {
    if (!this.releaseOnDone) this.release(key, engine, now);
  }

  /** a turn of `key` on `engine` finished at `now`: its context there is paused from here */
  done(key: string, engine: string, now: number): void {
    if (this.releaseOnDone) this.release(key, engine, now);
  }

  /** a pick of `key` for `engine` did not stand: the turn it counted is not in flight there */
  withdrawn(key: string, engine: string, now: number): void {
    this.release(key, engine, now);
  }

  /**
   * What placing `tokens` new tokens on `engine` at `now` would push out of the paused contexts there,
   * weighted by the chance each session comes back: Σ P(back | idle) × tokens evicted, oldest first, once
   * the engine's room is used up. Room: its KV (`capacityTokens`) less the paused contexts and what is in
   * use (`usedTokens`, the scraped KV usage, or the router's sessions in flight there if more). `own`: the
   * session being placed, whose context is reused rather than evicted.
   */
  evictedTokens(
    engine: string,
    tokens: number,
    capacityTokens: number,
    usedTokens: number,
    own: string | undefined,
    now: number,
  ): number {
    const contexts = this.engines.get(engine);
    if (!contexts || capacityTokens <= 0 || tokens <= 0) return 0;
    this.expire(contexts, now);
    if (contexts.pausedTokens <= 0) return 0;
    let over = overRoom(contexts, tokens, capacityTokens, usedTokens);
    if (over <= 0) return 0;
    let weighted = 0;
    for (let context = contexts.list.head; context !== null && over > 0; context = context.next) {
      if (context.active > 0 || context.key === own) continue;
      const k = Math.min(over, context.tokens);
      weighted += k * this.resumeChance(now - context.at);
      over -= k;
    }
    return weighted;
  }

  /**
   * `tokens` new tokens went to `engine`: what they push out past its room (as evictedTokens counts it) is
   * gone from its cache, oldest first as the engine's own LRU evicts, so it is no longer held there.
   * Without this, contexts the engine evicted long ago (sessions that ended, ones pushed out) would fill
   * its room until they expire, and every placement anywhere would seem to evict sessions no longer
   * there to evict: the price would be noise as large as a prefill (multi-round QA at round-robin's
   * capacity, sessions keyed: resumed turns finding their context gone 5 → 344 of 1,050).
   */
  placed(
    engine: string,
    tokens: number,
    capacityTokens: number,
    usedTokens: number,
    own: string | undefined,
  ): void {
    const contexts = this.engines.get(engine);
    if (!contexts || capacityTokens <= 0 || tokens <= 0 || contexts.pausedTokens <= 0) return;
    let over = overRoom(contexts, tokens, capacityTokens, usedTokens);
    for (let context = contexts.list.head; context !== null && over > 0;) {
      const next = context.next;
      if (context.active === 0 && context.key !== own) {
        const k = Math.min(over, context.tokens);
        over -= k;
        this.unaccount(context);
        context.tokens -= k;
        if (context.tokens > 0) this.account(context);
        else {
          contexts.list.remove(context);
          this.sessions.delete(context.id);
        }
      }
      context = next;
    }
  }

  /** whether session `key` has a context on `engine` (paused or in flight) */
  holds(key: string, engine: string): boolean {
    return this.sessions.has(idOf(key, engine));
  }

  /** P(a session idle for `idleMs` comes back) */
  resumeChance(idleMs: number): number {
    if (this.gapWeight < MIN_GAPS) return idleMs < PRIOR_HORIZON_MS ? PRIOR_RESUME : 0;
    if (this.tailDirty) this.rebuildTail();
    const bin = binOf(idleMs);
    if (bin > this.longestGapBin) return 0;
    const longerShare = (this.tail[bin + 1]! + 0.5 * this.gaps[bin]!) / this.gapWeight;
    const reusedShare = (this.returned + 1) / (this.returned + this.ended + 2);
    const weighted = reusedShare * longerShare;
    return weighted / (weighted + 1 - reusedShare);
  }

  private release(key: string, engine: string, now: number): void {
    const context = this.sessions.get(idOf(key, engine));
    if (!context || context.active === 0) return;
    this.unaccount(context);
    context.active--;
    context.at = now;
    this.account(context);
    // the engine's eviction order is by when blocks were freed
    context.engine.list.push(context);
  }

  /** forgets contexts idle past every gap seen (their sessions ended), oldest first */
  private expire(contexts: EngineContexts, now: number): void {
    const horizon =
      this.gapWeight < MIN_GAPS
        ? PRIOR_HORIZON_MS
        : HORIZON_FACTOR * GAP_MIN_MS * Math.pow(GAP_RATIO, this.longestGapBin + 1);
    for (let context = contexts.list.head; context !== null;) {
      const next = context.next;
      if (context.active === 0 && now - context.at > horizon) {
        this.detach(context);
        this.sessions.delete(context.id);
        this.ended++;
      } else if (context.active === 0) break;
      context = next;
    }
  }

  private noteGap(ms: number): void {
    const bin = binOf(ms);
    this.gaps[bin]! += 1;
    this.gapWeight += 1;
    if (bin > this.longestGapBin) this.longestGapBin = bin;
    if (this.gapWeight > GAP_WEIGHT_CAP) {
      for (let i = 0; i < GAP_BINS; i++) this.gaps[i]! *= 0.5;
      this.gapWeight *= 0.5;
      this.returned *= 0.5;
      this.ended *= 0.5;
    }
    this.tailDirty = true;
  }

  private rebuildTail(): void {
    this.tail[GAP_BINS] = 0;
    for (let i = GAP_BINS - 1; i >= 0; i--) this.tail[i] = this.tail[i + 1]! + this.gaps[i]!;
    this.tailDirty = false;
  }

  private engineOf(id: string): EngineContexts {
    let contexts = this.engines.get(id);
    if (!contexts) {
      if (this.engines.size >= this.maxEngines) {
        const [oldId, old] = this.engines.entries().next().value!;
        for (const context of old.list.toArray()) {
          old.list.remove(context);
          this.sessions.delete(context.id);
        }
        this.engines.delete(oldId);
      }
      contexts = { list: new LinkedList<Ctx>(), activeTokens: 0, pausedTokens: 0 };
      this.engines.set(id, contexts);
    }
    return contexts;
  }

  private account(context: Ctx): void {
    if (context.active > 0) context.engine.activeTokens += context.tokens;
    else context.engine.pausedTokens += context.tokens;
  }

  private unaccount(context: Ctx): void {
    if (context.active > 0) context.engine.activeTokens -= context.tokens;
    else context.engine.pausedTokens -= context.tokens;
  }

  private detach(context: Ctx): void {
    this.unaccount(context);
    context.engine.list.remove(context);
  }
}

/**
 * Of `tokens` new tokens on an engine, those beyond its room, which the engine takes from paused contexts
 * (oldest first). Room: its KV less the paused contexts and what is in use (the scraped usage, or the
 * router's sessions in flight there if more).
 */
function overRoom(
  contexts: EngineContexts,
  tokens: number,
  capacityTokens: number,
  usedTokens: number,
): number {
  const room = capacityTokens - contexts.pausedTokens - Math.max(usedTokens, contexts.activeTokens);
  return tokens - Math.max(0, room);
}

function idOf(key: string, engine: string): string {
  return `${engine} ${key}`;
}

function binOf(ms: number): number {
  if (ms <= GAP_MIN_MS) return 0;
  const bin = Math.floor(Math.log(ms / GAP_MIN_MS) / Math.log(GAP_RATIO));
  return bin < GAP_BINS ? bin : GAP_BINS - 1;
}
