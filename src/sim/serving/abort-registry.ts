// The requests `/inference/v1/abort_requests` can name: token-in/token-out generations, by the id the
// server answered with (`generate-tokens-<id>`). An entry lives exactly as long as its engine requests
// do, so the map never holds more than the requests in flight, which the admission cap bounds.

export interface Abortable {
  abort(): void;
}

export class AbortRegistry {
  private readonly byId = new Map<string, Set<Abortable>>();

  get size(): number {
    return this.byId.size;
  }

  add(id: string, request: Abortable): void {
    let set = this.byId.get(id);
    if (!set) {
      set = new Set();
      this.byId.set(id, set);
    }
    set.add(request);
  }

  /** The request finished: it can no longer be aborted. */
  remove(id: string, request: Abortable): void {
    const set = this.byId.get(id);
    if (!set) return;
    set.delete(request);
    if (set.size === 0) this.byId.delete(id);
  }

  /** Aborts every engine request under each id; unknown ids are ignored, as vLLM's engine does. */
  abort(ids: readonly string[]): number {
    let n = 0;
    for (const id of ids) {
      const set = this.byId.get(id);
      if (!set) continue;
      for (const r of [...set]) {
        r.abort();
        n++;
      }
    }
    return n;
  }
}
