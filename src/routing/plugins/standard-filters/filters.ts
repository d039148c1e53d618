// The standard filter chain every policy starts from: serves the model → healthy (and weight > 0) → not
// excluded → under its in-flight cap. Which stage empties the set tells `decide` the answer:
// `unknown-model`, `unavailable` or `saturated`.
import type { Filter } from "../../policy/policy.js";
import { servesModel } from "../filter-serves-model/filter.js";
import { healthyOnly } from "../filter-healthy/filter.js";
import { notExcluded } from "../filter-not-excluded/filter.js";
import { hasCapacity } from "../filter-has-capacity/filter.js";

/** The standard chain, in order; `decide` tells which stage emptied the set. */
export const standardFilters: readonly Filter[] = [servesModel, healthyOnly, notExcluded, hasCapacity];
