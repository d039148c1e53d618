// The cache-aware policies' lifecycle hooks (plugin `cache-aware`): a pick books its prefill with the
// TTFT model and tells the oracle why; a pick taken back withdraws it; a first token calibrates SLO
// admission; an end or an abandoned request closes the model's books; and the pick's explanation.
import type { Policy } from "../../policy/policy.js";
import type { CacheAwareBook } from "./book.js";
import { explainPick } from "./cost.js";

type Hooks = Required<
  Pick<Policy, "explain" | "onFirstToken" | "onDone" | "onAbandoned" | "onUnpicked" | "onPicked">
>;

/** the pick's explanation for decision logs */
function explain(book: CacheAwareBook): Hooks["explain"] {
  return (req) => {
    const scored = book.last.get(req);
    if (!scored) return undefined;
    const promptTokens = scored.pred.promptTokens;
    const cachedTokens = scored.uncached.map((u) => promptTokens - u);
    return { engines: scored.engines, cachedTokens, ttftMs: scored.ttftMs, cost: scored.cost, promptTokens };
  };
}

/** what came of a request: its first token, its end, its abandonment */
function outcomes(book: CacheAwareBook): Pick<Hooks, "onFirstToken" | "onDone" | "onAbandoned"> {
  const { last, model, calibration } = book;
  return {
    onFirstToken(req, engine, ttftMs) {
      const scored = last.get(req);
      if (scored?.at !== undefined) {
        scored.firstTokenMs = ttftMs;
        model.firstToken(req, engine, scored.at + ttftMs);
      }
      if (!scored?.ttftMs) return;
      const i = scored.engines.indexOf(engine);
      if (i >= 0 && scored.ttftMs[i]! > 0) calibration.add(ttftMs / scored.ttftMs[i]!);
    },
    onDone(req, engine, elapsedMs) {
      const scored = last.get(req);
      if (scored?.at === undefined) return;
      const first = scored.firstTokenMs;
      model.done(req, engine, scored.at + elapsedMs, first !== undefined ? elapsedMs - first : undefined);
    },
    onAbandoned(req, engine, elapsedMs) {
      const scored = last.get(req);
      if (scored?.at !== undefined) model.unpicked(req, engine, scored.at + elapsedMs);
    },
  };
}

/** a pick, and a pick taken back */
function picks(book: CacheAwareBook): Pick<Hooks, "onUnpicked" | "onPicked"> {
  const { last, model, ledger, oracle } = book;
  return {
    onUnpicked(req, engine) {
      const scored = last.get(req);
      const i = scored ? scored.engines.indexOf(engine) : -1;
      if (i >= 0 && engine.awaitingFirstToken !== undefined) ledger.withdraw(engine, scored!.uncached[i]!);
      if (i >= 0) model.unpicked(req, engine, scored!.at);
    },
    onPicked(req, engine) {
      const scored = last.get(req);
      if (!scored) return;
      const i = scored.engines.indexOf(engine);
      if (i < 0) return;
      const promptTokens = scored.pred.promptTokens;
      model.picked(req, engine, promptTokens, scored.uncached[i]!, book.lastNow, scored.pred.blocks?.ids);
      book.late?.picked(promptTokens - scored.uncached[i]!, promptTokens);
      if (!oracle.onPicked) return;
      const why = explainPick(scored, i);
      let other = Infinity;
      if (scored.ttftMs)
        for (let k = 0; k < scored.ttftMs.length; k++)
          if (k !== i) other = Math.min(other, scored.ttftMs[k]!);
      oracle.onPicked(req, engine, why.cached, why.source, why.reason, scored.ttftMs?.[i], other);
    },
  };
}

/** every hook of the cache-aware policies but admission */
export function cacheAwareHooks(book: CacheAwareBook): Hooks {
  return { explain: explain(book), ...outcomes(book), ...picks(book) };
}
