// The `notExcluded` filter: engines the request has not been tried on already (its `exclude` set, kept
// by the caller's retries and failover).
import { keepEngines } from "../../policy/filter-chain.js";
import type { Filter } from "../../policy/policy.js";
import type { EngineView } from "../../policy/views.js";

const notIn = (e: EngineView, exclude: ReadonlySet<string>): boolean => !exclude.has(e.id);

export const notExcluded: Filter = (req, engines) =>
  req.exclude && req.exclude.size > 0 ? keepEngines(engines, notIn, req.exclude) : engines;
