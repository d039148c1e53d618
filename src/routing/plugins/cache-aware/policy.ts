// The cache-aware policies: `prefix`, `kv`, `hybrid` (which differ only in the caller's CacheOracle: what
// each candidate is predicted to hold) and `predictive` (hybrid's knowledge, plus admission by a TTFT SLO).
// Lowest cost wins (the picker takes the highest score = −cost; exact ties rotate by seq).
//
// When the caller counts, per engine, its requests awaiting their first token (the live router and the
// fleet simulator do), the cost is in seconds: the candidate's predicted time to first token and what a
// miss adds (cost/ttft-model.ts, TtftModel), so a prompt goes where it starts soonest, a tenant's burst on the
// engine holding its prefix is priced for queueing behind itself, and a hot prefix replicates to as many
// engines as its load needs and no more.
//
// Otherwise (a caller with scraped gauges only), the cost is in load units:
//   cost(e) = (P − credit(e)) / prefillTokensPerUnit + (runWeight · busy(e) + waitWeight · waiting(e)) / weight(e)
// with a saturation guard: an engine ≥ balanceAbs busier than the least busy candidate AND > balanceRel ×
// it gets no cache credit, so a hot prefix spills to the next engine rather than piling onto one.
//
// Composed of this folder's parts (plugin `cache-aware`): the caller's filters and picker, the
// `cache-load` scorer (scorer.ts), admission (admission.ts), the hooks (hooks.ts), over one policy's
// books (book.ts).
import { NO_CACHE, type CacheOracle } from "../../policy/cache-oracle.js";
import type { Policy } from "../../policy/policy.js";
import { PrefillLedger } from "../../cost/prefill-ledger.js";
import { LATE_BINDING_DEFAULTS } from "../../cost/late-binding.js";
import type { PredictiveOptions } from "../../cost/ttft-model.js";
import { maxScorePicker } from "../pick-max-score/picker.js";
import { standardFilters } from "../standard-filters/filters.js";
import type { CacheAwareOptions } from "./cost.js";
import { cacheAwareAdmit } from "./admission.js";
import { CacheAwareBook, type CacheAwarePolicyOptions } from "./book.js";
import { cacheAwareHooks } from "./hooks.js";
import { cacheLoadScorer } from "./scorer.js";

/** held requests are decided again at least this often (ms): one whose turn came needs no event to go */
const LATE_BINDING_RECHECK_MS = 250;

export function createCacheAwarePolicy(
  name: string,
  oracle: CacheOracle,
  filters: Policy["filters"],
  picker: Policy["picker"],
  options: CacheAwarePolicyOptions = {},
  ledger = new PrefillLedger(),
): Policy {
  const book = new CacheAwareBook(oracle, options, ledger);
  const late = book.late;
  const hooks = cacheAwareHooks(book);
  return {
    name,
    filters,
    scorers: [cacheLoadScorer(book)],
    picker,
    // each engine's cost is its own queue, prefix and load (the time model or the load-unit cost)
    loadElsewhereKeepsPick: true,
    explain: hooks.explain,
    admit: cacheAwareAdmit(book),
    // room a held request waits for is freed by a first token, or by time (a held request decided again)
    roomAtFirstToken: late !== undefined,
    recheckMs: late ? LATE_BINDING_RECHECK_MS : undefined,
    onLeftQueue: late ? (req) => late.left(req) : undefined,
    onFirstToken: hooks.onFirstToken,
    onDone: hooks.onDone,
    onAbandoned: hooks.onAbandoned,
    queuedPrefillTokens: (engine) => ledger.pending(engine, undefined) ?? 0,
    onUnpicked: hooks.onUnpicked,
    onPicked: hooks.onPicked,
  };
}

/**
 * `prefix`, `kv`, `hybrid` or `predictive` from the config's options: the standard filters and the
 * highest score; `predictive` admits by TTFT SLO and binds late.
 */
export function cacheAwarePolicy(
  name: string,
  opts: { cache?: CacheOracle; cacheAware?: CacheAwareOptions; predictive?: PredictiveOptions },
): Policy {
  return createCacheAwarePolicy(name, opts.cache ?? NO_CACHE, standardFilters, maxScorePicker, {
    cacheAware: opts.cacheAware,
    predictive: opts.predictive,
    admitBySlo: name === "predictive",
    lateBinding:
      name === "predictive" ? { ...LATE_BINDING_DEFAULTS, ...opts.predictive?.lateBinding } : undefined,
  });
}
