// Late binding, for the predictive policy: a prompt is bound to an engine only when that engine will
// start it soon. While the engine already has `queuedPrompts` of this router's prompts awaiting their
// first token, a request picked for it waits in the router's admission queue instead of the engine's,
// where the order can be chosen (least prefill first; vLLM's own queue is first come, first served) and
// the request can still go to another engine that frees first. Held at most `maxHoldMs`; nothing held
// while few prompts hit the cache (`minCachedShare`), nor a prompt under an eighth of a step (rules,
// reasons, figures: docs/routing.md#late-binding). State: the held requests per engine and the moving
// mean (no I/O, no clock); at most `MAX_HELD`, one not decided again for `STALE_MS` forgotten.
import type { EngineView, RequestView } from "../policy/views.js";
import { InvalidConfigError } from "../../errors/index.js";

export interface LateBindingOptions {
  /** this router's prompts awaiting a first token an engine may have; 0: bind at once (no holding) */
  queuedPrompts: number;
  /** a request held this long (ms) is bound at once; below the router's queue timeout */
  maxHoldMs: number;
  /**
   * hold only while the router's picks find at least this share of their prompts cached (a moving
   * mean over picks): where prompts miss, the order of prefill gains nothing and holding only waits
   */
  minCachedShare: number;
}

/** on by default, gated by the picks' cached share (docs/routing.md, "Late binding") */
export const LATE_BINDING_DEFAULTS: LateBindingOptions = {
  queuedPrompts: 2,
  maxHoldMs: 5_000,
  minCachedShare: 0.2,
};

/** held requests remembered at most (the router's queue holds 1,024 by default) */
const MAX_HELD = 16_384;
/** a held request not decided again for this long no longer ranks (ms) */
const STALE_MS = 5_000;
/** a prompt needing at most this share of a step's tokens (1/8) is never held */
const SMALL_SHARE_OF_STEP = 8;
/** the weight of one pick in the moving mean of the cached share (about the last 20 picks count) */
const SHARE_WEIGHT = 0.05;
/** the moving mean before any pick: nothing is held until picks show prefixes cached */
const SHARE_START = 0;

interface Held {
  req: RequestView;
  engine: string;
  /** prompt tokens it must compute on `engine` (the pick's prediction) */
  uncached: number;
  /** when it was first held, and last decided, ms */
  since: number;
  seen: number;
}

/** This router's streamed prompts on `e` that await their first token; undefined: not counted. */
export function queuedPromptsOn(engine: EngineView): number | undefined {
  if (engine.awaitingFirstToken === undefined) return undefined;
  const own = engine.awaitingFirstToken - (engine.peerAwaitingFirstToken ?? 0) - (engine.unstreamed ?? 0);
  return own > 0 ? own : 0;
}

export class LateBinding {
  private readonly held = new Map<RequestView, Held>();
  private readonly byEngine = new Map<string, Set<Held>>();
  /** moving mean of the share of a picked prompt its engine had cached */
  private share = SHARE_START;

  constructor(private readonly options: LateBindingOptions) {
    if (!(options.queuedPrompts >= 0) || !Number.isInteger(options.queuedPrompts))
      throw new InvalidConfigError(
        `late binding: queuedPrompts must be a whole number ≥ 0, got ${options.queuedPrompts}`,
      );
    if (!(options.maxHoldMs >= 0)) throw new InvalidConfigError(`late binding: maxHoldMs must be ≥ 0`);
    if (!(options.minCachedShare >= 0 && options.minCachedShare <= 1))
      throw new InvalidConfigError(
        `late binding: minCachedShare must lie in [0, 1], got ${options.minCachedShare}`,
      );
  }

  /**
   * A request was bound to an engine that had `cached` of its `promptTokens` cached (predicted). Holding
   * pays where a backlog mixes cached prompts with misses: computed first, the cached ones wait less and
   * keep their prefixes in use. Where picks find little cached (independent prompts), reordering gains
   * nothing, and in a closed loop the clients' next prompts would wait in the router instead of joining
   * the engines' batches.
   */
  picked(cached: number, promptTokens: number): void {
    if (!(promptTokens > 0)) return;
    const cachedShare = Math.min(1, Math.max(0, cached / promptTokens));
    this.share += SHARE_WEIGHT * (cachedShare - this.share);
  }

