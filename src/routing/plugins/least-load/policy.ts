// The `least-load` policy: the standard filters, least-load's order with free KV cache as its
// tie-break, the highest score.
import type { Policy } from "../../policy/policy.js";
import { maxScorePicker } from "../pick-max-score/picker.js";
import { standardFilters } from "../standard-filters/filters.js";
import { kvFreeScorer, loadScorer } from "./least-load.js";

export function leastLoadPolicy(name: string): Policy {
  return {
    name,
    filters: standardFilters,
    scorers: [loadScorer, kvFreeScorer],
    picker: maxScorePicker,
    // a rise elsewhere leaves the least queued as they were, and only narrows the tie-break's range
    loadElsewhereKeepsPick: true,
  };
}
