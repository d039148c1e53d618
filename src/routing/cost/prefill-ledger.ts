// The prefill work a router has queued on each engine: for every request it sent that has no first
// token yet, the prompt tokens the engine must compute for it. The cache-aware policies add a
// candidate's queue to the request's own uncached tokens, since a prompt waits for every prefill ahead
// of it. No request ids are needed: an engine prefills in arrival order, so when the caller's count of
// requests awaiting a first token drops to k, the k newest entries are the ones left. How a router group
// and shared prefixes are counted: src/routing/README.md, `cost/`.
import type { EngineView } from "../policy/views.js";

interface EngineQueue {
  /** uncached tokens per awaiting request, oldest first; `head` is the first live one */
  tokens: number[];
  /** per entry: its prompt's chained block ids, when the caller knew them */
  ids: (readonly number[] | undefined)[];
  head: number;
  /** Σ tokens[head..] */
  total: number;
  /** ms of the last drain */
  at: number;
}

/** engines remembered at most (a fleet larger than this forgets its least recently seen) */
const MAX_ENGINES = 4096;
/** entries per engine at most: a caller that never reports first tokens cannot grow it forever */
const MAX_ENTRIES = 65536;

export class PrefillLedger {
  private readonly byEngine = new Map<string, EngineQueue>();

  /**
   * Tokens queued on `e` for prefill now, or undefined when the caller does not count the requests
   * awaiting a first token (the ledger cannot tell which entries are done). `tokensPerMs` drains the
   * queue's head by elapsed time.
   */
  pending(engine: EngineView, now: number | undefined, tokensPerMs?: number): number | undefined {
    if (engine.awaitingFirstToken === undefined) return undefined;
    // this router's own requests: the ledger holds no other router's prompts
    const awaiting = engine.awaitingFirstToken - (engine.peerAwaitingFirstToken ?? 0);
    const queue = this.byEngine.get(engine.id);
    if (!queue) return 0;
    // the oldest requests answered first
    while (queue.tokens.length - queue.head > awaiting) {
      queue.ids[queue.head] = undefined;
      queue.total -= queue.tokens[queue.head++]!;
    }
    if (tokensPerMs !== undefined && now !== undefined && now > queue.at) {
      let budget = (now - queue.at) * tokensPerMs;
      // only the head is being prefilled: the prompts behind it wait (possibly for KV space), and
      // their turn shows as the head's first token
      const lim = Math.min(queue.tokens.length, queue.head + 1);
      for (let i = queue.head; i < lim && budget > 0; i++) {
        const entryTokens = queue.tokens[i]!;
        const used = entryTokens < budget ? entryTokens : budget;
        queue.tokens[i] = entryTokens - used;
        queue.total -= used;
        budget -= used;
      }
    }
    if (now !== undefined && now > queue.at) queue.at = now;
    this.compact(queue);
    return queue.total > 0 ? queue.total : 0;
  }

  /**
   * Leading blocks of `ids` that a prompt queued on `e` shares (call after `pending`, which trims the
   * entries answered since): the engine will have computed them by the time a prompt sent now starts.
   */
  sharedBlocks(engine: EngineView, ids: readonly number[]): number {
    const queue = this.byEngine.get(engine.id);
    if (!queue || ids.length === 0) return 0;
    let best = 0;
    for (let i = queue.head; i < queue.tokens.length; i++) {
      const other = queue.ids[i];
      if (!other || other[0] !== ids[0]) continue;
      const comparable = Math.min(other.length, ids.length);
      let k = 1;
      while (k < comparable && other[k] === ids[k]) k++;
      if (k > best) best = k;
      // the whole prompt is shared: no entry can say more
      if (best === ids.length) break;
    }
    return best;
  }

  /** the request just picked for `e` will need `tokens` of prefill there (`ids`: its prompt's blocks) */
  add(engine: EngineView, tokens: number, now: number | undefined, ids?: readonly number[]): void {
    let queue = this.byEngine.get(engine.id);
    if (!queue) {
      if (this.byEngine.size >= MAX_ENGINES) this.byEngine.delete(this.byEngine.keys().next().value!);
      queue = { tokens: [], ids: [], head: 0, total: 0, at: now ?? 0 };
      this.byEngine.set(engine.id, queue);
    } else if (queue.tokens.length - queue.head >= MAX_ENTRIES) {
      queue.ids[queue.head] = undefined;
      queue.total -= queue.tokens[queue.head++]!;
    }
    queue.tokens.push(tokens);
    queue.ids.push(ids);
    queue.total += tokens;
  }

  /**
   * A pick that did not stand (a router group answered its claim with newer counts): its entry leaves,
   * so that the count trims nothing else. The newest entry of its size; failing that, a head that
   * drained below it while the pick waited for the answer.
   */
  withdraw(engine: EngineView, tokens: number): void {
    const queue = this.byEngine.get(engine.id);
    if (!queue) return;
    for (let i = queue.tokens.length - 1; i >= queue.head; i--) {
      if (queue.tokens[i] !== tokens) continue;
      queue.total -= tokens;
      queue.tokens.splice(i, 1);
      queue.ids.splice(i, 1);
      return;
    }
    if (queue.head < queue.tokens.length && queue.tokens[queue.head]! <= tokens) {
      queue.ids[queue.head] = undefined;
      queue.total -= queue.tokens[queue.head++]!;
    }
  }

  /** entries for `e` (tests, diagnostics) */
  size(id: string): number {
    const queue = this.byEngine.get(id);
    return queue ? queue.tokens.length - queue.head : 0;
  }

  private compact(queue: EngineQueue): void {
    if (queue.head > 64 && queue.head * 2 > queue.tokens.length) {
      queue.tokens.splice(0, queue.head);
      queue.ids.splice(0, queue.head);
      queue.head = 0;
    }
  }
}
