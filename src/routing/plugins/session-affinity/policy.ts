// The `session` policy: the standard filters, least-load's scorers for a request with no session key,
// and the session-affinity picker with its load factor.
import type { Policy } from "../../policy/policy.js";
import { kvFreeScorer, loadScorer } from "../least-load/least-load.js";
import { standardFilters } from "../standard-filters/filters.js";
import { sessionPicker } from "./picker.js";

/** session: how far above the average in-flight an engine may go before a session spills, by default */
export const SESSION_LOAD_FACTOR_DEFAULT = 1.25;

export function sessionPolicy(name: string, opts: { sessionLoadFactor?: number }): Policy {
  return {
    name,
    filters: standardFilters,
    scorers: [loadScorer, kvFreeScorer],
    picker: sessionPicker(opts.sessionLoadFactor ?? SESSION_LOAD_FACTOR_DEFAULT),
  };
}