  get enabled(): boolean {
    return this.options.queuedPrompts > 0;
  }

  get size(): number {
    return this.held.size;
  }

  /**
   * Whether `req`, picked for `engine` where it must compute `uncached` prompt tokens, waits for room
   * (held, and remembered as waiting for that engine) or is bound now (and forgotten). `stepTokens`: the
   * prompt tokens one step of the engine computes; a prompt under an eighth of that is bound at once
   * (prefilled beside whatever the engine computes, it delays the prompts ahead of it by next to
   * nothing, and holding such prompts back would thin the engine's batches). `now`: ms.
   */
  holds(
    req: RequestView,
    engine: EngineView,
    uncached: number,
    now: number | undefined,
    stepTokens: number,
  ): boolean {
    const queued = this.enabled && now !== undefined ? queuedPromptsOn(engine) : undefined;
    const held = this.held.get(req);
    if (
      queued === undefined ||
      uncached <= stepTokens / SMALL_SHARE_OF_STEP ||
      this.share < this.options.minCachedShare
    ) {
      if (held) this.forget(held);
      return false;
    }
    const since = held?.since ?? now!;
    // held long enough: bound now, room or not (the engine queues it first come, first served)
    const due = now! - since >= this.options.maxHoldMs;
    // Decided again toward another engine where it would compute more (its prefix is cached where it
    // waits): it keeps waiting for its own. Moved, it would buy a shorter wait with a prefill that, under
    // a backlog, pushes out prefixes others there will need; in the fleet simulator, moving such
    // requests cost multi-round QA past capacity half its cache hits (docs/routing.md, "Late binding").
    const moves = held !== undefined && held.engine !== engine.id;
    if (moves && !due && uncached > held.uncached) {
      this.touch(held, now!);
      return true;
    }
    if (
      due ||
      (queued < this.options.queuedPrompts && !this.ranksBehind(req, engine.id, uncached, since, now!))
    ) {
      if (held) this.forget(held);
      return false;
    }
    if (held) {
      if (moves) {
        this.byEngine.get(held.engine)?.delete(held);
        held.engine = engine.id;
        this.bucketFor(held.engine).add(held);
      }
      held.uncached = uncached;
      this.touch(held, now!);
      return true;
    }
    while (this.held.size >= MAX_HELD) this.forget(this.held.values().next().value!);
    const fresh: Held = { req, engine: engine.id, uncached, since: now!, seen: now! };
    this.held.set(req, fresh);
    this.bucketFor(fresh.engine).add(fresh);
    return true;
  }

  /** `req` left the queue without being bound (timed out, refused, its client gone): it ranks no more. */
  left(req: RequestView): void {
    const held = this.held.get(req);
    if (held) this.forget(held);
  }

  /** whether another request held for `engine` goes before this one: less prefill, else longer held */
  private ranksBehind(
    req: RequestView,
    engine: string,
    uncached: number,
    since: number,
    now: number,
  ): boolean {
    const set = this.byEngine.get(engine);
    if (!set || set.size === 0) return false;
    for (const held of set) {
      if (held.req === req) continue;
      // deleting the entry being visited is safe in a Set's iteration
      if (now - held.seen > STALE_MS) {
        this.forget(held);
        continue;
      }
      if (held.uncached < uncached || (held.uncached === uncached && held.since < since)) return true;
    }
    return false;
  }

  /** `h` was decided again at `now`: most recently decided last, the entry a full map forgets first */
  private touch(held: Held, now: number): void {
    held.seen = now;
    this.held.delete(held.req);
    this.held.set(held.req, held);
  }

  private forget(held: Held): void {
    this.held.delete(held.req);
    const set = this.byEngine.get(held.engine);
    set?.delete(held);
    if (set && set.size === 0) this.byEngine.delete(held.engine);
  }

  private bucketFor(engine: string): Set<Held> {
    let heldHere = this.byEngine.get(engine);
    if (!heldHere) this.byEngine.set(engine, (heldHere = new Set()));
    return heldHere;
  }
}
