// The `round-robin` policy: the standard filters and the round-robin picker, no scorers (so no scorer
// can be added to it).
import type { Policy } from "../../policy/policy.js";
import { standardFilters } from "../standard-filters/filters.js";
import { roundRobinPicker } from "./picker.js";

export function roundRobinPolicy(name: string): Policy {
  return { name, filters: standardFilters, scorers: [], picker: roundRobinPicker };
}
