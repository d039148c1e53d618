// The `healthyOnly` filter: engines that are healthy and carry weight (> 0). Its stage emptying the set
// means `unavailable`.
import { keepEngines } from "../../policy/filter-chain.js";
import type { Filter } from "../../policy/policy.js";
import type { EngineView } from "../../policy/views.js";

const isHealthy = (e: EngineView): boolean => e.healthy && e.weight > 0;

export const healthyOnly: Filter = (_req, engines) => keepEngines(engines, isHealthy, undefined);
