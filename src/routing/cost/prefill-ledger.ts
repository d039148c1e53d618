// The prefill work a router has queued on each engine: for every request it sent that has no first token
// yet, the prompt tokens the engine must compute for it (its prompt less the cached prefix predicted at
// the pick). The cache-aware policies add a candidate's queue to the request's own uncached tokens: a
// prompt waits for every prefill ahead of it, and a tenant's burst on the engine holding its prefix is
// priced for queueing behind itself, so it replicates to a second engine once that is faster.
//
// No request ids are needed: the caller counts, per engine, the requests still awaiting their first token
// (EngineView.awaitingFirstToken), and an engine prefills in arrival order, so when that count has
// dropped to k the k newest entries are the ones left. In a router group (workers, replicas) the
// count is the group's and the entries only this router's: its own count is the group's less the
// others' part (EngineView.peerAwaitingFirstToken), and the others' queued prefill comes from their
// own ledgers, reported (peerPrefillTokens). With a prefill rate the head of the queue (the
// prompt being prefilled) also drains with time between two decisions, as the engine works through it.
//
// Each entry may also carry its prompt's chained block ids (CachePrediction.blocks): a prompt queued
// behind another that shares its prefix finds that prefix computed when its turn comes, although the
// engine holds none of it yet (its KV events come only once the blocks are computed).
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
  pending(e: EngineView, now: number | undefined, tokensPerMs?: number): number | undefined {
    if (e.awaitingFirstToken === undefined) return undefined;
    // this router's own requests: the ledger holds no other router's prompts
    const awaiting = e.awaitingFirstToken - (e.peerAwaitingFirstToken ?? 0);
    const q = this.byEngine.get(e.id);
    if (!q) return 0;
    // the oldest requests answered first
    while (q.tokens.length - q.head > awaiting) {
      q.ids[q.head] = undefined;
      q.total -= q.tokens[q.head++]!;
    }
    if (tokensPerMs !== undefined && now !== undefined && now > q.at) {
      let budget = (now - q.at) * tokensPerMs;
      // only the head is being prefilled: the prompts behind it wait (possibly for KV space), and
      // their turn shows as the head's first token
      const lim = Math.min(q.tokens.length, q.head + 1);
      for (let i = q.head; i < lim && budget > 0; i++) {
        const t = q.tokens[i]!;
        const used = t < budget ? t : budget;
        q.tokens[i] = t - used;
        q.total -= used;
        budget -= used;
      }
    }
    if (now !== undefined && now > q.at) q.at = now;
    this.compact(q);
    return q.total > 0 ? q.total : 0;
  }

  /**
   * Leading blocks of `ids` that a prompt queued on `e` shares (call after `pending`, which trims the
   * entries answered since): the engine will have computed them by the time a prompt sent now starts.
   */
  sharedBlocks(e: EngineView, ids: readonly number[]): number {
    const q = this.byEngine.get(e.id);
    if (!q || ids.length === 0) return 0;
    let best = 0;
    for (let i = q.head; i < q.tokens.length; i++) {
      const other = q.ids[i];
      if (!other || other[0] !== ids[0]) continue;
      const n = Math.min(other.length, ids.length);
      let k = 1;
      while (k < n && other[k] === ids[k]) k++;
      if (k > best) best = k;
      // the whole prompt is shared: no entry can say more
      if (best === ids.length) break;
    }
    return best;
  }

  /** the request just picked for `e` will need `tokens` of prefill there (`ids`: its prompt's blocks) */
  add(e: EngineView, tokens: number, now: number | undefined, ids?: readonly number[]): void {
    let q = this.byEngine.get(e.id);
    if (!q) {
      if (this.byEngine.size >= MAX_ENGINES) this.byEngine.delete(this.byEngine.keys().next().value!);
      q = { tokens: [], ids: [], head: 0, total: 0, at: now ?? 0 };
      this.byEngine.set(e.id, q);
    } else if (q.tokens.length - q.head >= MAX_ENTRIES) {
      q.ids[q.head] = undefined;
      q.total -= q.tokens[q.head++]!;
    }
    q.tokens.push(tokens);
    q.ids.push(ids);
    q.total += tokens;
  }

  /**
   * A pick that did not stand (a router group answered its claim with newer counts): its entry leaves,
   * so that the count trims nothing else. The newest entry of its size; failing that, a head that
   * drained below it while the pick waited for the answer.
   */
  withdraw(e: EngineView, tokens: number): void {
    const q = this.byEngine.get(e.id);
    if (!q) return;
    for (let i = q.tokens.length - 1; i >= q.head; i--) {
      if (q.tokens[i] !== tokens) continue;
      q.total -= tokens;
      q.tokens.splice(i, 1);
      q.ids.splice(i, 1);
      return;
    }
    if (q.head < q.tokens.length && q.tokens[q.head]! <= tokens) {
      q.ids[q.head] = undefined;
      q.total -= q.tokens[q.head++]!;
    }
  }

  /** entries for `e` (tests, diagnostics) */
  size(id: string): number {
    const q = this.byEngine.get(id);
    return q ? q.tokens.length - q.head : 0;
  }

  private compact(q: EngineQueue): void {
    if (q.head > 64 && q.head * 2 > q.tokens.length) {
      q.tokens.splice(0, q.head);
      q.ids.splice(0, q.head);
      q.head = 0;
    }
  }
}
