// llm-d-sticky's load signal: per engine, the uncached prompt tokens of the router's requests there that
// have no first token yet, counted from the policy's own picks.
import { RequestMemo } from "../../policy/memo.js";
import type { EngineView, RequestView } from "../../policy/views.js";

/**
 * Per engine, the uncached prompt tokens of the router's requests there with no first token yet. An
 * engine on which nothing awaits a first token holds none, whatever a lost callback left counted: its
 * count starts again, and a request counted in the one before lets its tokens go from that one only.
 */
export class QueuedPrefill {
  private readonly byEngine = new Map<string, { tokens: number }>();
  private readonly mine = new RequestMemo<{ count: { tokens: number }; tokens: number }>(
    "llm-d-sticky.queued",
  );

  of(engine: EngineView): number {
    if (engine.awaitingFirstToken === 0) {
      this.byEngine.delete(engine.id);
      return 0;
    }
    return this.byEngine.get(engine.id)?.tokens ?? 0;
  }

  add(req: RequestView, engine: EngineView, uncachedTokens: number): void {
    this.release(req);
    let count = this.byEngine.get(engine.id);
    if (!count) {
      if (this.byEngine.size >= MAX_ENGINES) this.byEngine.delete(this.byEngine.keys().next().value!);
      count = { tokens: 0 };
      this.byEngine.set(engine.id, count);
    }
    count.tokens += uncachedTokens;
    this.mine.set(req, { count, tokens: uncachedTokens });
  }

  release(req: RequestView): void {
    const held = this.mine.get(req);
    if (!held || held.tokens === 0) return;
    held.count.tokens = Math.max(0, held.count.tokens - held.tokens);
    held.tokens = 0;
  }
}

/** engines remembered at most (a caller that never lowers its counts) */
const MAX_ENGINES = 4096;
